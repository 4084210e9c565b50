package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

const testTarget = "i-0123456789abcdef0"

// fixture is the emulator (in this process) serving testTarget → a real
// sshd, and the environment and flags for a jumpless subprocess.
type fixture struct {
	sshd   *testenv.SSHD
	emu    *ssmtest.Server
	kh     string   // known_hosts with the sshd's key under testTarget
	env    []string // AWS credentials and region of the emulator
	flags  []string // --target, --endpoint-url, SSH flags
	secret string   // the emulator's secret key (must never be printed)
}

func newFixture(t *testing.T, useTLS bool) *fixture {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	emu, err := ssmtest.NewServer(ssmtest.Config{
		Targets: map[string]string{testTarget: sshd.Addr},
		Pacing:  ssmtest.Unpaced,
		TLS:     useTLS,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	ak, sk := emu.Credentials()
	f := &fixture{sshd: sshd, emu: emu, secret: sk}
	f.kh = sshd.WriteKnownHosts(false, testTarget)
	f.env = append(baseEnv(t),
		"AWS_ACCESS_KEY_ID="+ak,
		"AWS_SECRET_ACCESS_KEY="+sk,
		"AWS_REGION="+emu.Region(),
	)
	f.flags = []string{
		"--target", testTarget,
		"--endpoint-url", emu.URL(),
		"--ssh-user", sshd.User,
		"--ssh-key", sshd.ClientKeyPath,
		"--known-hosts", f.kh,
	}
	if useTLS {
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, emu.CACertPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		f.flags = append(f.flags, "--ca-bundle", ca)
	}
	return f
}

// args returns cmd, the fixture's flags, then extra.
func (f *fixture) args(cmd string, extra ...string) []string {
	return append(append([]string{cmd}, f.flags...), extra...)
}

// waitNoSessions waits until the emulator has no open session.
func (f *fixture) waitNoSessions(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.emu.Stats().SessionsOpen != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("emulator still has %d open sessions: %v", f.emu.Stats().SessionsOpen, f.emu.SessionIDs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) noSecrets(t *testing.T, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, f.secret) {
			t.Errorf("output contains the AWS secret key:\n%s", o)
		}
	}
}

func psqlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("psql")
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("psql not installed; %s", testenv.Hint)
		}
		t.Skipf("psql not installed; %s", testenv.Hint)
	}
	return p
}

// TestRunPsqlThroughTheTunnel runs the real psql through jumpless run
// (emulator → real sshd → real PostgreSQL) with PGHOST/PGPORT from --env pg.
func TestRunPsqlThroughTheTunnel(t *testing.T) {
	psqlPath(t)
	pg := testenv.PostgresAddr(t)
	f := newFixture(t, false)
	r := runJumpless(t, f.env, f.args("run", "--verbose", "--to", pg, "--env", "pg", "--",
		"psql", "-U", "postgres", "-d", "test", "-tA", "-c", "select 40 + 2, current_database()")...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "42|test" {
		t.Errorf("psql output %q, want 42|test", r.stdout)
	}
	t.Logf("verbose stderr:\n%s", r.stderr)
	if !strings.Contains(r.stderr, "level=") {
		t.Errorf("--verbose logged nothing: %s", r.stderr)
	}
	f.waitNoSessions(t)
	if st := f.emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("SessionsStarted = %d, want 1", st.SessionsStarted)
	}
	f.noSecrets(t, r.stdout, r.stderr)
}

// TestRunMySQLClientThroughTheTunnel runs the real mysql client through
// jumpless run (emulator → real sshd → real MariaDB), configured only by
// MYSQL_HOST/MYSQL_TCP_PORT from --env mysql.
func TestRunMySQLClientThroughTheTunnel(t *testing.T) {
	mysql, err := exec.LookPath("mysql")
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("mysql client not installed; %s", testenv.Hint)
		}
		t.Skipf("mysql client not installed; %s", testenv.Hint)
	}
	my := testenv.MySQLAddr(t)
	f := newFixture(t, false)
	r := runJumpless(t, f.env, f.args("run", "--to", my, "--env", "mysql", "--",
		mysql, "-u", "root", "-N", "-B", "-e", "select 40 + 2")...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "42" {
		t.Errorf("mysql output %q, want 42", r.stdout)
	}
	f.waitNoSessions(t)
}

// TestRunSetsAddressVariablesAndPassesExitStatus guards the child's
// environment (JUMPLESS_*, MYSQL_*, no passphrase) and the exit status
// pass-through, over TLS with --ca-bundle.
func TestRunSetsAddressVariablesAndPassesExitStatus(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newFixture(t, true)
	env := append(f.env, "JUMPLESS_SSH_KEY_PASSPHRASE=not-for-the-child")
	script := `echo "addr=$JUMPLESS_ADDR host=$JUMPLESS_HOST port=$JUMPLESS_PORT addrs=$JUMPLESS_ADDRS mysql=$MYSQL_HOST:$MYSQL_TCP_PORT pass=${JUMPLESS_SSH_KEY_PASSPHRASE:-none}"; exit 7`
	r := runJumpless(t, env, f.args("run", "--to", echo, "-L", "127.0.0.1:0:"+echo, "--env", "mysql", "--", "sh", "-c", script)...)
	if r.code != 7 {
		t.Fatalf("exit %d, want the command's 7\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var addr, host, port, addrs, mysql, pass string
	line := strings.TrimSpace(r.stdout)
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "addr":
			addr = v
		case "host":
			host = v
		case "port":
			port = v
		case "addrs":
			addrs = v
		case "mysql":
			mysql = v
		case "pass":
			pass = v
		}
	}
	if host != "127.0.0.1" || port == "" || port == "0" || addr != host+":"+port || mysql != addr {
		t.Errorf("child environment: %s", line)
	}
	if list := strings.Split(addrs, ","); len(list) != 2 || list[0] != addr || list[1] == addr {
		t.Errorf("JUMPLESS_ADDRS = %q, want the --to address then the -L one", addrs)
	}
	if pass != "none" {
		t.Errorf("the child got JUMPLESS_SSH_KEY_PASSPHRASE")
	}
	f.waitNoSessions(t)
}

// TestRunExitsWith128PlusSignalOfAKilledCommand guards the shell
// convention for a command killed by a signal.
func TestRunExitsWith128PlusSignalOfAKilledCommand(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	r := runJumpless(t, f.env, f.args("run", "--to", echo, "--", "sh", "-c", "kill -KILL $$")...)
	if r.code != 128+9 {
		t.Fatalf("exit %d, want 137; stderr %s", r.code, r.stderr)
	}
	f.waitNoSessions(t)
}

// TestRunForwardsSIGTERMToTheCommand guards signal forwarding: jumpless
// passes SIGTERM on, the command's trap decides the status, the tunnel
// closes.
func TestRunForwardsSIGTERMToTheCommand(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	p := startJumpless(t, f.env, f.args("run", "--to", echo, "--",
		"sh", "-c", `trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done`)...)
	p.line("ready", 60*time.Second)
	if code := p.stop(syscall.SIGTERM, 20*time.Second); code != 42 {
		t.Fatalf("exit %d, want 42 from the trap; stdout %s stderr %s", code, p.out(), p.errOut())
	}
	if !strings.Contains(p.out(), "got-term") {
		t.Errorf("the command did not get SIGTERM; stdout %s", p.out())
	}
	f.waitNoSessions(t)
}

// forwardAddr starts jumpless forward with args and returns the process
// and the local address of its first -L.
func forwardAddr(t *testing.T, env []string, args []string) (*proc, string) {
	t.Helper()
	p := startJumpless(t, env, args...)
	l := p.line("listening on ", 60*time.Second)
	rest := strings.TrimPrefix(l, "listening on ")
	local, _, ok := strings.Cut(rest, " → ")
	if !ok {
		t.Fatalf("unexpected line %q", l)
	}
	return p, local
}

// echoThrough sends data through addr and checks it comes back (without
// half-closing: like a database client, it reads the answer, then closes).
func echoThrough(t *testing.T, addr string, size int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i*7 + i/251)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echoed bytes differ")
	}
}

// TestForwardCarriesConnectionsAndStopsCleanlyOnSIGINT guards forward:
// several -L, a psql session and an echo round trip through the local
// ports, then SIGINT → exit 0 with every session terminated.
func TestForwardCarriesConnectionsAndStopsCleanlyOnSIGINT(t *testing.T) {
	psql := psqlPath(t)
	pg := testenv.PostgresAddr(t)
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	p, pgLocal := forwardAddr(t, f.env, f.args("forward", "-L", "127.0.0.1:0:"+pg, "-L", "0:"+echo))
	echoLocal := strings.TrimPrefix(p.line("listening on ", 10*time.Second), "listening on ")
	echoLocal, _, _ = strings.Cut(echoLocal, " → ")

	host, port, _ := net.SplitHostPort(pgLocal)
	out, err := exec.Command(psql, "-h", host, "-p", port, "-U", "postgres", "-d", "test", "-tA", "-c", "select 6 * 7").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql through %s: %v: %s\njumpless stderr: %s", pgLocal, err, out, p.errOut())
	}
	echoThrough(t, echoLocal, 200_000)
	echoThrough(t, echoLocal, 10)

	if code := p.stop(syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0; stderr: %s", code, p.errOut())
	}
	f.waitNoSessions(t)
	st := f.emu.Stats()
	if st.SessionsStarted != 1 || st.SessionsTerminated != 1 {
		t.Errorf("sessions started %d, terminated %d; want 1 and 1", st.SessionsStarted, st.SessionsTerminated)
	}
	if !strings.Contains(p.errOut(), "tunnel closed: 3 connections") {
		t.Errorf("no summary on stderr: %s", p.errOut())
	}
	f.noSecrets(t, p.out(), p.errOut())
}

// TestForwardStopsOnSIGTERM guards SIGTERM (what orchestrators send).
func TestForwardStopsOnSIGTERM(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newFixture(t, true)
	p, local := forwardAddr(t, f.env, f.args("forward", "--quiet", "--sessions", "2", "-L", "0:"+echo))
	// A connection left open must not keep jumpless from exiting.
	c, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0; stderr: %s", code, p.errOut())
	}
	f.waitNoSessions(t)
	if st := f.emu.Stats(); st.SessionsStarted != 2 || st.SessionsTerminated != 2 {
		t.Errorf("--sessions 2: started %d, terminated %d sessions", st.SessionsStarted, st.SessionsTerminated)
	}
	if p.errOut() != "" {
		t.Errorf("--quiet printed: %s", p.errOut())
	}
	if _, err := c.Read(buf); err == nil {
		t.Errorf("the local connection is still open after jumpless exited")
	}
}

// halfCloseServer is a target that reads each connection until EOF, then
// answers "got N bytes, sha256 HEX\n" and closes: like a bulk loader or
// "nc -N", it needs the client's half-close to answer at all. It stops in
// the test's cleanup.
func halfCloseServer(t *testing.T) string {
	t.Helper()
	return testenv.TCPServer(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "got %d bytes, sha256 %x\n", n, h.Sum(nil))
	})
}

// TestForwardPassesALocalHalfCloseToTheTarget guards half-close through the
// whole stack (local TCP → forward → SSM session → sshd → target): a client
// that writes, half-closes its socket and then reads gets the answer of a
// target that only answers after end of input.
func TestForwardPassesALocalHalfCloseToTheTarget(t *testing.T) {
	target := halfCloseServer(t)
	f := newFixture(t, false)
	p, local := forwardAddr(t, f.env, f.args("forward", "--quiet", "-L", "0:"+target))
	for _, size := range []int{0, 10, 300_000} {
		msg := bytes.Repeat([]byte{0}, size)
		for i := range msg {
			msg[i] = byte(i*31 + i/997)
		}
		c, err := net.DialTimeout("tcp", local, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("%d bytes: write: %v", size, err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		reply, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("%d bytes: reading the reply after half-close: %v (got %q); jumpless stderr: %s", size, err, reply, p.errOut())
		}
		if want := fmt.Sprintf("got %d bytes, sha256 %x\n", size, sha256.Sum256(msg)); string(reply) != want {
			t.Fatalf("%d bytes: reply %q, want %q", size, reply, want)
		}
	}
	if code := p.stop(syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0; stderr: %s", code, p.errOut())
	}
	f.waitNoSessions(t)
}

// TestForwardExitsWith3WhenTheSessionIsClosed guards a tunnel lost while
// forwarding: the service closes the session, jumpless exits 3 and says so.
func TestForwardExitsWith3WhenTheSessionIsClosed(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	p, _ := forwardAddr(t, f.env, f.args("forward", "-L", "0:"+echo))
	ids := f.emu.SessionIDs()
	if len(ids) != 1 {
		t.Fatalf("sessions %v, want one", ids)
	}
	f.emu.CloseChannel(ids[0], "session closed by an administrator")
	if code := p.wait(60 * time.Second); code != 3 {
		t.Fatalf("exit %d, want 3; stderr: %s", code, p.errOut())
	}
	if !strings.Contains(p.errOut(), "jumpless: forward: tunnel lost") {
		t.Errorf("stderr: %s", p.errOut())
	}
}

// TestCheckReportsOKStepsForAGoodConfig guards check's happy path.
func TestCheckReportsOKStepsForAGoodConfig(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	r := runJumpless(t, f.env, f.args("check", "--to", echo)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"[ OK ] SSH private key",
		"[ OK ] known_hosts",
		"[ OK ] AWS configuration    region us-east-1",
		"[ OK ] AWS credentials",
		"[ OK ] StartSession",
		"[ OK ] agent handshake      agent " + ssmtest.DefaultAgentVersion,
		"[ OK ] SSH host key",
		"[ OK ] SSH authentication   logged in as " + f.sshd.User,
		"[ OK ] database address " + echo,
		"All 9 checks passed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("a step failed:\n%s", r.stdout)
	}
	f.waitNoSessions(t)
	f.noSecrets(t, r.stdout, r.stderr)
}

// TestCheckShowsFingerprintForAWrongHostKey guards the host key advice:
// the offered fingerprint and what to change.
func TestCheckShowsFingerprintForAWrongHostKey(t *testing.T) {
	f := newFixture(t, false)
	other, _ := testenv.NewEd25519Key(t)
	wrong := testenv.WriteKnownHosts(t, other.PublicKey(), false, testTarget)
	args := f.args("check", "--known-hosts", wrong, "--to", "127.0.0.1:9")
	r := runJumpless(t, f.env, args...)
	t.Logf("jumpless check output:\n%s", r.stdout)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"[ OK ] StartSession",
		"[FAIL] SSH host key         the host key of " + testTarget + " does not match",
		"the instance offers " + f.sshd.HostKeyFingerprint,
		"likely cause: the instance was replaced",
		"fix: verify " + f.sshd.HostKeyFingerprint,
		"with: " + testTarget + " " + f.sshd.HostKeyLine,
		"[SKIP] SSH authentication",
		"[SKIP] database address 127.0.0.1:9",
		"1 of ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	f.waitNoSessions(t)
}

// TestCheckAdvisesOnEachFailingStep guards the other diagnoses: unknown
// instance, wrong secret key, wrong user, unreachable database address
// (the bastion's connect failed: a closed port), forwarding prohibited by
// the real sshd (a key with no-port-forwarding), no host key configured.
func TestCheckAdvisesOnEachFailingStep(t *testing.T) {
	f := newFixture(t, false)
	closed := closedPort(t)
	noFwdKey := authorizeWithOptions(t, f.sshd, "no-port-forwarding")
	tests := []struct {
		name    string
		env     []string
		args    []string
		want    []string
		notWant []string // the other dial diagnoses must not be mixed in
	}{
		{"instance not connected", nil, f.args("check", "--target", "i-0fedcba9876543210"),
			[]string{"[FAIL] StartSession         i-0fedcba9876543210 is not connected to Session Manager", "amazon-ssm-agent", "--region", "[SKIP] SSH host key"}, nil},
		{"wrong secret key", []string{"AWS_SECRET_ACCESS_KEY=" + strings.Repeat("x", 40)}, f.args("check"),
			[]string{"[FAIL] StartSession", "rejected the request signature", "AWS_SECRET_ACCESS_KEY", "--profile"}, nil},
		{"wrong user", nil, f.args("check", "--ssh-user", "nobody-here"),
			[]string{"[ OK ] SSH host key", "[FAIL] SSH authentication", `refused SSH login as "nobody-here": tried publickey file ` + f.sshd.ClientKeyPath,
				"; the server accepts public keys but none of these", "--ssh-user", "authorized_keys"},
			[]string{"server accepts: publickey"}}, // what was tried is not what the server accepts
		{"database address unreachable", nil, f.args("check", "--to", closed),
			[]string{"[ OK ] SSH authentication", "[FAIL] database address " + closed + " the instance cannot connect to " + closed + ": Connection refused",
				"likely cause: nothing listens on that port", "fix: check the host name and port", "security group"},
			[]string{"AllowTcpForwarding", "through the tunnel"}},
		{"forwarding prohibited", nil, f.args("check", "--ssh-key", noFwdKey, "--to", closed),
			[]string{"[ OK ] SSH authentication", "[FAIL] database address " + closed + " sshd on the instance does not allow forwarding to " + closed,
				"likely cause: AllowTcpForwarding no", "no-port-forwarding", "fix: on the instance set AllowTcpForwarding"},
			[]string{"cannot connect to", "security group"}},
		{"no host key configured", nil, []string{"check", "--target", testTarget, "--endpoint-url", f.emu.URL(), "--ssh-user", f.sshd.User, "--ssh-key", f.sshd.ClientKeyPath},
			[]string{"[FAIL] SSH host key         no host key to verify against", f.sshd.HostKeyFingerprint, "--host-key " + f.sshd.HostKeyFingerprint}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append(append([]string{}, f.env...), tt.env...)
			r := runJumpless(t, env, tt.args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(r.stdout, w) {
					t.Errorf("output has %q:\n%s", w, r.stdout)
				}
			}
			f.noSecrets(t, r.stdout, r.stderr)
		})
	}
	f.waitNoSessions(t)
}

// authorizeWithOptions authorizes a new key for sshd's user with the
// authorized_keys options opts (sshd(8) AUTHORIZED_KEYS FILE FORMAT) and
// returns its private key file. testenv.StartSSHD keeps authorized_keys in
// the server's Dir; sshd reads it at each login.
func authorizeWithOptions(t *testing.T, sshd *testenv.SSHD, opts string) string {
	t.Helper()
	signer, path := testenv.NewEd25519Key(t)
	af, err := os.OpenFile(filepath.Join(sshd.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer af.Close()
	if _, err := af.Write(append([]byte(opts+" "), gossh.MarshalAuthorizedKey(signer.PublicKey())...)); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestEmulatorCommandServesForward runs "jumpless emulator" (TLS, CA file,
// env file, a fixed --listen address) and "jumpless forward" configured only from its --print-env
// output, then stops both.
func TestEmulatorCommandServesForward(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	dir := t.TempDir()
	ca, envFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "emu.env")
	listen := closedPort(t)
	emu := startJumpless(t, baseEnv(t), "emulator", "--target", testTarget+"="+sshd.Addr, "--listen", listen,
		"--pacing", "unpaced", "--ca-file", ca, "--env-file", envFile, "--print-env")
	vars := map[string]string{}
	for len(vars) < 6 {
		l := emu.line("=", 30*time.Second)
		k, v, _ := strings.Cut(l, "=")
		vars[k] = v
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL_SSM", "JUMPLESS_TARGET", "JUMPLESS_CA_BUNDLE"} {
		if vars[k] == "" {
			t.Fatalf("--print-env lacks %s: %v", k, vars)
		}
	}
	if vars["AWS_ENDPOINT_URL_SSM"] != "https://"+listen || vars["JUMPLESS_TARGET"] != testTarget || vars["JUMPLESS_CA_BUNDLE"] != ca {
		t.Errorf("env: %v", vars)
	}
	b, err := os.ReadFile(envFile)
	if err != nil || !strings.Contains(string(b), "AWS_ENDPOINT_URL_SSM="+vars["AWS_ENDPOINT_URL_SSM"]+"\n") {
		t.Errorf("--env-file: %q, %v", b, err)
	}
	// The banner (stderr with --print-env) names endpoint, credentials and target.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(emu.errOut(), "Stop with Ctrl-C") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, w := range []string{"endpoint:          " + vars["AWS_ENDPOINT_URL_SSM"], "access key id:     " + vars["AWS_ACCESS_KEY_ID"], "target:            " + testTarget + " → " + sshd.Addr} {
		if !strings.Contains(emu.errOut(), w) {
			t.Errorf("banner lacks %q:\n%s", w, emu.errOut())
		}
	}

	env := baseEnv(t)
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	kh := sshd.WriteKnownHosts(false, testTarget)
	fw, local := forwardAddr(t, env, []string{"forward", "--ssh-user", sshd.User, "--ssh-key", sshd.ClientKeyPath, "--known-hosts", kh, "-L", "0:" + echo})
	echoThrough(t, local, 50_000)
	if code := fw.stop(syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("forward exit %d; stderr %s", code, fw.errOut())
	}
	if code := emu.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("emulator exit %d; stderr %s", code, emu.errOut())
	}
	if !strings.Contains(emu.errOut(), "emulator stopped: 1 sessions started, 1 terminated") {
		t.Errorf("emulator summary: %s", emu.errOut())
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Errorf("--env-file not removed on exit: %v", err)
	}
}

// TestTunnelFailuresExit3WithAdviceOnOneLine guards forward and run when
// the tunnel cannot open: exit 3, one line with the cause and the fix, and
// run's command never started.
func TestTunnelFailuresExit3WithAdviceOnOneLine(t *testing.T) {
	f := newFixture(t, false)
	other, _ := testenv.NewEd25519Key(t)
	wrong := testenv.WriteKnownHosts(t, other.PublicKey(), false, testTarget)
	marker := filepath.Join(t.TempDir(), "ran")
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"forward host key mismatch", f.args("forward", "--known-hosts", wrong, "-L", "0:db:5432"),
			[]string{"jumpless: forward: the host key of " + testTarget + " does not match: the instance offers " + f.sshd.HostKeyFingerprint, "likely cause:", "fix:"}},
		{"run auth failure", f.args("run", "--ssh-user", "nobody-here", "--to", "db:5432", "--", "touch", marker),
			[]string{`jumpless: run: the instance refused SSH login as "nobody-here"`, "--ssh-user"}},
		{"forward instance not connected", f.args("forward", "--target", "i-0fedcba9876543210", "-L", "0:db:5432"),
			[]string{"jumpless: forward: i-0fedcba9876543210 is not connected to Session Manager", "TargetNotConnected", "fix:"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runJumpless(t, f.env, tt.args...)
			if r.code != 3 {
				t.Errorf("exit %d, want 3; stderr %s", r.code, r.stderr)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("stderr is not one line:\n%s", r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			f.noSecrets(t, r.stdout, r.stderr)
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("run started its command although the tunnel failed")
	}
	f.waitNoSessions(t)
}

// TestConnectionFailureExits3 guards exit 3 for an SSM endpoint that does
// not answer, with a one-line message.
func TestConnectionFailureExits3(t *testing.T) {
	f := newFixture(t, false)
	dead := "http://" + closedPort(t)
	r := runJumpless(t, f.env, f.args("forward", "--endpoint-url", dead, "--connect-timeout", "20s", "-L", "0:db:5432")...)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "jumpless: forward: ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("stderr: %q", r.stderr)
	}
	f.noSecrets(t, r.stderr)
}

// TestForwardShowsLiveByteCountsOnATerminal guards the progress line: with
// stderr on a terminal (a pty from script(1)) forward shows connection and
// byte counts.
func TestForwardShowsLiveByteCountsOnATerminal(t *testing.T) {
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed (util-linux); needed for a pty")
	}
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	args := f.args("forward", "-L", "0:"+echo)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	// jumpless runs in the background of a shell inside the pty (stderr
	// on the terminal, stdout to a file); the shell waits for two progress
	// ticks and stops it.
	out := filepath.Join(t.TempDir(), "out")
	sh := fmt.Sprintf(`%s %s > %s & pid=$!
while ! grep -q listening %s 2>/dev/null; do sleep 0.05; done
sleep 2.5; kill -INT $pid; wait $pid; echo "exit=$?"`, binary, strings.Join(quoted, " "), out, out)
	cmd := exec.Command(scriptPath, "-qefc", sh, "/dev/null")
	cmd.Env = f.env
	tty, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, tty)
	}
	s := string(tty)
	for _, w := range []string{"conns 0 open, 0 total", "↑ 0 B ↓ 0 B", "tunnel closed: 0 connections", "exit=0"} {
		if !strings.Contains(s, w) {
			t.Errorf("terminal output lacks %q:\n%q", w, s)
		}
	}
	f.waitNoSessions(t)
}

// TestRunAuthenticatesWithSSHAgent guards --ssh-agent (and the default to
// the agent when $SSH_AUTH_SOCK is set and no --ssh-key is given) with a
// real ssh-agent holding the authorized key.
func TestRunAuthenticatesWithSSHAgent(t *testing.T) {
	agentPath, err1 := exec.LookPath("ssh-agent")
	addPath, err2 := exec.LookPath("ssh-add")
	if err1 != nil || err2 != nil {
		t.Skip("ssh-agent/ssh-add not installed (openssh-client)")
	}
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command(agentPath, "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	add := exec.Command(addPath, f.sshd.ClientKeyPath)
	add.Env = []string{"SSH_AUTH_SOCK=" + sock}
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	env := append(append([]string{}, f.env...), "SSH_AUTH_SOCK="+sock)
	common := []string{"--target", testTarget, "--endpoint-url", f.emu.URL(), "--ssh-user", f.sshd.User, "--known-hosts", f.kh, "--to", echo}
	for _, extra := range [][]string{{"--ssh-agent"}, nil} {
		args := append(append(append([]string{"run"}, common...), extra...), "--", "true")
		r := runJumpless(t, env, args...)
		if r.code != 0 {
			t.Errorf("jumpless %v: exit %d; stderr %s", extra, r.code, r.stderr)
		}
	}
	r := runJumpless(t, env, append(append([]string{"check"}, common...), "--ssh-agent")...)
	if r.code != 0 || !strings.Contains(r.stdout, "[ OK ] SSH private key      using ssh-agent at "+sock) {
		t.Errorf("check with agent: exit %d\n%s", r.code, r.stdout)
	}
	f.waitNoSessions(t)
}

// TestEncryptedKeyPassphraseFromEnvironment guards
// $JUMPLESS_SSH_KEY_PASSPHRASE: it decrypts the key, its absence or a wrong
// value is a usage error (exit 2) saying what to do, it is ignored for an
// unencrypted key, and it is never printed.
func TestEncryptedKeyPassphraseFromEnvironment(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (openssh-client)")
	}
	echo := testenv.EchoServer(t)
	f := newFixture(t, false)
	key := filepath.Join(t.TempDir(), "id_enc")
	const pass = "correct horse battery staple"
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", pass, "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubLine, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	f.sshd.AuthorizeKey(pub)
	args := []string{"run", "--target", testTarget, "--endpoint-url", f.emu.URL(), "--ssh-user", f.sshd.User,
		"--ssh-key", key, "--known-hosts", f.kh, "--to", echo, "--", "true"}
	for _, tt := range []struct {
		name, pass string
		key        string // "": the encrypted key
		code       int
		want       string
	}{
		{"right passphrase", pass, "", 0, ""},
		{"no passphrase", "", "", 2, "jumpless: run: the SSH key " + key + " is encrypted; fix: put its passphrase in $JUMPLESS_SSH_KEY_PASSPHRASE, or load it into ssh-agent and use --ssh-agent\n"},
		{"wrong passphrase", "not it", "", 2, "jumpless: run: the passphrase in $JUMPLESS_SSH_KEY_PASSPHRASE does not decrypt " + key + "; fix: check the passphrase\n"},
		// The variable may be set for other keys: ignored, as by OpenSSH.
		{"passphrase set for an unencrypted key", "for another key", f.sshd.ClientKeyPath, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{}, f.env...)
			if tt.pass != "" {
				env = append(env, "JUMPLESS_SSH_KEY_PASSPHRASE="+tt.pass)
			}
			args := args
			if tt.key != "" {
				args = append([]string{}, args...)
				for i := range args {
					if args[i] == "--ssh-key" {
						args[i+1] = tt.key
					}
				}
			}
			r := runJumpless(t, env, args...)
			if r.code != tt.code || r.stderr != tt.want {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tt.code, tt.want)
			}
			if tt.pass != "" && strings.Contains(r.stdout+r.stderr, tt.pass) {
				t.Errorf("the passphrase was printed")
			}
		})
	}
	f.waitNoSessions(t)
}

// TestForwardResetsLocalClientsWhenTheTunnelDies guards the loud end of a
// forward: a local client in the middle of a download through a forward
// whose session the service terminates sees a connection reset, never a
// clean end of stream, and jumpless exits 3 naming the cause.
func TestForwardResetsLocalClientsWhenTheTunnelDies(t *testing.T) {
	download := testenv.TCPServer(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	f := newFixture(t, false)
	p, local := forwardAddr(t, f.env, f.args("forward", "-L", "0:"+download))
	c, err := net.DialTimeout("tcp", local, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 256<<10)); err != nil {
		t.Fatalf("download through the forward: %v", err)
	}
	ids := f.emu.SessionIDs()
	if len(ids) != 1 {
		t.Fatalf("sessions %v, want one", ids)
	}
	f.emu.CloseChannel(ids[0], "session closed by an administrator")
	n, err := io.Copy(io.Discard, c)
	if err == nil || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("local client read %d more bytes, then %v; want a connection reset, not a clean end", n, err)
	}
	if code := p.wait(60 * time.Second); code != 3 {
		t.Fatalf("exit %d, want 3; stderr: %s", code, p.errOut())
	}
	if e := p.errOut(); !strings.Contains(e, "tunnel lost") || !strings.Contains(e, "session closed by an administrator") {
		t.Errorf("stderr does not name the cause: %s", e)
	}
}

// TestCheckDefaultsSSHUserToTheLocalUserForTheEmulator guards the local
// default: with the SSM endpoint on loopback (the emulator in front of this
// machine's sshd) and no --ssh-user, check logs in as the local user, not
// ec2-user; with $JUMPLESS_SSH_USER it logs in as that user.
func TestCheckDefaultsSSHUserToTheLocalUserForTheEmulator(t *testing.T) {
	f := newFixture(t, false)
	args := []string{"check", "--target", testTarget, "--endpoint-url", f.emu.URL(), "--ssh-key", f.sshd.ClientKeyPath, "--known-hosts", f.kh}
	r := runJumpless(t, f.env, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "logged in as "+f.sshd.User) {
		t.Errorf("exit %d, want 0 and a login as %s:\n%s\n%s", r.code, f.sshd.User, r.stdout, r.stderr)
	}
	r = runJumpless(t, append(f.env, "JUMPLESS_SSH_USER=ec2-user"), args...)
	if r.code != 1 || !strings.Contains(r.stdout, `refused SSH login as "ec2-user"`) {
		t.Errorf("JUMPLESS_SSH_USER=ec2-user: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	f.waitNoSessions(t)
}
