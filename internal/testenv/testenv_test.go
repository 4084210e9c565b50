package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStartSSHDAcceptsClientKeyAndForwards guards the contract every
// package relies on: the generated client key logs in, the host key matches
// the one returned, known_hosts verifies it, and direct-tcpip works.
func TestStartSSHDAcceptsClientKeyAndForwards(t *testing.T) {
	s := StartSSHD(t)
	if got := ssh.FingerprintSHA256(s.HostKey); got != s.HostKeyFingerprint {
		t.Fatalf("fingerprint %q != %q", s.HostKeyFingerprint, got)
	}
	cb, err := knownhosts.New(s.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback: cb,
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial sshd: %v\nlogs: %s", err, s.Logs())
	}
	defer c.Close()

	echo := EchoServer(t)
	conn, err := c.Dial("tcp", echo)
	if err != nil {
		t.Fatalf("direct-tcpip to echo server: %v", err)
	}
	defer conn.Close()
	msg := []byte("hello through sshd")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q want %q", got, msg)
	}
}

// TestStartSSHDWorksWithOpenSSHClient checks the files StartSSHD writes
// (key, known_hosts) are usable by the real ssh client too.
func TestStartSSHDWorksWithOpenSSHClient(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	s := StartSSHD(t)
	host, port, _ := net.SplitHostPort(s.Addr)
	kh := s.WriteKnownHosts(true, s.Addr)
	out, err := exec.Command("ssh", "-F", "/dev/null", "-p", port, "-i", s.ClientKeyPath,
		"-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-l", s.User, host, "echo", "ok").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("ssh: %v: %s\nsshd logs: %s", err, out, s.Logs())
	}
}

// TestStopKillsConnections guards Stop: after it, the address refuses
// connections and established sessions end.
func TestStopKillsConnections(t *testing.T) {
	s := StartSSHD(t)
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Stop()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session survived Stop")
	}
	if conn, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("sshd still accepting after Stop")
	}
}

// TestAuthorizeKeyAddsLogin guards AuthorizeKey: a new key logs in.
func TestAuthorizeKeyAddsLogin(t *testing.T) {
	s := StartSSHD(t)
	signer, _ := NewEd25519Key(t)
	cfg := &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
	}
	if c, err := ssh.Dial("tcp", s.Addr, cfg); err == nil {
		c.Close()
		t.Fatal("unauthorized key logged in")
	}
	s.AuthorizeKey(signer.PublicKey())
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatalf("authorized key rejected: %v", err)
	}
	c.Close()
}

// TestEchoServerEchoesAndCloses guards EchoServer.
func TestEchoServerEchoesAndCloses(t *testing.T) {
	addr := EchoServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "ping" {
		t.Fatalf("got %q, %v", b, err)
	}
}

// TestDatabasesReachable checks the default (or overridden) database
// addresses accept TCP connections.
func TestDatabasesReachable(t *testing.T) {
	t.Run("mysql", func(t *testing.T) {
		if MySQLAddr(t) == "" || MySQLDSN(t) == "" {
			t.Fatal("empty")
		}
	})
	t.Run("postgres", func(t *testing.T) {
		if PostgresAddr(t) == "" || PostgresDSN(t) == "" {
			t.Fatal("empty")
		}
	})
}

// TestDSNAddrParsing guards the DSN → host:port extraction.
func TestDSNAddrParsing(t *testing.T) {
	for dsn, want := range map[string]string{
		DefaultMySQLDSN:                     "127.0.0.1:3306",
		"u:p@tcp(db.internal:3307)/x?tls=1": "db.internal:3307",
		"u@tcp(10.0.0.5)/x":                 "10.0.0.5:3306",
	} {
		got, err := mysqlAddrFromDSN(dsn)
		if err != nil || got != want {
			t.Errorf("mysql %q: got %q, %v; want %q", dsn, got, err, want)
		}
	}
	if _, err := mysqlAddrFromDSN("u@unix(/tmp/s)/x"); err == nil {
		t.Error("unix DSN accepted")
	}
	for dsn, want := range map[string]string{
		DefaultPostgresDSN:               "127.0.0.1:5432",
		"postgresql://u@db:6543/x":       "db:6543",
		"host=10.1.2.3 port=5433 user=x": "10.1.2.3:5433",
		"user=x dbname=test":             "127.0.0.1:5432",
		"postgres://u@[::1]:5432/test":   "[::1]:5432",
	} {
		got, err := postgresAddrFromDSN(dsn)
		if err != nil || got != want {
			t.Errorf("pg %q: got %q, %v; want %q", dsn, got, err, want)
		}
	}
}

// TestUnavailableFailsInCI guards the rule that CI never silently skips.
func TestUnavailableFailsInCI(t *testing.T) {
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		ft := &fakeTB{TB: t}
		func() {
			defer func() { recover() }()
			unavailable(ft, "thing missing")
		}()
		if ci == "true" && (!ft.fatal || ft.skip) {
			t.Errorf("CI=true: fatal=%v skip=%v", ft.fatal, ft.skip)
		}
		if ci == "" && (ft.fatal || !ft.skip) {
			t.Errorf("CI unset: fatal=%v skip=%v", ft.fatal, ft.skip)
		}
		if !strings.Contains(ft.msg, "scripts/test-env.sh") {
			t.Errorf("message lacks hint: %q", ft.msg)
		}
	}

}

type fakeTB struct {
	testing.TB
	fatal, skip bool
	msg         string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = true
	f.msg = sprintf(format, args...)
	panic("fatal")
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = true
	f.msg = sprintf(format, args...)
	panic("skip")
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
