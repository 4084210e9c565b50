package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// freezer is a TCP proxy to addr whose traffic can be frozen (nothing
// forwarded, nothing closed), like a network path that silently died.
type freezer struct {
	ln     net.Listener
	frozen chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, addr string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, frozen: make(chan struct{})}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			f.wg.Go(func() { f.pipe(u, c) })
			f.wg.Go(func() { f.pipe(c, u) })
		}
	})
	t.Cleanup(func() {
		f.freeze()
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-f.frozen:
			return // drop everything from now on, close nothing
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }

func TestKeepaliveFailureGoesUnnoticed(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	proxy := newFreezer(t, sshd.Addr)
	cfg := directConfig(sshd)
	cfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", proxy.ln.Addr().String())
	}
	cfg.SSH.KeepaliveInterval = 100 * time.Millisecond
	cfg.SSH.KeepaliveTimeout = 500 * time.Millisecond
	tun := open(t, cfg)
	proxy.freeze()
	select {
	case <-tun.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the path froze (keepalive 100ms, timeout 500ms)")
	}
	if err := tun.Err(); !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, sshx.ErrKeepaliveTimeout) {
		t.Fatalf("Err = %v; want ErrTunnelDown wrapping sshx.ErrKeepaliveTimeout", err)
	}
}

// stuckConn is a bastion connection whose Close blocks until released.
type stuckConn struct {
	net.Conn
	release chan struct{}
}

func (c *stuckConn) Close() error {
	<-c.release
	return c.Conn.Close()
}

func TestCloseHangsOnStuckSession(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	release := make(chan struct{})
	cfg := directConfig(sshd)
	cfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", sshd.Addr)
		if err != nil {
			return nil, err
		}
		return &stuckConn{Conn: c, release: release}, nil
	}
	cfg.CloseTimeout = 300 * time.Millisecond
	tun, err := tunnel.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = tun.Close()
	elapsed := time.Since(start)
	close(release) // let the stuck close finish so that nothing leaks
	if err == nil {
		t.Fatal("Close of a stuck session reported no error")
	}
	if elapsed > 2*time.Second {
		t.Fatalf("Close took %v with CloseTimeout 300ms", elapsed)
	}
	select {
	case <-tun.Done():
	default:
		t.Fatal("Done not closed after Close returned")
	}
	// The stuck close now finishes in the background; goleak (TestMain)
	// checks that its goroutine ends.
}

func TestWebsocketDropKillsTunnel(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	tun := open(t, ssmConfig(srv, sshd))
	c := dial(t, tun, echo)
	roundTrip := func(msg string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, b, err)
		}
	}
	roundTrip("before")
	if n := srv.KillWebsocket(""); n != 1 {
		t.Fatalf("KillWebsocket killed %d; want 1", n)
	}
	roundTrip("after the websocket was killed")
	if err := tun.Err(); err != nil {
		t.Fatalf("tunnel failed on a websocket drop the session survives: %v", err)
	}
}

func TestOpenFailureLeavesOtherSessionsOpen(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	cfg.Sessions = 3
	var calls atomic.Int32
	ssmCfg := ssm.Config{AWS: srv.AWSConfig(), Target: target}
	cfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
		if calls.Add(1) == 2 {
			// Fail once the other two sessions exist at the service and
			// their clients know them (their websockets are open).
			for deadline := time.Now().Add(5 * time.Second); srv.Stats().WebsocketsAccepted < 2 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			return nil, errors.New("injected failure of one session")
		}
		return ssm.Dial(ctx, ssmCfg)
	}
	tun, err := tunnel.Open(context.Background(), cfg)
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded although one session failed")
	}
	if !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Open = %v; want the injected failure, not the cancellation it caused", err)
	}
	if srv.Stats().SessionsStarted != 2 {
		t.Fatal("no session was started: the test does not exercise the cleanup")
	}
	waitNoSessions(t, srv)
}

func TestDialContextIgnoresCancelDuringDial(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	proxy := newFreezer(t, sshd.Addr)
	cfg := directConfig(sshd)
	cfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", proxy.ln.Addr().String())
	}
	cfg.SSH.KeepaliveInterval = -1 // the frozen path must not end the tunnel first
	tun := open(t, cfg)
	proxy.freeze() // the channel open request gets no answer
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := tun.DialContext(ctx, "tcp", testenv.EchoServer(t))
	if err == nil {
		c.Close()
		t.Fatal("DialContext succeeded over a frozen path")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DialContext = %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("DialContext returned %v after its 300ms context expired", d)
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
