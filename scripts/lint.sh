#!/usr/bin/env bash
# lint.sh: gofmt, go vet and staticcheck over the library, the Alibaba
# transport, the command and the examples (each a module; see go.work).
# Any finding fails. staticcheck is installed (go install, pinned version)
# when the one in PATH or GOBIN is absent or another version.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}" # honnef.co/go/tools; supports Go 1.26
PKGS=(./... ./aliyun/... ./cmd/jumpless/... ./examples/...)

echo "lint: gofmt"
out="$(gofmt -l .)"
if [ -n "$out" ]; then
  echo "lint: gofmt needed (gofmt -w these files):"
  echo "$out"
  exit 1
fi

echo "lint: go vet"
go vet "${PKGS[@]}"

gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
sc="$(command -v staticcheck || true)"
[ -n "$sc" ] || sc="$gobin/staticcheck"
want="(${STATICCHECK_VERSION#v})"
if [ ! -x "$sc" ] || ! "$sc" -version 2>/dev/null | grep -qF "$want"; then
  echo "lint: installing staticcheck $STATICCHECK_VERSION into $gobin"
  # Outside the module: staticcheck's dependencies stay out of go.mod.
  (cd / && GOFLAGS=-mod=mod GOWORK=off go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
  sc="$gobin/staticcheck"
fi
echo "lint: staticcheck $("$sc" -version)"
"$sc" "${PKGS[@]}"
echo "lint: ok"
