package main

import (
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// directFixture is an emulator whose instance has no sshd: it resolves
// db.internal to 127.0.0.1, where the real databases listen; the flags name
// no SSH option, so jumpless runs in direct mode.
func directFixture(t *testing.T) *fixture {
	t.Helper()
	emu, err := ssmtest.NewServer(ssmtest.Config{
		Targets: map[string]string{testTarget: "127.0.0.1"},
		Hosts:   map[string]string{"db.internal": "127.0.0.1"},
		Pacing:  ssmtest.Unpaced,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	ak, sk := emu.Credentials()
	f := &fixture{emu: emu, secret: sk}
	f.env = append(baseEnv(t), "AWS_ACCESS_KEY_ID="+ak, "AWS_SECRET_ACCESS_KEY="+sk, "AWS_REGION="+emu.Region())
	f.flags = []string{"--target", testTarget, "--endpoint-url", emu.URL()}
	return f
}

// TestRunPsqlWithoutSSHKeyFails: jumpless run without --ssh-key uses the
// agent's own forwarding (AWS-StartPortForwardingSessionToRemoteHost);
// the name resolves on the instance's side.
func TestRunPsqlWithoutSSHKeyFails(t *testing.T) {
	psqlPath(t)
	pg := testenv.PostgresAddr(t)
	_, port, _ := net.SplitHostPort(pg)
	f := directFixture(t)
	r := runJumpless(t, f.env, f.args("run", "--to", "db.internal:"+port, "--env", "pg", "--",
		"psql", "-U", "postgres", "-d", "test", "-tA", "-c", "select 40 + 2, current_database()")...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "42|test" {
		t.Errorf("psql output %q, want 42|test", r.stdout)
	}
	f.waitNoSessions(t)
	if st := f.emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("SessionsStarted = %d, want 1 port session", st.SessionsStarted)
	}
	f.noSecrets(t, r.stdout, r.stderr)
}

func TestForwardWithoutSSHKeyCarriesConnections(t *testing.T) {
	psql := psqlPath(t)
	pg := testenv.PostgresAddr(t)
	_, port, _ := net.SplitHostPort(pg)
	echo := testenv.EchoServer(t)
	f := directFixture(t)
	p, pgLocal := forwardAddr(t, f.env, f.args("forward", "-L", "127.0.0.1:0:db.internal:"+port, "-L", "0:"+echo))
	echoLocal := strings.TrimPrefix(p.line("listening on ", 10*time.Second), "listening on ")
	echoLocal, _, _ = strings.Cut(echoLocal, " → ")
	host, lport, _ := net.SplitHostPort(pgLocal)
	for range 3 {
		out, err := exec.Command(psql, "-h", host, "-p", lport, "-U", "postgres", "-d", "test", "-tA", "-c", "select 6 * 7").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "42" {
			t.Fatalf("psql through %s: %v: %s\njumpless stderr: %s", pgLocal, err, out, p.errOut())
		}
	}
	echoThrough(t, echoLocal, 200_000)
	if code := p.stop(syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0; stderr: %s", code, p.errOut())
	}
	f.waitNoSessions(t)
	if st := f.emu.Stats(); st.SessionsStarted != 2 || st.TargetDials < 4 {
		t.Errorf("emulator: %d sessions, %d target dials; want one port session per destination (2) carrying every connection", st.SessionsStarted, st.TargetDials)
	}
}

func TestCheckDirectModeMisdiagnoses(t *testing.T) {
	my := testenv.MySQLAddr(t)
	f := directFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	r := runJumpless(t, f.env, f.args("check", "--to", my, "--to", closed, "--to", "169.254.169.254:80")...)
	if r.code != 1 {
		t.Fatalf("check exit %d, want 1 (two failing addresses)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{
		"[ OK ] database address " + my + " reachable from the instance: the server answered",
		"[FAIL] database address " + closed + " the instance cannot connect to " + closed,
		"[FAIL] database address 169.254.169.254:80 the SSM agent refuses to forward to 169.254.169.254:80",
		"agent " + ssmtest.DefaultAgentVersion + " (mux",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("check output lacks %q:\n%s", w, r.stdout)
		}
	}
	f.waitNoSessions(t)
}
