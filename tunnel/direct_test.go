package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/portmux"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// directEmulator starts an emulator whose instance reaches 127.0.0.1.
func directEmulator(t *testing.T, cfg ssmtest.Config) *ssmtest.Server {
	t.Helper()
	cfg.Targets = map[string]string{target: "127.0.0.1"}
	srv, err := ssmtest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func directTunnelConfig(srv *ssmtest.Server) tunnel.Config {
	return tunnel.Config{Mode: tunnel.ModeDirect, SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target}}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func echoRoundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	want := make([]byte, n)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(want); errc <- err }()
	got := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ")
	}
}

func TestDirectModeNeedsSSH(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	echo := testenv.EchoServer(t)
	tun := open(t, directTunnelConfig(srv))
	c := dial(t, tun, echo)
	echoRoundTrip(t, c, 256<<10)
	if c.RemoteAddr().String() != echo {
		t.Errorf("RemoteAddr = %v; want %s", c.RemoteAddr(), echo)
	}
	// localhost goes to AWS-StartPortForwardingSession (the instance itself).
	_, port, _ := net.SplitHostPort(echo)
	c2 := dial(t, tun, "localhost:"+port)
	echoRoundTrip(t, c2, 1000)
	if got := len(tun.Stats().SessionIDs); got != 2 {
		t.Errorf("%d sessions; want one per destination (2)", got)
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoSessions(t, srv)
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) || !errors.Is(err, tunnel.ErrClosed) {
		t.Fatalf("Read on a conn of a closed tunnel = %v; want an error matching ErrClosed, never io.EOF", err)
	}
}

func TestDirectCloseWritePretendsHalfClose(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	echo := testenv.EchoServer(t)
	tun := open(t, directTunnelConfig(srv))
	c := dial(t, tun, echo)
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("direct conn has no CloseWrite")
	}
	if err := cw.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, portmux.ErrNoHalfClose) {
		t.Fatalf("CloseWrite = %v; want ErrNoHalfClose (errors.ErrUnsupported)", err)
	}
	// Nothing was sent: the connection still works both ways.
	echoRoundTrip(t, c, 100)
}

func TestDirectClosedPortNotTyped(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	tun := open(t, directTunnelConfig(srv))
	addr := closedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	// The agent never confirms a connect: Ready (what dialer.MySQL uses)
	// and Read report the refusal.
	r := c.(interface{ Ready(context.Context) error })
	err = r.Ready(ctx)
	var ce *link.ConnectError
	if !errors.As(err, &ce) || ce.Addr != addr || !errors.Is(err, link.ErrConnect) {
		t.Fatalf("Ready = %v; want a *link.ConnectError for %s", err, addr)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, link.ErrConnect) {
		t.Fatalf("Read = %v; want link.ErrConnect", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, link.ErrConnect) {
		t.Fatalf("Write after a refused connect = %v; want link.ErrConnect", err)
	}
	c.Close()
	waitNoSessions(t, srv)
	if st := tun.Stats(); st.OpenConns != 0 || len(st.SessionIDs) != 0 {
		t.Fatalf("after a refused connect: %+v; want no session, no conn", st)
	}
	// The tunnel stays usable.
	echo := testenv.EchoServer(t)
	echoRoundTrip(t, dial(t, tun, echo), 10)
	if tun.Err() != nil {
		t.Fatalf("tunnel down after a refused connect: %v", tun.Err())
	}
}

func TestDirectForbiddenAddressNotTyped(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	tun := open(t, directTunnelConfig(srv))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const addr = "169.254.169.254:80"
	c, err := tun.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	var fe *link.ForbiddenError
	if !errors.As(err, &fe) || fe.Addr != addr || !strings.Contains(fe.Reason, "is forbidden") {
		t.Fatalf("err = %v; want a *link.ForbiddenError for %s with the agent's words", err, addr)
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("forbidden reported as EOF: %v", err)
	}
	waitNoSessions(t, srv)
	waitFor(t, "the forbidden destination's session to leave Stats", func() bool { return len(tun.Stats().SessionIDs) == 0 })
	if tun.Err() != nil {
		t.Fatalf("tunnel down after a forbidden address: %v", tun.Err())
	}
}

func TestDirectBasicModeOldAgentBroken(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{AgentVersion: "3.0.196.0"})
	echo := testenv.EchoServer(t)
	tun := open(t, directTunnelConfig(srv))
	c1 := dial(t, tun, echo)
	echoRoundTrip(t, c1, 64<<10)
	c2 := dial(t, tun, echo)
	echoRoundTrip(t, c2, 1000)
	st := srv.Stats()
	if st.SessionsOpen != 2 || st.TargetDials != 2 {
		t.Fatalf("emulator: %d sessions open, %d target dials; want one session per connection (2, 2)", st.SessionsOpen, st.TargetDials)
	}
	if _, ok := c1.(interface{ Ready(context.Context) error }); !ok {
		t.Fatal("basic-mode conn has no Ready")
	}
	c1.Close()
	waitFor(t, "the closed connection's session to end", func() bool { return srv.Stats().SessionsOpen == 1 })
	if got := tun.Stats(); got.OpenConns != 1 || got.TotalConns != 2 {
		t.Fatalf("Stats = %+v; want 1 open of 2", got)
	}
	// A refused connect in basic mode: the agent ends the session with
	// "Unable to connect to specified port".
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c3, err := tun.DialContext(ctx, "tcp", closedPort(t))
	if err == nil {
		_, err = c3.Read(make([]byte, 1))
		c3.Close()
	}
	if !errors.Is(err, link.ErrConnect) {
		t.Fatalf("dial of a closed port in basic mode: %v; want link.ErrConnect", err)
	}
	tun.Close()
	waitNoSessions(t, srv)
}

func TestDirectSessionKilledReadsEOF(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	echo := testenv.EchoServer(t)
	tun := open(t, directTunnelConfig(srv))
	c := dial(t, tun, echo)
	echoRoundTrip(t, c, 10)
	ids := tun.Stats().SessionIDs
	if len(ids) != 1 {
		t.Fatalf("sessions %v", ids)
	}
	srv.CloseChannel(ids[0], "")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("Read on a conn whose session ended = %v; want an error matching ErrTunnelDown, not io.EOF", err)
	}
	select {
	case <-tun.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel not down after its session ended")
	}
	if !errors.Is(tun.Err(), tunnel.ErrTunnelDown) {
		t.Fatalf("Err = %v", tun.Err())
	}
}

func TestDirectModeAcceptsSSHConfig(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := directEmulator(t, ssmtest.Config{})
	cfg := ssmConfig(srv, sshd)
	cfg.Mode = tunnel.ModeDirect
	_, err := tunnel.Open(context.Background(), cfg)
	var ce *tunnel.ConfigError
	if !errors.As(err, &ce) || ce.Field != "SSH" {
		t.Fatalf("Open(ModeDirect with SSH) = %v; want a ConfigError for SSH", err)
	}
	if n := srv.Stats().SessionsStarted; n != 0 {
		t.Fatalf("%d sessions started for a bad config", n)
	}
}

// TestEmulatorKinderThanAgentWhenTargetStopsReading guards the emulator's
// fidelity to the agent's smux hazard (reference §8.4): when one target
// stops reading, the agent's smux server buffers up to 4 MiB, then stops
// reading its socket, which blocks its websocket reader: every other
// stream of the session stalls, including new ones, until the target reads
// again. No client can prevent this in smux v1 (there is no per-stream
// window); spreading connections over Sessions limits the damage.
func TestEmulatorKinderThanAgentWhenTargetStopsReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var releaseOnce, first sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	var wg sync.WaitGroup
	t.Cleanup(func() { free(); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sink := false
			first.Do(func() { sink = true })
			wg.Go(func() {
				defer c.Close()
				if sink {
					<-release // a target that stops reading
					io.Copy(io.Discard, c)
					return
				}
				io.Copy(c, c)
			})
		}
	})
	srv := directEmulator(t, ssmtest.Config{})
	tun := open(t, directTunnelConfig(srv))
	addr := ln.Addr().String()
	a := dial(t, tun, addr)
	const upload = 32 << 20
	werr := make(chan error, 1)
	go func() { _, err := a.Write(make([]byte, upload)); werr <- err }()
	// Wait until the agent stops delivering to the sink.
	var last int64 = -1
	for stable := 0; stable < 10; {
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-werr:
			t.Fatalf("the whole upload was accepted (%v) although the target does not read", err)
		default:
		}
		if n := srv.Stats().BytesToTarget; n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	if last >= upload {
		t.Fatalf("the agent delivered all %d bytes to a target that does not read", last)
	}
	// A new stream's SYN queues behind the stalled upload (one byte stream
	// per session), and the agent reads nothing more: the dial or the
	// round trip must stall.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	b, err := tun.DialContext(ctx, "tcp", addr)
	cancel()
	if err == nil {
		b.Write([]byte("ping"))
		b.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = b.Read(make([]byte, 4))
		b.Close()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("second stream answered while the agent's smux buffer is full (%v): the emulator is kinder than the agent", err)
		}
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial during the stall: %v", err)
	}
	free()
	c := dial(t, tun, addr)
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("after the target read again: %q %v", got, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("upload: %v", err)
	}
}

// TestDirectBasicModeTargetCloseReadsEOF documents what the caller sees in
// basic mode (agents ≤ 3.0.196.0, reference §8.3): the agent does not
// signal the target's close, so Read does not return io.EOF (which would
// claim a clean end); it blocks until a deadline, or until the session
// ends, which is then an error.
func TestDirectBasicModeTargetCloseReadsEOF(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("bye"))
			c.Close()
		}
	})
	srv := directEmulator(t, ssmtest.Config{AgentVersion: "3.0.196.0"})
	tun := open(t, directTunnelConfig(srv))
	c := dial(t, tun, ln.Addr().String())
	got := make([]byte, 3)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "bye" {
		t.Fatalf("read %q %v", got, err)
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after the target closed = %v; want the deadline (basic mode does not signal the close)", err)
	}
	srv.CloseChannel(tun.Stats().SessionIDs[0], "")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after the session ended = %v; want the session's error, not io.EOF", err)
	}
}
