package link_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jumpless/jumpless/link"
)

type statusErr struct{ reason string }

func (e *statusErr) Error() string { return "status: " + e.reason }

// TestConnectErrorKeepsTheTransportsErrorReachable guards Err: a refusal a
// transport reports in its own type, wrapped in a *link.ConnectError that
// names the address, still matches ErrConnect and lets errors.As find the
// transport's type, and its text says both.
func TestConnectErrorKeepsTheTransportsErrorReachable(t *testing.T) {
	inner := &statusErr{"OpenPortFailed"}
	var err error = &link.ConnectError{Addr: "db.internal:5432", SessionID: "s-1", Err: inner}
	var se *statusErr
	if !errors.Is(err, link.ErrConnect) || !errors.As(err, &se) || se != inner {
		t.Fatalf("%v: want ErrConnect and the transport's error reachable", err)
	}
	if errors.Is(err, link.ErrForbidden) {
		t.Fatal("a connect error matches ErrForbidden")
	}
	for _, want := range []string{"db.internal:5432", "OpenPortFailed", "s-1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err.Error(), want)
		}
	}
	// The agent's words win over the wrapped error's text.
	err = &link.ConnectError{Addr: "a:1", Reason: "connection refused", Err: inner}
	if s := err.Error(); !strings.Contains(s, "connection refused") || strings.Contains(s, "OpenPortFailed") {
		t.Errorf("Error() = %q", s)
	}
}
