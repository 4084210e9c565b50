package cli

import (
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseForwardSpec(t *testing.T) {
	tests := []struct {
		in, listen, remote string
	}{
		{"15432:db.internal:5432", "127.0.0.1:15432", "db.internal:5432"},
		{"127.0.0.1:15432:db.internal:5432", "127.0.0.1:15432", "db.internal:5432"},
		{"0.0.0.0:15432:10.0.1.5:5432", "0.0.0.0:15432", "10.0.1.5:5432"},
		{"*:15432:db:5432", ":15432", "db:5432"},
		{":15432:db:5432", ":15432", "db:5432"},
		{"localhost:15432:db:5432", "127.0.0.1:15432", "db:5432"},
		{"[::1]:15432:[fd00::5]:5432", "[::1]:15432", "[fd00::5]:5432"},
		{"0:db:5432", "127.0.0.1:0", "db:5432"},
	}
	for _, tt := range tests {
		got, err := parseForwardSpec(tt.in)
		if err != nil {
			t.Errorf("parseForwardSpec(%q): %v", tt.in, err)
			continue
		}
		if got.Listen != tt.listen || got.Remote != tt.remote {
			t.Errorf("parseForwardSpec(%q) = %q → %q, want %q → %q", tt.in, got.Listen, got.Remote, tt.listen, tt.remote)
		}
	}
}

func TestParseForwardSpecRejectsMalformed(t *testing.T) {
	tests := []struct{ in, want string }{
		{"15432", `-L "15432": want [bind_address:]port:host:hostport, e.g. 15432:db.internal:5432`},
		{"15432:db", `-L "15432:db": want [bind_address:]port:host:hostport`},
		{"a:b:c:d:e", `-L "a:b:c:d:e": want`},
		{"x:db:5432", `-L "x:db:5432": local port "x": want a number 0-65535`},
		{"70000:db:5432", `local port "70000": want a number 0-65535`},
		{"15432:db:0", `remote port "0": want a number 1-65535`},
		{"15432::5432", `remote host is empty`},
		{"[::1:15432:db:5432", `unclosed '['`},
		{"[::1]x:15432:db:5432", `']' must be followed by ':'`},
		{"000:]:1", `misplaced ']'`},
		{"1:db host:5432", `cannot contain spaces`},
	}
	for _, tt := range tests {
		_, err := parseForwardSpec(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseForwardSpec(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestParseRemote(t *testing.T) {
	got, err := parseRemote("db.internal:5432")
	if err != nil || got.Listen != "127.0.0.1:0" || got.Remote != "db.internal:5432" {
		t.Fatalf("parseRemote = %+v, %v", got, err)
	}
	for _, bad := range []string{"db", ":5432", "db:", "db:0", "db:x"} {
		if _, err := parseRemote(bad); err == nil {
			t.Errorf("parseRemote(%q) succeeded", bad)
		}
	}
}

func FuzzParseForwardSpec(f *testing.F) {
	for _, s := range []string{"15432:db:5432", "[::1]:1:[::2]:3", "*:0:h:1", "a:b:c:d:e", "[", "]:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := parseForwardSpec(s)
		if err != nil {
			return
		}
		// What parses must be usable addresses.
		if _, _, err := net.SplitHostPort(spec.Listen); err != nil {
			t.Fatalf("%q: listen %q: %v", s, spec.Listen, err)
		}
		if _, _, err := net.SplitHostPort(spec.Remote); err != nil {
			t.Fatalf("%q: remote %q: %v", s, spec.Remote, err)
		}
	})
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1500000: "1.5 MB", 3 << 40: "3.3 TB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSanitizeRedactsSignatures(t *testing.T) {
	in := `GET https://x/?X-Amz-Signature=abcd1234&X-Amz-Security-Token=SECRETTOKEN&a=1 "Signature=deadbeef"`
	got := sanitize(in)
	for _, secret := range []string{"abcd1234", "SECRETTOKEN", "deadbeef"} {
		if strings.Contains(got, secret) {
			t.Errorf("sanitize left %q in %q", secret, got)
		}
	}
	if !strings.Contains(got, "a=1") {
		t.Errorf("sanitize removed too much: %q", got)
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\n  b\r\nc\n"); got != "a; b; c" {
		t.Errorf("oneLine = %q", got)
	}
}
