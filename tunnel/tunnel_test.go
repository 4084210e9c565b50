package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// directConfig is a tunnel config that reaches sshd over plain TCP
// (DialBastion), bypassing SSM.
func directConfig(sshd *testenv.SSHD) tunnel.Config {
	return tunnel.Config{
		DialBastion: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", sshd.Addr)
		},
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			HostKey:        sshd.HostKey,
		},
	}
}

func open(t *testing.T, cfg tunnel.Config) *tunnel.Tunnel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

func dial(t *testing.T, tun *tunnel.Tunnel, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialContextCorruptsNoBytes(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tun := open(t, directConfig(sshd))
	c := dial(t, tun, echo)

	want := make([]byte, 1<<20)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(want); errc <- err }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ from sent bytes")
	}
	st := tun.Stats()
	if st.BytesSent != int64(len(want)) || st.BytesReceived != int64(len(want)) {
		t.Errorf("Stats bytes = %d sent, %d received; want %d each", st.BytesSent, st.BytesReceived, len(want))
	}
	if st.OpenConns != 1 || st.TotalConns != 1 || len(st.SessionIDs) != 1 {
		t.Errorf("Stats = %+v; want 1 open, 1 total, 1 session", st)
	}
}

func TestRemoteAddrIsNotTheDialedAddress(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tun := open(t, directConfig(sshd))
	c := dial(t, tun, echo)
	if c.RemoteAddr().Network() != "tcp" || c.RemoteAddr().String() != echo {
		t.Fatalf("RemoteAddr = %s %q; want tcp %q", c.RemoteAddr().Network(), c.RemoteAddr(), echo)
	}
	// Dialing RemoteAddr again (what pgx does for cancel requests) must
	// reach the same server through the tunnel.
	c2 := dial(t, tun, c.RemoteAddr().String())
	if _, err := c2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c2, b); err != nil || b[0] != 'x' {
		t.Fatalf("echo via RemoteAddr: %q %v", b, err)
	}
}

func TestReadDeadlineDoesNotUnblockRead(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tun := open(t, directConfig(sshd))
	c := dial(t, tun, echo)

	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after deadline: %v; want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Read returned after %v", d)
	}
	// Deadline set while a Read is already blocked (pgx's cancel path).
	c.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.SetDeadline(time.Now())
	}()
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Read after SetDeadline(now): %v", err)
	}
	// A read timeout is not fatal: clear it and the connection works.
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("after timeout: %q %v", b, err)
	}
}

func TestWriteDeadlineDoesNotUnblockStalledWrite(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	// A server that accepts and never reads: the SSH window fills up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	tun := open(t, directConfig(sshd))
	c := dial(t, tun, ln.Addr().String())
	defer func() {
		select {
		case sc := <-accepted:
			sc.Close()
		case <-time.After(5 * time.Second):
		}
	}()
	c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 1<<20)
	start := time.Now()
	var werr error
	for i := 0; i < 256 && werr == nil; i++ { // 256 MiB: far beyond any buffering
		_, werr = c.Write(buf)
	}
	if !errors.Is(werr, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %v; want deadline exceeded", werr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stalled Write returned after %v", d)
	}
}

func TestCloseLeavesConnectionsOpen(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tun, err := tunnel.Open(context.Background(), directConfig(sshd))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tun.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); readErr <- err }()

	start := time.Now()
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("blocked Read returned nil error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Read still blocked after Close")
	}
	if _, err := tun.DialContext(context.Background(), "tcp", echo); !errors.Is(err, tunnel.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("DialContext after Close = %v; want ErrClosed", err)
	}
	if !errors.Is(tun.Err(), tunnel.ErrClosed) {
		t.Fatalf("Err after Close = %v; want ErrClosed", tun.Err())
	}
	waitFor(t, "0 open conns after Close", func() bool { return tun.Stats().OpenConns == 0 })
}

func TestDoneNotClosedWhenBastionDies(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	cfg := directConfig(sshd)
	cfg.SSH.KeepaliveInterval = 200 * time.Millisecond
	cfg.SSH.KeepaliveTimeout = time.Second
	tun := open(t, cfg)
	if tun.Err() != nil {
		t.Fatalf("Err on a live tunnel = %v", tun.Err())
	}
	sshd.Stop()
	select {
	case <-tun.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after sshd died")
	}
	if !errors.Is(tun.Err(), tunnel.ErrTunnelDown) {
		t.Fatalf("Err = %v; want ErrTunnelDown", tun.Err())
	}
	if _, err := tun.DialContext(context.Background(), "tcp", "127.0.0.1:1"); !errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("DialContext on a dead tunnel = %v; want ErrTunnelDown", err)
	}
}

func TestSessionsNotSpreadLeastLoaded(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	cfg := directConfig(sshd)
	cfg.Sessions = 3
	tun := open(t, cfg)
	var conns []net.Conn
	for range 6 {
		conns = append(conns, dial(t, tun, echo))
	}
	st := tun.Stats()
	if len(st.SessionIDs) != 3 || len(st.SessionConns) != 3 {
		t.Fatalf("Stats = %+v; want 3 sessions", st)
	}
	for i, n := range st.SessionConns {
		if n != 2 {
			t.Fatalf("session %d has %d conns; want 2 each (%v)", i, n, st.SessionConns)
		}
	}
	conns[0].Close()
	conns[3].Close()
	waitFor(t, "4 open conns after closing 2 of 6", func() bool {
		st := tun.Stats()
		return st.OpenConns == 4 && st.TotalConns == 6
	})
	// The next two go to the emptied sessions.
	dial(t, tun, echo)
	dial(t, tun, echo)
	for i, n := range tun.Stats().SessionConns {
		if n != 2 {
			t.Fatalf("session %d has %d conns; want 2 each (%v)", i, n, tun.Stats().SessionConns)
		}
	}
}

func TestConcurrentDialsOnOneTunnelFail(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tun := open(t, directConfig(sshd))
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := tun.DialContext(context.Background(), "tcp", echo)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- errors.New("bytes mixed up between connections")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "all 64 conns closed", func() bool {
		st := tun.Stats()
		return st.TotalConns == n && st.OpenConns == 0
	})
}

func TestDialContextIgnoresCancelledContext(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	tun := open(t, directConfig(sshd))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tun.DialContext(ctx, "tcp", testenv.EchoServer(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("DialContext with cancelled ctx = %v; want context.Canceled", err)
	}
	if st := tun.Stats(); st.OpenConns != 0 || st.SessionConns[0] != 0 {
		t.Fatalf("Stats after failed dial = %+v", st)
	}
}

func TestOpenAcceptsBadConfig(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	base := func() tunnel.Config {
		return tunnel.Config{
			SSM: ssm.Config{Target: "i-0123456789abcdef0", API: noAPI{}},
			SSH: sshx.Config{PrivateKeyFile: sshd.ClientKeyPath, HostKey: sshd.HostKey},
		}
	}
	missingKey := filepath.Join(t.TempDir(), "no-such-key")
	cases := []struct {
		name  string
		mod   func(*tunnel.Config)
		field string
		is    []error
	}{
		{"target not an instance id", func(c *tunnel.Config) { c.SSM.Target = "db.internal" }, "SSM.Target", []error{tunnel.ErrInvalidConfig, ssm.ErrInvalidConfig}},
		{"target uppercase hex", func(c *tunnel.Config) { c.SSM.Target = "i-0123456789ABCDEF0" }, "SSM.Target", []error{tunnel.ErrInvalidConfig, ssm.ErrInvalidConfig}},
		{"target empty", func(c *tunnel.Config) { c.SSM.Target = "" }, "SSM.Target", []error{tunnel.ErrInvalidConfig, ssm.ErrInvalidConfig}},
		{"no region", func(c *tunnel.Config) { c.SSM.API = nil }, "SSM.AWS.Region", []error{tunnel.ErrInvalidConfig, ssm.ErrInvalidConfig}},
		{"negative sessions", func(c *tunnel.Config) { c.Sessions = -2 /* -1 is AutoSessions */ }, "Sessions", []error{tunnel.ErrInvalidConfig}},
		{"no credentials", func(c *tunnel.Config) { c.SSH.PrivateKeyFile = "" }, "SSH.PrivateKeyFile", []error{tunnel.ErrInvalidConfig}},
		{"no host key source", func(c *tunnel.Config) { c.SSH.HostKey = nil }, "SSH.KnownHostsFile", []error{tunnel.ErrInvalidConfig}},
		{"key unreadable", func(c *tunnel.Config) { c.SSH.PrivateKeyFile = missingKey }, "SSH.PrivateKeyFile", []error{tunnel.ErrInvalidConfig}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			tun, err := tunnel.Open(context.Background(), cfg)
			if err == nil {
				tun.Close()
				t.Fatal("Open accepted the config")
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %q does not match %v", err, want)
				}
			}
			var ce *tunnel.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Errorf("error %q is not a *tunnel.ConfigError naming field %s", err, tc.field)
			}
		})
	}
}

// noAPI is an ssm.API that fails every call: a config test that reaches
// the network is a bug.
type noAPI struct{ ssm.API }

// waitFor polls cond for up to 5s (the SSH layer updates its counters when
// a channel's close has been acknowledged, just after Close returns).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
