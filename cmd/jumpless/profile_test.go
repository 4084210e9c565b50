package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
)

// writeProfiles writes text to HOME/.config/jumpless/config.toml of the
// environment env (baseEnv's HOME) and returns the file's path.
func writeProfiles(t *testing.T, env []string, text string) string {
	t.Helper()
	home := ""
	for _, kv := range env {
		if h, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = h
		}
	}
	if home == "" {
		t.Fatal("no HOME in env")
	}
	path := filepath.Join(home, ".config", "jumpless", "config.toml")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProfilesDriveForwardRunAndCheck writes a config file naming a tunnel
// (emulator endpoint, real sshd user, key and known_hosts, a forward to the
// real PostgreSQL) and runs "jumpless check orders", "jumpless run orders --
// psql" and "jumpless forward orders" from it with no other flags; a flag on
// the command line wins over the profile.
func TestProfilesDriveForwardRunAndCheck(t *testing.T) {
	psql := psqlPath(t)
	pg := testenv.PostgresAddr(t)
	f := newFixture(t, false)
	env := append([]string{}, f.env...)
	path := writeProfiles(t, env, fmt.Sprintf(`# tunnels of the orders team
[tunnel.orders]
target       = %q
endpoint-url = %q
ssh-user     = %q
ssh-key      = %q
known-hosts  = %q
forward      = ["127.0.0.1:0:%s"]
env          = "pg"
sessions     = 2

[tunnel.broken]
target       = %q
endpoint-url = %q
ssh-user     = "nobody-here"
ssh-key      = %q
known-hosts  = %q
`, testTarget, f.emu.URL(), f.sshd.User, f.sshd.ClientKeyPath, f.kh, pg,
		testTarget, f.emu.URL(), f.sshd.ClientKeyPath, f.kh))

	r := runJumpless(t, env, "check", "orders")
	if r.code != 0 || !strings.Contains(r.stdout, "All 9 checks passed") || !strings.Contains(r.stdout, "[tunnel.orders] in "+path) {
		t.Fatalf("check orders: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	r = runJumpless(t, env, "run", "orders", "--", "psql", "-U", "postgres", "-d", "test", "-tA", "-c", "select 40 + 2")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "42" {
		t.Fatalf("run orders -- psql: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	p, pgLocal := forwardAddr(t, env, []string{"forward", "orders", "--quiet"})
	host, port, _ := net.SplitHostPort(pgLocal)
	out, err := exec.Command(psql, "-h", host, "-p", port, "-U", "postgres", "-d", "test", "-tA", "-c", "select 6 * 7").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql through forward orders (%s): %v: %s\nstderr: %s", pgLocal, err, out, p.errOut())
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("forward orders: exit %d after SIGTERM; stderr: %s", code, p.errOut())
	}

	// The flag wins over the profile: the broken tunnel's user, overridden.
	r = runJumpless(t, env, "check", "broken")
	if r.code != 1 || !strings.Contains(r.stdout, `refused SSH login as "nobody-here"`) {
		t.Fatalf("check broken: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runJumpless(t, env, "check", "broken", "--ssh-user", f.sshd.User)
	if r.code != 0 || !strings.Contains(r.stdout, "logged in as "+f.sshd.User) {
		t.Fatalf("check broken --ssh-user USER: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	f.waitNoSessions(t)
	// check orders (2 sessions), run (2), forward (2), check broken twice (1 each)
	if st := f.emu.Stats(); st.SessionsStarted != st.SessionsTerminated {
		t.Errorf("sessions started %d, terminated %d", st.SessionsStarted, st.SessionsTerminated)
	}
	f.noSecrets(t, r.stdout, r.stderr)
}

// TestBadProfileErrorNamesFileLineAndFix guards the errors of a bad config
// file: each names the file, the line and what to change, exits 2, and
// opens no session.
func TestBadProfileErrorNamesFileLineAndFix(t *testing.T) {
	good := `[tunnel.orders]
target  = "i-0123456789abcdef0"
ssh-key = "/nonexistent/key"
`
	for _, c := range []struct {
		name, text string
		args       []string
		want       []string
	}{
		{"syntax", "[tunnel.orders]\ntarget = \"i-0123456789abcdef0\nssh-key = \"k\"\n", []string{"forward", "orders"},
			[]string{"config.toml:2:", "TOML syntax"}},
		{"unknown key", good + "ssh_user = \"ubuntu\"\n", []string{"forward", "orders"},
			[]string{"config.toml:4: [tunnel.orders] unknown key \"ssh_user\" (did you mean ssh-user?)", "long flag names of 'jumpless forward --help'"}},
		{"value of the wrong type", good + "sessions = \"many\"\n", []string{"run", "orders", "--", "true"},
			[]string{"config.toml:4: [tunnel.orders] sessions = \"many\": want a whole number", "override it with --sessions"}},
		{"bool as a string", good + "ssh-agent = \"yes\"\n", []string{"check", "orders"},
			[]string{"config.toml:4: [tunnel.orders] ssh-agent: want true or false without quotes, e.g. ssh-agent = true"}},
		{"invalid target", "[tunnel.orders]\n\ntarget = \"db-bastion\"\nssh-key = \"k\"\n", []string{"check", "orders"},
			[]string{"config.toml:3: [tunnel.orders] target: --target \"db-bastion\" is not an instance id", "fix it there, or override it with --target"}},
		{"unknown tunnel", good, []string{"forward", "billing"},
			[]string{"config.toml: no [tunnel.billing] (tunnels in the file: orders)"}},
		{"unknown table", good + "[tunnels.billing]\ntarget = \"i-0123456789abcdef0\"\n", []string{"forward", "orders"},
			[]string{"config.toml:4: unknown table or key \"tunnels", "only [tunnel.NAME] tables"}},
		{"list for a single value", good + "region = [\"eu-west-1\"]\n", []string{"forward", "orders"},
			[]string{"config.toml:4: [tunnel.orders] region: takes one value, not a list"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := baseEnv(t)
			path := writeProfiles(t, env, c.text)
			r := runJumpless(t, env, c.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if !strings.Contains(r.stderr, path) {
				t.Errorf("stderr does not name the file %s:\n%s", path, r.stderr)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("error is not one line:\n%s", r.stderr)
			}
		})
	}
	t.Run("no config file", func(t *testing.T) {
		env := baseEnv(t)
		r := runJumpless(t, env, "forward", "orders")
		if r.code != 2 || !strings.Contains(r.stderr, `tunnel "orders": no config file `) || !strings.Contains(r.stderr, "[tunnel.orders]") {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
}

// TestProfilePrecedence guards the order: flags over the named profile over
// JUMPLESS_* variables; --tunnel and $JUMPLESS_TUNNEL name a profile too.
func TestProfilePrecedence(t *testing.T) {
	env := baseEnv(t)
	writeProfiles(t, env, "[tunnel.bad]\ntarget = \"db-bastion\"\n[tunnel.good]\ntarget = \"i-0123456789abcdef0\"\n")
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"forward", "bad"}, `target: --target "db-bastion" is not an instance id`},
		// A good target: validation moves on (no SSH flag: direct mode, which wants -L).
		{nil, []string{"forward", "bad", "--target", "i-0123456789abcdef0"}, "at least one -L"},
		{nil, []string{"forward", "--target", "i-0123456789abcdef0", "--tunnel", "bad"}, "at least one -L"},
		{[]string{"JUMPLESS_TARGET=db-bastion"}, []string{"forward", "good"}, "at least one -L"},
		{nil, []string{"forward", "--tunnel", "bad"}, `[tunnel.bad] target`},
		{[]string{"JUMPLESS_TUNNEL=bad"}, []string{"forward"}, `[tunnel.bad] target`},
		{nil, []string{"forward", "good", "--tunnel", "bad"}, `two tunnels named: "good" and --tunnel "bad"`},
	} {
		r := runJumpless(t, append(append([]string{}, env...), c.env...), c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, stderr %q, want %q", c.env, c.args, r.code, r.stderr, c.want)
		}
	}
}
