package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func testFlagSet() (*flagSet, *[]string, *int, *time.Duration, *bool) {
	var (
		list []string
		n    int
		d    time.Duration
		b    bool
	)
	s := newFlagSet("forward", "jumpless forward", "about", "")
	s.listVar(&list, "local-forward", "L", "SPEC", "forward")
	s.intVar(&n, "sessions", "N", 1, "sessions")
	s.durationVar(&d, "connect-timeout", "D", time.Minute, "timeout")
	s.boolVar(&b, "verbose", "verbose")
	return s, &list, &n, &d, &b
}

func envOf(m map[string]string) *Env {
	return &Env{Stdout: &bytes.Buffer{}, Getenv: func(k string) string { return m[k] }}
}

// TestEnvironmentFillsFlagsAndCommandLineWins guards the JUMPLESS_* rules:
// lists are comma/space separated, a flag on the command line replaces the
// variable's value (for lists: the whole list).
func TestEnvironmentFillsFlagsAndCommandLineWins(t *testing.T) {
	s, list, n, d, b := testFlagSet()
	env := envOf(map[string]string{
		"JUMPLESS_LOCAL_FORWARD":   "1:a:1, 2:b:2",
		"JUMPLESS_SESSIONS":        "3",
		"JUMPLESS_CONNECT_TIMEOUT": "5s",
		"JUMPLESS_VERBOSE":         "true",
	})
	if err := s.parse(env, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*list, " ") != "1:a:1 2:b:2" || *n != 3 || *d != 5*time.Second || !*b {
		t.Fatalf("from env: %v %d %v %v", *list, *n, *d, *b)
	}
	s, list, n, _, b = testFlagSet()
	if err := s.parse(env, []string{"-L", "9:z:9", "--local-forward", "8:y:8", "--sessions", "4", "--verbose=false"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*list, " ") != "9:z:9 8:y:8" || *n != 4 || *b {
		t.Fatalf("command line over env: %v %d %v", *list, *n, *b)
	}
	if !s.isSet(env, "sessions") {
		t.Error("isSet(sessions) = false")
	}
}

func TestBadEnvironmentValueIsAUsageError(t *testing.T) {
	s, _, _, _, _ := testFlagSet()
	err := s.parse(envOf(map[string]string{"JUMPLESS_CONNECT_TIMEOUT": "soon"}), nil)
	var ue *usageError
	if !errors.As(err, &ue) || err.Error() != `invalid value "soon" in JUMPLESS_CONNECT_TIMEOUT: want a duration like 30s or 2m` {
		t.Fatalf("err = %v", err)
	}
}

func TestHelpListsEveryFlagWithItsVariable(t *testing.T) {
	s, _, _, _, _ := testFlagSet()
	env := envOf(nil)
	if err := s.parse(env, []string{"--help"}); !errors.Is(err, errHelp) {
		t.Fatalf("err = %v", err)
	}
	out := env.Stdout.(*bytes.Buffer).String()
	for _, w := range []string{"-L, --local-forward SPEC", "[$JUMPLESS_LOCAL_FORWARD]", "--sessions N", "(default 1)", "(default 1m0s)", "--verbose\n", "Exit status:"} {
		if !strings.Contains(out, w) {
			t.Errorf("help lacks %q:\n%s", w, out)
		}
	}
}

// TestMainMapsErrorsToExitCodes guards the exit code of each error class.
func TestMainMapsErrorsToExitCodes(t *testing.T) {
	var stderr bytes.Buffer
	if code := report(&stderr, "x", usagef("bad")); code != ExitUsage || stderr.String() != "jumpless: x: bad\n" {
		t.Errorf("usage: %d %q", code, stderr.String())
	}
	stderr.Reset()
	if code := report(&stderr, "x", connectErr(errors.New("down\nhard"))); code != ExitConnect || stderr.String() != "jumpless: x: down; hard\n" {
		t.Errorf("connect: %d %q", code, stderr.String())
	}
	stderr.Reset()
	if code := report(&stderr, "x", &exitStatus{code: 42}); code != 42 || stderr.Len() != 0 {
		t.Errorf("status: %d %q", code, stderr.String())
	}
	if code := report(&stderr, "x", errors.New("other")); code != ExitFailure {
		t.Errorf("other: %d", code)
	}
	if code := Main(context.Background(), Env{Args: []string{"version"}}); code != ExitOK {
		t.Errorf("version: %d", code)
	}
}
