package realagent

import (
	"strings"
	"testing"
)

// TestMissingRootFailsInCIButSkipsElsewhere guards the skip rule: with the
// agent's binary present, a missing prerequisite is a failure in CI (a
// skip there would pass without testing) and a skip on a developer's
// machine.
func TestMissingRootFailsInCIButSkipsElsewhere(t *testing.T) {
	if fail, msg := verdict("root (private mount and PID namespaces)", true); !fail || !strings.Contains(msg, "CI=true") {
		t.Fatalf("in CI: fail=%v %q", fail, msg)
	}
	if fail, msg := verdict("root (private mount and PID namespaces)", false); fail || !strings.Contains(msg, "needs root") {
		t.Fatalf("off CI: fail=%v %q", fail, msg)
	}
	if fail, msg := verdict("", true); fail || msg != "" {
		t.Fatalf("nothing missing: fail=%v %q", fail, msg)
	}
}
