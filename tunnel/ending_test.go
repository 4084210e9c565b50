package tunnel_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// verifyNoLeaks checks, after every other cleanup of the test, that the
// test left no goroutine behind.
func verifyNoLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// startDownload serves an endless byte stream to every connection.
func startDownload(t *testing.T) string {
	return testenv.TCPServer(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// hangingAddr returns an address whose TCP connect never completes: a
// listener with a full accept queue that never accepts (Linux drops the
// SYNs), so that sshd's connect for a direct-tcpip channel, and with it
// the channel open, stays in flight.
func hangingAddr(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("raw socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue until a connect no longer completes.
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the accept queue of a listener: cannot hold a dial in flight on this system")
	return ""
}

// ending is one way a tunnel dies under a running job.
type ending struct {
	name string
	// end makes it happen.
	end func(t *testing.T, srv *ssmtest.Server, sshd *testenv.SSHD, sessionID string)
	// cause must be matched (errors.Is) by every error the job sees.
	cause error
	// bound is how soon after end Done must be closed and every waiter
	// must have its error.
	bound time.Duration
	// resumeTimeout configures ssm.Config.ResumeTimeout (0: default).
	resumeTimeout time.Duration
}

// theFiveEndings are the service-side endings of the loud-failure issue.
var theFiveEndings = []ending{
	{
		name: "TerminateSessionBySomeoneElse",
		end: func(t *testing.T, srv *ssmtest.Server, _ *testenv.SSHD, id string) {
			api := ssmsdk.NewFromConfig(srv.AWSConfig())
			if _, err := api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: aws.String(id)}); err != nil {
				t.Fatalf("TerminateSession: %v", err)
			}
		},
		cause: ssm.ErrSessionTerminated,
		bound: time.Second,
	},
	{
		name: "ChannelClosedByTheService",
		end: func(_ *testing.T, srv *ssmtest.Server, _ *testenv.SSHD, id string) {
			srv.CloseChannel(id, "Session is being terminated by the operator")
		},
		cause: ssm.ErrSessionTerminated,
		bound: time.Second,
	},
	{
		name: "SSHDKilledOnTheInstance",
		end: func(_ *testing.T, _ *ssmtest.Server, sshd *testenv.SSHD, _ string) {
			sshd.Stop()
		},
		cause: ssm.ErrSessionTerminated,
		bound: time.Second,
	},
	{
		name: "ServiceVanished",
		end: func(_ *testing.T, srv *ssmtest.Server, _ *testenv.SSHD, _ string) {
			srv.Close()
		},
		cause:         ssm.ErrReconnect,
		resumeTimeout: 2 * time.Second,
		bound:         10*time.Second + 2*time.Second,
	},
	{
		name: "DeadNetworkPath",
		end: func(_ *testing.T, srv *ssmtest.Server, _ *testenv.SSHD, _ string) {
			srv.Blackhole()
		},
		cause:         ssm.ErrReconnect,
		resumeTimeout: 2 * time.Second,
		bound:         10*time.Second + 2*time.Second,
	},
}

// TestTunnelEndingsAreLoudFastAndNamed guards the five service-side
// endings: a connection mid-download and an idle connection get a non-EOF
// error matching ErrTunnelDown and the specific cause, a DialContext in
// flight fails the same way, Done is closed and Err names the cause within
// the bound, new dials fail at once, and nothing is left behind.
func TestTunnelEndingsAreLoudFastAndNamed(t *testing.T) {
	for _, e := range theFiveEndings {
		t.Run(e.name, func(t *testing.T) {
			verifyNoLeaks(t)
			sshd := testenv.StartSSHD(t)
			srv := newEmulator(t, sshd.Addr)
			download := startDownload(t)
			echo := testenv.EchoServer(t)
			hanging := hangingAddr(t)
			cfg := ssmConfig(srv, sshd)
			cfg.SSM.ResumeTimeout = e.resumeTimeout
			cfg.SSM.CloseTimeout = 2 * time.Second
			tun := open(t, cfg)
			defer tun.Close()

			type result struct {
				n   int64
				err error
				at  time.Time
			}
			dl := dial(t, tun, download)
			dlRes := make(chan result, 1)
			go func() {
				n, err := io.Copy(io.Discard, dl)
				if err == nil {
					err = io.EOF
				}
				dlRes <- result{n, err, time.Now()}
			}()
			idle := dial(t, tun, echo)
			if _, err := idle.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(idle, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			idleRes := make(chan result, 1)
			go func() {
				_, err := idle.Read(make([]byte, 1))
				idleRes <- result{err: err, at: time.Now()}
			}()
			dialRes := make(chan result, 1)
			go func() {
				c, err := tun.DialContext(context.Background(), "tcp", hanging)
				if c != nil {
					c.Close()
				}
				dialRes <- result{err: err, at: time.Now()}
			}()
			// The download is flowing and the dial is in flight.
			deadline := time.Now().Add(10 * time.Second)
			for tun.Stats().BytesReceived < 256<<10 {
				if time.Now().After(deadline) {
					t.Fatalf("download not flowing: %+v", tun.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			select {
			case r := <-dialRes:
				t.Fatalf("dial to a hanging address returned before the ending: %v", r.err)
			default:
			}

			id := tun.Stats().SessionIDs[0]
			start := time.Now()
			e.end(t, srv, sshd, id)

			check := func(what string, err error, at time.Time) {
				t.Helper()
				if err == nil || err == io.EOF || errors.Is(err, io.EOF) {
					t.Errorf("%s: %v; want a loud error, never io.EOF", what, err)
					return
				}
				if !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, e.cause) {
					t.Errorf("%s: %v; want ErrTunnelDown wrapping %v", what, err, e.cause)
				}
				if errors.Is(err, net.ErrClosed) {
					t.Errorf("%s: %v matches net.ErrClosed, as if the caller had closed the tunnel", what, err)
				}
				if d := at.Sub(start); d > e.bound {
					t.Errorf("%s: took %v, want ≤ %v", what, d.Round(time.Millisecond), e.bound)
				}
			}
			select {
			case <-tun.Done():
			case <-time.After(e.bound + 30*time.Second):
				t.Fatalf("Done not closed %v after the ending", e.bound+30*time.Second)
			}
			check("Err", tun.Err(), time.Now())
			r := <-dlRes
			if r.n < 256<<10 {
				t.Errorf("download read only %d bytes", r.n)
			}
			check("download Read", r.err, r.at)
			r = <-idleRes
			check("idle Read", r.err, r.at)
			r = <-dialRes
			check("dial in flight", r.err, r.at)
			_, err := tun.DialContext(context.Background(), "tcp", echo)
			check("new dial", err, time.Now())
			if _, err := idle.Write([]byte("x")); err == nil {
				t.Error("Write after the ending succeeded")
			} else {
				check("idle Write", err, time.Now())
			}
			t.Logf("Err = %v", tun.Err())
			dl.Close()
			idle.Close()
			tun.Close()
		})
	}
}

// TestTunnelKeepaliveTimeoutIsNamed guards the SSH keepalive ending over
// the emulator: a silent path with SSM liveness off is noticed by SSH, and
// Err and conns name sshx.ErrKeepaliveTimeout, not "closed".
func TestTunnelKeepaliveTimeoutIsNamed(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	cfg := ssmConfig(srv, sshd)
	cfg.SSM.PingInterval = -1 // only SSH can notice
	cfg.SSM.CloseTimeout = time.Second
	cfg.SSH.KeepaliveInterval = 200 * time.Millisecond
	cfg.SSH.KeepaliveTimeout = time.Second
	tun := open(t, cfg)
	defer tun.Close()
	idle := dial(t, tun, echo)
	defer idle.Close()
	srv.StallWebsocket("")
	idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := idle.Read(make([]byte, 1))
	if err == io.EOF || !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, sshx.ErrKeepaliveTimeout) {
		t.Fatalf("idle Read: %v; want ErrTunnelDown wrapping sshx.ErrKeepaliveTimeout", err)
	}
	<-tun.Done()
	if err := tun.Err(); !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, sshx.ErrKeepaliveTimeout) || errors.Is(err, net.ErrClosed) {
		t.Fatalf("Err = %v; want ErrTunnelDown wrapping sshx.ErrKeepaliveTimeout", err)
	}
}

// TestTunnelCloseByCallerIsNetErrClosed guards the caller's own Close:
// conns and dials report net.ErrClosed (tunnel.ErrClosed), never io.EOF.
func TestTunnelCloseByCallerIsNetErrClosed(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	hanging := hangingAddr(t)
	tun := open(t, ssmConfig(srv, sshd))
	idle := dial(t, tun, echo)
	defer idle.Close()
	idleRes := make(chan error, 1)
	go func() { _, err := idle.Read(make([]byte, 1)); idleRes <- err }()
	dialRes := make(chan error, 1)
	go func() {
		c, err := tun.DialContext(context.Background(), "tcp", hanging)
		if c != nil {
			c.Close()
		}
		dialRes <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{"idle Read": <-idleRes, "dial in flight": <-dialRes, "Err": tun.Err()} {
		if err == io.EOF || !errors.Is(err, tunnel.ErrClosed) || !errors.Is(err, net.ErrClosed) || errors.Is(err, tunnel.ErrTunnelDown) {
			t.Errorf("%s: %v; want tunnel.ErrClosed (net.ErrClosed)", what, err)
		}
	}
}

// TestTunnelFarEndCloseReadsEverythingThenEOF guards the one meaning of
// io.EOF through the full stack: the server closed after sending.
func TestTunnelFarEndCloseReadsEverythingThenEOF(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	const size = 2 << 20
	src := testenv.TCPServer(t, func(c net.Conn) {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i * 13)
		}
		c.Write(buf)
		c.Close()
	})
	tun := open(t, ssmConfig(srv, sshd))
	defer tun.Close()
	c := dial(t, tun, src)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != size {
		t.Fatalf("ReadAll: %d bytes, %v; want %d bytes and io.EOF", len(got), err, size)
	}
	for i := range got {
		if got[i] != byte(i*13) {
			t.Fatalf("byte %d differs", i)
		}
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end: %v, want io.EOF", err)
	}
	if tun.Err() != nil {
		t.Fatalf("tunnel down after a normal close: %v", tun.Err())
	}
}

// TestDialBadAddressIsTyped guards DialContext's input checks: a typed
// error before anything is sent.
func TestDialBadAddressIsTyped(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	tun := open(t, directConfig(sshd))
	for _, tc := range []struct{ network, addr string }{
		{"udp", "db.internal:5432"},
		{"tcp", "db.internal"},
		{"tcp", "db.internal:"},
		{"tcp", ":5432"},
		{"tcp", "db.internal:0"},
		{"tcp", "db.internal:65536"},
		{"tcp", "db.internal:-1"},
		{"tcp", "db.internal:nosuchservice"},
	} {
		_, err := tun.DialContext(context.Background(), tc.network, tc.addr)
		var ae *tunnel.AddrError
		if !errors.Is(err, tunnel.ErrBadAddress) || !errors.As(err, &ae) || ae.Addr != tc.addr {
			t.Errorf("DialContext(%q, %q) = %v; want *tunnel.AddrError", tc.network, tc.addr, err)
		}
	}
	if n := tun.Stats().TotalConns; n != 0 {
		t.Errorf("%d connections opened", n)
	}
}

// TestDownloadSurvivesThreeLossyKillsWithDefaults guards resume against the
// real agent's slow repair: a 64 MiB download through three lossy websocket
// kills, with default client settings, completes sha256-equal and the
// tunnel never goes down.
//
// The agent repairs lost messages only by head-of-line retransmission, one
// per 100 ms tick at best (reference §6.5). Where the losses fall is placed
// rather than left to timing: a kill mid-stream loses whatever is in the
// socket buffers, hundreds to thousands of frames, and the split between
// agent data (which stalls the stream) and acknowledgements (which do not)
// decided whether a kill cost seconds or minutes. Each kill here:
//   - (first kill only) loses loss1 acknowledgements of data the client
//     received: the path to the agent died first. The agent resends those
//     frames, in order, before any later one, so for loss1 × 100 ms the
//     client receives nothing but climbing duplicates while every SSH reply
//     waits behind the hole below; loss1 is sized from the keepalive, so a
//     keepalive is deferred on duplicates alone (sshx.ProgressReporter,
//     ssm.Session.LastProgress).
//   - loses holeData agent data frames, then, once the stream stalled behind
//     them (the SSH window spent) and the socket is quiet, the websocket is
//     killed (the dying socket loses what still crosses it).
//
// Assumption (stated, not hidden): the agent's RTO is pinned at 10 ms, the
// floor of its estimate (reference §6.5), which an idle real agent on a
// fast path reaches: it then repairs one message per tick. A loaded real
// agent's RTO climbs towards its 1 s cap and it repairs up to 11 times
// slower (this test took 4 to 25 minutes with the estimate); the longest
// gap between repairs (1.1 s) stays far below the keepalive timeout (30 s),
// so the outcome does not depend on it, only the duration.
func TestDownloadSurvivesThreeLossyKillsWithDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute and a half: one repair of a minute")
	}
	verifyNoLeaks(t)
	const (
		size     = 64 << 20
		kills    = 3
		rto      = 10 * time.Millisecond  // the floor of the agent's estimate (G)
		tick     = 100 * time.Millisecond // the agent's resender period
		holeData = 20                     // agent data frames lost at each kill
	)
	// Acknowledgements lost before the first kill: repairing the frames
	// behind them (one per tick at best) outlasts a keepalive sent at the
	// start of the stall (interval + timeout), with a quarter to spare.
	loss1 := int((sshx.DefaultKeepaliveInterval+sshx.DefaultKeepaliveTimeout)/tick)*5/4 + 1
	sshd := testenv.StartSSHD(t)
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr}, AgentRTO: rto})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	want := make(chan [32]byte, 1)
	src := testenv.TCPServer(t, func(c net.Conn) {
		h := sha256.New()
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(buf) {
			for i := 0; i < len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
			}
			h.Write(buf)
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		want <- [32]byte(h.Sum(nil))
		c.Close()
	})
	logs := &testenv.SyncBuffer{}
	cfg := ssmConfig(srv, sshd)
	cfg.SSH.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tun := open(t, cfg)
	defer tun.Close()
	c := dial(t, tun, src)
	defer c.Close()

	const deferred = "keepalive reply delayed" // sshx's debug log of a keepalive timeout deferred by progress
	start := time.Now()
	var heldAt []int // deferrals logged at each kill (owned by the killer, then the test)
	var killed atomic.Int32
	// The killer places the losses and kills; the test's reader keeps
	// reading (and acknowledging) meanwhile.
	trigger := make(chan int64, kills)
	stop := make(chan struct{})
	killerDone := make(chan struct{})
	defer func() {
		close(stop)
		<-killerDone
	}()
	// poll reports whether cond held before the test ended (10 minutes at
	// most: a hang bound).
	poll := func(cond func() bool) bool {
		for end := time.Now().Add(10 * time.Minute); !cond(); {
			select {
			case <-stop:
				return false
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(end) {
				return false
			}
		}
		return true
	}
	go func() {
		defer close(killerDone)
		dropped := func(n int64) func() bool {
			return func() bool { return srv.Stats().FramesDropped >= n }
		}
		for {
			var at int64
			select {
			case at = <-trigger:
			case <-stop:
				return
			}
			base := srv.Stats().FramesDropped
			if killed.Load() == 0 {
				base += int64(loss1)
				srv.SetFaults(ssmtest.ToAgent, ssmtest.Faults{Match: ssmtest.FrameInfo.IsAck, DropNth: seq1(loss1)})
				if !poll(dropped(base)) {
					return
				}
			}
			srv.SetFaults(ssmtest.ToClient, ssmtest.Faults{Match: ssmtest.FrameInfo.IsStreamData, DropNth: seq1(holeData)})
			srv.SetFaults(ssmtest.ToAgent, ssmtest.Faults{})
			// Wait for the hole, then for the agent to stop sending new
			// messages (the SSH window is spent while the stream waits
			// behind the hole): the socket holds next to nothing when it
			// dies, so what is lost is what was placed.
			if !poll(dropped(base + holeData)) {
				return
			}
			sent, quiet := srv.Stats().AgentMessagesSent, 0
			if !poll(func() bool {
				time.Sleep(100 * time.Millisecond)
				if now := srv.Stats().AgentMessagesSent; now != sent {
					sent, quiet = now, 0
				} else {
					quiet++
				}
				return quiet >= 3
			}) {
				return
			}
			heldAt = append(heldAt, strings.Count(logs.String(), deferred))
			if srv.KillWebsocket("") != 1 {
				t.Errorf("KillWebsocket found no websocket")
				return
			}
			killed.Add(1)
			st := srv.Stats()
			t.Logf("%v: websocket killed (triggered at %d MiB; %d frames dropped, %d lost in the socket so far)",
				time.Since(start).Round(time.Millisecond), at>>20, st.FramesDropped, st.FramesLostInSocket)
		}
	}()

	h := sha256.New()
	buf := make([]byte, 64<<10)
	var got int64
	triggered := 0
	last := start
	var longest time.Duration
	// A hang bound only: the first repair takes loss1 × 100 ms, the others
	// a few seconds; a loaded host stretches them.
	c.SetReadDeadline(time.Now().Add(10 * time.Minute))
	for {
		n, err := c.Read(buf)
		if n > 0 {
			now := time.Now()
			if d := now.Sub(last); d > longest {
				longest = d
			}
			last = now
			h.Write(buf[:n])
			got += int64(n)
			if triggered < kills && int(killed.Load()) == triggered && got > int64(triggered+1)*size/(kills+1) {
				triggered++
				trigger <- got
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d of %d bytes, %d kills: %v (tunnel: %v)", got, size, killed.Load(), err, tun.Err())
		}
	}
	close(stop)
	<-killerDone
	stop = make(chan struct{}) // for the deferred close
	heldAt = append(heldAt, strings.Count(logs.String(), deferred))
	st := srv.Stats()
	t.Logf("64 MiB through %d lossy kills in %v; longest read stall %v; emulator: dropped %d, lost in socket %d, lost %d, agent retransmissions %d; keepalive timeouts deferred by progress at each kill and at the end: %v",
		killed.Load(), time.Since(start).Round(time.Second), longest.Round(time.Millisecond), st.FramesDropped, st.FramesLostInSocket, st.FramesLost, st.Retransmissions, heldAt)
	if got != size || [32]byte(h.Sum(nil)) != <-want {
		t.Fatalf("received %d bytes, sha256 equal %v", got, false)
	}
	if killed.Load() != kills || st.FramesDropped < int64(loss1+kills*holeData) {
		t.Fatalf("%d kills, %d frames dropped; want %d kills, ≥ %d dropped", killed.Load(), st.FramesDropped, kills, loss1+kills*holeData)
	}
	if heldAt[1] == heldAt[0] {
		t.Errorf("no keepalive timeout was deferred during the first repair (%v of duplicates only): the test proves nothing about progress as liveness", time.Duration(loss1)*tick)
	}
	if err := tun.Err(); err != nil {
		t.Fatalf("tunnel down: %v", err)
	}
}

// seq1 returns 1, 2, …, n (frame numbers for ssmtest.Faults' *Nth fields).
func seq1(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}
