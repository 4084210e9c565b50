// Package testenv holds helpers shared by the tests of every jumpless
// package: a real OpenSSH sshd on loopback, the DSNs and addresses of the
// local MariaDB and PostgreSQL servers, and a TCP echo server.
//
// A missing dependency (no sshd binary, database not reachable) skips the
// test with a hint to run scripts/test-env.sh, except in CI (environment
// variable CI=true), where it fails the test: CI must never pass by skipping.
package testenv

import (
	"os"
	"testing"
)

// Hint is appended to every skip or failure caused by a missing dependency.
const Hint = "run scripts/test-env.sh (or `make test`) to install and start the test dependencies"

// InCI reports whether the tests run in CI (environment variable CI=true),
// where missing dependencies fail tests instead of skipping them.
func InCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// unavailable skips t (or fails it in CI) because what is unavailable.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	args = append(args, Hint)
	if InCI() {
		t.Fatalf(format+"; %s", args...)
	}
	t.Skipf(format+"; %s", args...)
}
