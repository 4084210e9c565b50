# jumpless developer targets. `make test` is what CI runs (.ci/run).
GO        ?= go
# The examples are a module of their own (examples/go.mod, joined by go.work):
# ./... from the root does not reach them, so they are named too.
PKGS      ?= ./... ./examples/...
FUZZTIME  ?= 10s

.PHONY: all test test-env demo bench fuzz lint

all: lint test

test-env:
	scripts/test-env.sh

# Installs/starts sshd, MariaDB and PostgreSQL when absent, then runs every test.
test: test-env
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

demo:
	$(GO) run ./examples/quickstart

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Runs each fuzz target for $(FUZZTIME) (go test -fuzz takes one target per package).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# gofmt, go vet and staticcheck (installed at a pinned version when absent).
lint:
	scripts/lint.sh
