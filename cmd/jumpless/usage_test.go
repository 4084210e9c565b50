package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInvocationsExitWithMessageAndCode guards the one-line error
// messages and the exit codes documented in --help: 2 for usage errors,
// 1 for other failures, 3 for connection failures, 127 when run's command
// does not exist.
func TestBadInvocationsExitWithMessageAndCode(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	kh := filepath.Join(dir, "known_hosts")
	for _, f := range []string{key, kh} {
		if err := os.WriteFile(f, []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const id = "i-0123456789abcdef0"
	ok := []string{"--target", id, "--ssh-key", key, "--known-hosts", kh}
	with := func(extra ...string) []string { return append(append([]string{}, ok...), extra...) }
	cmds := "(commands: forward, run, check, emulator)"

	tests := []struct {
		name string
		env  []string
		args []string
		code int
		// want is the whole stderr (one line) unless prefix is set.
		want   string
		prefix bool
	}{
		{"unknown command", nil, []string{"frobnicate"}, 2,
			`jumpless: unknown command "frobnicate" ` + cmds, false},
		{"flag before command", nil, []string{"--target", id}, 2,
			`jumpless: a command must come first, before flags like --target ` + cmds, false},
		{"help for unknown command", nil, []string{"help", "nope"}, 2,
			`jumpless: help: unknown command "nope" ` + cmds, false},
		{"forward without target", nil, []string{"forward"}, 2,
			`jumpless: forward: --target is required (an EC2 instance id like i-0123456789abcdef0)`, false},
		{"forward with a name as target", nil, []string{"forward", "--target", "db-bastion"}, 2,
			`jumpless: forward: --target "db-bastion" is not an instance id (want i- or mi- and 8 or 17 hex digits, like i-0123456789abcdef0) or a tag selector (tag:Name=etl-bastion)`, false},
		{"forward in ssh mode without ssh credentials", nil, []string{"forward", "--target", id, "--mode", "ssh"}, 2,
			`jumpless: forward: no SSH credentials: pass --ssh-key FILE (e.g. ~/.ssh/id_ed25519), --instance-connect, or --ssh-agent with $SSH_AUTH_SOCK set`, false},
		{"forward in direct mode with an ssh flag", nil, []string{"forward", "--target", id, "--mode", "direct", "--ssh-key", key}, 2,
			`jumpless: forward: --mode direct uses no SSH, but --ssh-key given: drop it, or use --mode ssh`, false},
		{"forward with an unknown mode", nil, []string{"forward", "--target", id, "--mode", "tls"}, 2,
			`jumpless: forward: --mode "tls": want ssh, direct or auto`, false},
		{"forward without host key verification", nil, []string{"forward", "--target", id, "--ssh-key", key}, 2,
			`jumpless: forward: no way to verify the SSH host key: pass --known-hosts FILE or --host-key SHA256:... (run 'jumpless check' to see the instance's fingerprint)`, false},
		{"forward without -L", nil, append([]string{"forward"}, ok...), 2,
			`jumpless: forward: at least one -L [BIND:]PORT:HOST:HOSTPORT is required, e.g. -L 15432:db.internal:5432`, false},
		{"forward with short -L", nil, append([]string{"forward"}, with("-L", "15432:db")...), 2,
			`jumpless: forward: -L "15432:db": want [bind_address:]port:host:hostport, e.g. 15432:db.internal:5432`, false},
		{"forward with bad local port", nil, append([]string{"forward"}, with("-L", "pg:db:5432")...), 2,
			`jumpless: forward: -L "pg:db:5432": local port "pg": want a number 0-65535`, false},
		{"forward with unknown flag", nil, []string{"forward", "--bogus"}, 2,
			`jumpless: forward: unknown flag: -bogus (see 'jumpless forward --help')`, false},
		{"forward with flag missing its value", nil, []string{"forward", "--target"}, 2,
			`jumpless: forward: flag needs an argument: -target (see 'jumpless forward --help')`, false},
		{"forward with bad number", nil, []string{"forward", "--sessions", "many"}, 2,
			`jumpless: forward: invalid value "many" for flag -sessions: want a whole number (see 'jumpless forward --help')`, false},
		{"forward with bad number in env", []string{"JUMPLESS_SESSIONS=many"}, []string{"forward"}, 2,
			`jumpless: forward: invalid value "many" in JUMPLESS_SESSIONS: want a whole number`, false},
		{"forward with stray argument", nil, append([]string{"forward"}, with("-L", "0:db:5432", "psql")...), 2,
			`jumpless: forward: unexpected argument "psql" (forward takes only flags; to run a command use 'jumpless run ... -- COMMAND')`, false},
		{"forward with bad host key", nil, []string{"forward", "--target", id, "--ssh-key", key, "--host-key", "aa:bb"}, 2,
			`jumpless: forward: --host-key "aa:bb": want a SHA256 fingerprint like SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8`, false},
		{"forward insecure and known hosts", nil, append([]string{"forward"}, with("--insecure-ignore-host-key")...), 2,
			`jumpless: forward: --insecure-ignore-host-key cannot be combined with --known-hosts or --host-key`, false},
		{"forward with bad endpoint", nil, append([]string{"forward"}, with("--endpoint-url", "127.0.0.1:8080")...), 2,
			`jumpless: forward: --endpoint-url "127.0.0.1:8080": want an http:// or https:// URL`, false},
		{"forward with missing CA bundle", []string{"AWS_REGION=us-east-1"}, append([]string{"forward"}, with("--ca-bundle", filepath.Join(dir, "nope.pem"), "-L", "127.0.0.1:0:db:5432")...), 1,
			`jumpless: forward: --ca-bundle: open ` + filepath.Join(dir, "nope.pem") + `: no such file or directory`, false},
		{"forward without region", nil, append([]string{"forward"}, with("-L", "127.0.0.1:0:db:5432")...), 2,
			`jumpless: forward: no AWS region: pass --region (e.g. --region eu-west-1), set AWS_REGION, or set region in the profile`, false},
		{"forward without AWS credentials", []string{"AWS_REGION=us-east-1"}, append([]string{"forward"}, with("-L", "127.0.0.1:0:db:5432")...), 3,
			`jumpless: forward: no AWS credentials found (`, true},
		{"forward with unknown profile", []string{"AWS_REGION=us-east-1"}, append([]string{"forward"}, with("--profile", "nosuch", "-L", "127.0.0.1:0:db:5432")...), 3,
			`jumpless: forward: loading the AWS configuration: `, true},
		{"run without command", nil, append([]string{"run"}, with("--to", "db:5432")...), 2,
			`jumpless: run: no command to run: put it after --, e.g. jumpless run --to db.internal:5432 -- psql -c 'select 1'`, false},
		{"run without forward", nil, append([]string{"run"}, with("--", "true")...), 2,
			`jumpless: run: nothing to forward: pass --to HOST:PORT (e.g. --to db.internal:5432) or -L [BIND:]PORT:HOST:HOSTPORT`, false},
		{"run with bad --to", nil, append([]string{"run"}, with("--to", "db", "--", "true")...), 2,
			`jumpless: run: --to "db": want host:port as seen from the bastion, e.g. db.internal:5432`, false},
		{"run with unknown --env", nil, append([]string{"run"}, with("--to", "db:5432", "--env", "oracle", "--", "true")...), 2,
			`jumpless: run: --env "oracle": want pg or mysql`, false},
		{"run with missing command", nil, append([]string{"run"}, with("--to", "db:5432", "--", "no-such-command-xyz")...), 127,
			`jumpless: run: command "no-such-command-xyz" not found in $PATH`, false},
		{"check without target", nil, []string{"check"}, 2,
			`jumpless: check: --target is required (an EC2 instance id like i-0123456789abcdef0)`, false},
		{"emulator with bad pacing", nil, []string{"emulator", "--pacing", "fast"}, 2,
			`jumpless: emulator: --pacing "fast": want realistic or unpaced`, false},
		{"emulator with bad target", nil, []string{"emulator", "--target", "i-0123456789abcdef0"}, 2,
			`jumpless: emulator: --target "i-0123456789abcdef0": want ID=HOST:PORT, e.g. i-0123456789abcdef0=127.0.0.1:22`, false},
		{"emulator with bad target id", nil, []string{"emulator", "--target-id", "web-1"}, 2,
			`jumpless: emulator: target id "web-1" is not an instance id (want i- or mi- and 8 or 17 hex digits, like i-0123456789abcdef0)`, false},
		{"emulator with bad listen address", nil, []string{"emulator", "--listen", "4566"}, 2,
			`jumpless: emulator: --listen "4566": want HOST:PORT, e.g. 127.0.0.1:4566 (port 0: a free port)`, false},
		{"emulator with listen address without host", nil, []string{"emulator", "--listen", ":4566"}, 2,
			`jumpless: emulator: --listen ":4566": give the host too, e.g. 127.0.0.1:4566 (0.0.0.0 for every interface)`, false},
		{"emulator with bad listen port", []string{"JUMPLESS_EMULATOR_LISTEN=127.0.0.1:http"}, []string{"emulator"}, 2,
			`jumpless: emulator: --listen "127.0.0.1:http": port: want a number 0-65535`, false},
		{"emulator on a busy port", nil, []string{"emulator", "--listen", busy.Addr().String()}, 1,
			`jumpless: emulator: --listen ` + busy.Addr().String() + `: cannot listen: bind: address already in use (pick another port, or 0 for a free one)`, false},
		{"emulator with half credentials", nil, []string{"emulator", "--access-key-id", "AKIAEXAMPLE"}, 2,
			`jumpless: emulator: --access-key-id and --secret-access-key go together: give both or neither`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append(baseEnv(t), tt.env...)
			r := runJumpless(t, env, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", r.code, tt.code, r.stderr)
			}
			got := strings.TrimRight(r.stderr, "\n")
			if strings.Count(got, "\n") != 0 {
				t.Errorf("stderr has %d lines, want one:\n%s", strings.Count(got, "\n")+1, got)
			}
			if tt.prefix {
				if !strings.HasPrefix(got, tt.want) {
					t.Errorf("stderr:\n%s\nwant prefix:\n%s", got, tt.want)
				}
			} else if got != tt.want {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %q", r.stdout)
			}
		})
	}
}

// TestNoArgumentsPrintsUsageAndExits2 guards the bare "jumpless".
func TestNoArgumentsPrintsUsageAndExits2(t *testing.T) {
	r := runJumpless(t, baseEnv(t))
	if r.code != 2 || !strings.Contains(r.stderr, "Usage: jumpless COMMAND [flags]") {
		t.Fatalf("code %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestHelpForEveryCommand guards that --help works everywhere, exits 0 and
// documents flags with their environment variables, examples and exit
// codes.
func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage: jumpless COMMAND", "forward", "run", "check", "emulator", "Exit status:"}},
		{[]string{"help"}, []string{"Usage: jumpless COMMAND"}},
		{[]string{"forward", "--help"}, []string{"Usage: jumpless forward", "-L, --local-forward [BIND:]PORT:HOST:HOSTPORT", "[$JUMPLESS_TARGET]", "[$JUMPLESS_SSH_KEY]", "--profile NAME", "--region REGION", "--endpoint-url URL", "--ca-bundle FILE", "JUMPLESS_SSH_KEY_PASSPHRASE", "Examples:", "Exit status:", "  3    connection or tunnel failure"}},
		{[]string{"help", "forward"}, []string{"Usage: jumpless forward"}},
		{[]string{"help", "--help"}, []string{"Usage: jumpless COMMAND", "jumpless help forward"}},
		{[]string{"help", "-h"}, []string{"Usage: jumpless COMMAND"}},
		{[]string{"help", "help"}, []string{"Usage: jumpless COMMAND"}},
		{[]string{"help", "check"}, []string{"Usage: jumpless check", "SSH authentication"}},
		{[]string{"help", "emulator"}, []string{"Usage: jumpless emulator"}},
		{[]string{"forward", "--help"}, []string{"--ssh-user USER", "default ec2-user", "your local user name when the SSM endpoint is on this machine"}},
		{[]string{"run", "-h"}, []string{"Usage: jumpless run", "--to HOST:PORT", "--env KIND", "PGHOST", "MYSQL_TCP_PORT", "JUMPLESS_ADDR", "the command's own exit status", "Examples:"}},
		{[]string{"check", "--help"}, []string{"Usage: jumpless check", "OK", "FAIL", "Examples:", "Exit status:"}},
		{[]string{"emulator", "--help"}, []string{"Usage: jumpless emulator", "--target-addr HOST:PORT", "--target ID=HOST:PORT", "--pacing MODE", "--tls", "--ca-file FILE", "--print-env", "[$JUMPLESS_EMULATOR_TARGETS]", "--listen ADDR", "(default 127.0.0.1:0)", "[$JUMPLESS_EMULATOR_LISTEN]", "--listen 127.0.0.1:4566", "Examples:"}},
	} {
		r := runJumpless(t, baseEnv(t), c.args...)
		if r.code != 0 {
			t.Errorf("jumpless %v: exit %d, stderr %s", c.args, r.code, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("jumpless %v: help lacks %q:\n%s", c.args, w, r.stdout)
			}
		}
	}
}

// TestEnvironmentSetsFlags guards the JUMPLESS_* variables: the same
// validation as the flags, and the flag wins over the variable.
func TestEnvironmentSetsFlags(t *testing.T) {
	env := append(baseEnv(t), "JUMPLESS_TARGET=db-bastion")
	r := runJumpless(t, env, "forward")
	if r.code != 2 || !strings.Contains(r.stderr, `--target "db-bastion" is not an instance id`) {
		t.Errorf("JUMPLESS_TARGET not used: code %d, stderr %s", r.code, r.stderr)
	}
	r = runJumpless(t, env, "forward", "--target", "i-0123456789abcdef0")
	// No SSH flag: direct mode, which needs only the target and -L.
	if r.code != 2 || !strings.Contains(r.stderr, "at least one -L") {
		t.Errorf("--target did not override JUMPLESS_TARGET: code %d, stderr %s", r.code, r.stderr)
	}
}
