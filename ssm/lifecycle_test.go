package ssm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// dropHandshakeRequests makes the gateway lose every HandshakeRequest.
func dropHandshakeRequests(srv *ssmtest.Server) {
	srv.SetFaults(ssmtest.ToClient, ssmtest.Faults{
		Match: func(f ssmtest.FrameInfo) bool { return f.PayloadType == 5 },
		Drop:  1,
	})
}

// TestCloseLeavesNoOpenSessionAtService guards against sessions left
// running at the service after Close, and against Close not being
// idempotent or bounded.
func TestCloseLeavesNoOpenSessionAtService(t *testing.T) {
	echo := startEcho(t, []byte("hello\n"))
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	s := dial(t, clientConfig(srv))
	if got := srv.Stats().SessionsOpen; got != 1 {
		t.Fatalf("SessionsOpen = %d after Dial, want 1", got)
	}
	if s.AgentVersion() != ssmtest.DefaultAgentVersion {
		t.Errorf("AgentVersion = %q, want %q", s.AgentVersion(), ssmtest.DefaultAgentVersion)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if el := time.Since(start); el > ssm.DefaultCloseTimeout {
		t.Errorf("Close took %v, more than CloseTimeout", el)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitFor(t, 5*time.Second, "SessionsOpen == 0", func() bool { return srv.Stats().SessionsOpen == 0 })
	if st := srv.Stats(); st.SessionsTerminated != 1 {
		t.Errorf("SessionsTerminated = %d, want 1", st.SessionsTerminated)
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ssm.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed/net.ErrClosed", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ssm.ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
}

// TestDialCancelledMidwayLeavesNoSession guards against a cancelled Dial
// leaving a session at the service (or goroutines, checked by TestMain).
func TestDialCancelledMidwayLeavesNoSession(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	dropHandshakeRequests(srv)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, 10*time.Second, "session started", func() bool { return srv.Stats().SessionsStarted == 1 })
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	s, err := ssm.Dial(ctx, clientConfig(srv))
	if err == nil {
		s.Close()
		t.Fatal("Dial succeeded without a handshake")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Dial error = %v, want context.Canceled", err)
	}
	waitFor(t, 5*time.Second, "SessionsOpen == 0", func() bool { return srv.Stats().SessionsOpen == 0 })
}

// TestFailedHandshakeLeavesNoSession guards the handshake timeout: a typed
// error and nothing left at the service.
func TestFailedHandshakeLeavesNoSession(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	dropHandshakeRequests(srv)
	cfg := clientConfig(srv)
	cfg.HandshakeTimeout = 500 * time.Millisecond
	_, err := ssm.Dial(context.Background(), cfg)
	var he *ssm.HandshakeError
	if !errors.Is(err, ssm.ErrHandshakeTimeout) || !errors.Is(err, ssm.ErrHandshake) || !errors.As(err, &he) || he.SessionID == "" {
		t.Fatalf("Dial error = %v, want a *HandshakeError matching ErrHandshakeTimeout", err)
	}
	waitFor(t, 5*time.Second, "SessionsOpen == 0", func() bool { return srv.Stats().SessionsOpen == 0 })
}

// TestInvalidConfigSaysWhatToFix guards config validation: typed errors
// naming the field, before any API call.
func TestInvalidConfigSaysWhatToFix(t *testing.T) {
	srv := newEmulator(t, ssmtest.Config{}, "127.0.0.1:1")
	good := clientConfig(srv)
	for _, tc := range []struct {
		name  string
		field string
		mod   func(*ssm.Config)
	}{
		{"empty target", "Target", func(c *ssm.Config) { c.Target = "" }},
		{"not an instance id", "Target", func(c *ssm.Config) { c.Target = "web-1" }},
		{"bad hex", "Target", func(c *ssm.Config) { c.Target = "i-0123xyz89abcdef0" }},
		{"missing region", "AWS.Region", func(c *ssm.Config) { c.AWS.Region = "" }},
		{"missing credentials", "AWS.Credentials", func(c *ssm.Config) { c.AWS.Credentials = nil }},
		{"bad endpoint", "Endpoint", func(c *ssm.Config) { c.Endpoint = "ssm.example" }},
		{"bad port", "PortNumber", func(c *ssm.Config) { c.PortNumber = 70000 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			_, err := ssm.Dial(context.Background(), cfg)
			var ce *ssm.ConfigError
			if !errors.Is(err, ssm.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("Dial error = %v, want *ConfigError for %s", err, tc.field)
			}
		})
	}
	if n := srv.Stats().APIRequests; n != 0 {
		t.Errorf("%d API requests made with invalid configs", n)
	}
	_, secret := srv.Credentials()
	_ = secret
}

// TestMiTargetAccepted guards the target format check against rejecting
// hybrid ("mi-") instances.
func TestMiTargetAccepted(t *testing.T) {
	echo := startEcho(t, nil)
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{"mi-0123456789abcdef0": echo.addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := clientConfig(srv)
	cfg.Target = "mi-0123456789abcdef0"
	s := dial(t, cfg)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAPIErrorsKeepSDKTypes guards error wrapping: the SDK's typed errors
// must still match through ours, and nothing secret may leak into them.
func TestAPIErrorsKeepSDKTypes(t *testing.T) {
	srv := newEmulator(t, ssmtest.Config{Targets: map[string]string{}}, "")
	cfg := clientConfig(srv)
	_, err := ssm.Dial(context.Background(), cfg)
	var tnc *types.TargetNotConnected
	var ae *ssm.APIError
	var sae smithy.APIError
	if !errors.As(err, &tnc) || !errors.As(err, &ae) || !errors.As(err, &sae) || ae.Op != "StartSession" {
		t.Fatalf("Dial error = %v (%T), want *APIError wrapping *types.TargetNotConnected", err, err)
	}
	key, secret := srv.Credentials()
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), key) {
		t.Errorf("error leaks credentials: %v", err)
	}

	// Wrong credentials: the SDK's error must surface, without the secret.
	cfg.AWS = srv.AWSConfig()
	cfg.AWS.Credentials = aws.AnonymousCredentials{}
	if _, err := ssm.Dial(context.Background(), cfg); err == nil || !errors.As(err, &ae) {
		t.Errorf("Dial with anonymous credentials: %v, want *APIError", err)
	}
}

// TestTargetUnreachableReadReturnsServiceOutput guards channel_closed
// handling: the agent's "Unable to connect to specified port" must reach the
// caller of Read.
func TestTargetUnreachableReadReturnsServiceOutput(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	srv := newEmulator(t, ssmtest.Config{}, addr)
	s := dial(t, clientConfig(srv))
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = s.Read(make([]byte, 10))
	var cc *ssm.ChannelClosedError
	if !errors.As(err, &cc) || !errors.Is(err, ssm.ErrSessionTerminated) || !strings.Contains(cc.Output, "Unable to connect to specified port") {
		t.Fatalf("Read error = %v, want *ChannelClosedError with the agent's output", err)
	}
	<-s.Done()
	if _, err := s.Write([]byte("x")); !errors.Is(err, ssm.ErrSessionTerminated) {
		t.Errorf("Write after channel_closed: %v", err)
	}
}

// TestTargetCloseReadsBufferedDataThenSessionTerminated guards the end of a
// session the target ends: buffered bytes first, then an error matching
// ErrSessionTerminated, never io.EOF (channel_closed looks the same when
// someone else terminated the session mid-stream).
func TestTargetCloseReadsBufferedDataThenSessionTerminated(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msg := strings.Repeat("goodbye ", 1000)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(msg))
		c.Close()
	}()
	srv := newEmulator(t, ssmtest.Config{}, ln.Addr().String())
	s := dial(t, clientConfig(srv))
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(s)
	if err == nil || !errors.Is(err, ssm.ErrSessionTerminated) {
		t.Fatalf("ReadAll: %v; want an error matching ErrSessionTerminated", err)
	}
	if string(got) != msg {
		t.Fatalf("read %d bytes, want %d", len(got), len(msg))
	}
}

// TestServiceCloseChannelOutputReachesRead guards channel_closed with an
// Output the service chose.
func TestServiceCloseChannelOutputReachesRead(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	s := dial(t, clientConfig(srv))
	defer s.Close()
	srv.CloseChannel(s.ID(), "Session idle timeout")
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := s.Read(make([]byte, 10))
	var cc *ssm.ChannelClosedError
	if !errors.As(err, &cc) || cc.Output != "Session idle timeout" {
		t.Fatalf("Read error = %v, want *ChannelClosedError with the service's Output", err)
	}
	if !errors.Is(s.Err(), ssm.ErrSessionTerminated) {
		t.Errorf("Err() = %v", s.Err())
	}
}

// TestDeadlinesExpire guards net.Conn deadlines on both directions.
func TestDeadlinesExpire(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = time.Hour // the silent target never releases the hold
	cfg.WriteBuffer = 4096
	s := dial(t, cfg)
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("Read past deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := s.Write(make([]byte, 10000))
	if !isTimeout(err) || !errors.As(err, &ne) || !ne.Timeout() || n != 4096 {
		t.Errorf("Write into a full buffer: n=%d err=%v, want 4096 and a timeout", n, err)
	}
	s.SetDeadline(time.Time{})
	if s.LocalAddr().Network() != "ssm" || s.RemoteAddr().String() != testTarget+":22" {
		t.Errorf("addresses: %v %v", s.LocalAddr(), s.RemoteAddr())
	}
}

// TestHoldFirstWritePreventsHandshakeDiscard guards reference §7.5: data
// the agent receives right after HandshakeComplete is acked and discarded.
// Without the hold, the first bytes are lost; with it, none are.
func TestHoldFirstWritePreventsHandshakeDiscard(t *testing.T) {
	const window = 300 * time.Millisecond
	banner := []byte("SSH-2.0-OpenSSH_9.6\r\n")
	run := func(t *testing.T, hold time.Duration) (echoed []byte, discarded int64) {
		echo := startEcho(t, banner)
		srv := newEmulator(t, ssmtest.Config{HandshakeDiscardWindow: window}, echo.addr())
		cfg := clientConfig(srv)
		cfg.HoldFirstWrite = hold
		s := dial(t, cfg)
		defer s.Close()
		if _, err := s.Write([]byte("SSH-2.0-client\r\n")); err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(window + 2*time.Second))
		var got []byte
		buf := make([]byte, 256)
		for {
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		return got, srv.Stats().Discarded
	}
	t.Run("disabled loses data", func(t *testing.T) {
		got, discarded := run(t, -1)
		if discarded == 0 || strings.Contains(string(got), "SSH-2.0-client") {
			t.Fatalf("expected the agent to discard the early write: discarded=%d, got %q", discarded, got)
		}
	})
	t.Run("enabled loses nothing", func(t *testing.T) {
		got, discarded := run(t, 0)
		if discarded != 0 || string(got) != string(banner)+"SSH-2.0-client\r\n" {
			t.Fatalf("discarded=%d, got %q", discarded, got)
		}
	})
}

// TestReadBackPressureKeepsBufferBounded guards the receive side: with a
// reader that does not read, buffered data stays bounded, and nothing is
// lost once it reads again.
func TestReadBackPressureKeepsBufferBounded(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	cfg := clientConfig(srv)
	cfg.ReadBuffer = 64 << 10
	cfg.HoldFirstWrite = -1
	s := dial(t, cfg)
	defer s.Close()
	const n = 2 << 20
	go func() {
		s.Write(make([]byte, n))
	}()
	waitFor(t, 20*time.Second, "target to echo data", func() bool { return echo.echoed() > 256<<10 })
	time.Sleep(300 * time.Millisecond)
	if got := s.Stats().BytesReceived; got > int64(cfg.ReadBuffer)+1024 {
		t.Fatalf("BytesReceived = %d with nobody reading, want ≤ ReadBuffer", got)
	}
	s.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(s, make([]byte, n)); err != nil {
		t.Fatalf("reading everything back: %v", err)
	}
}

// TestCorruptFramesAreDroppedAndCounted guards receive-side validation: a
// frame with a bad digest is dropped (not delivered, not acked) and counted;
// the agent's retransmission repairs the stream.
func TestCorruptFramesAreDroppedAndCounted(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	s := dial(t, clientConfig(srv))
	defer s.Close()
	srv.SetFaults(ssmtest.ToClient, ssmtest.Faults{Seed: 3, CorruptDigest: 0.02})
	echoTransfer(t, s, 256<<10, 60*time.Second, nil)
	if st := s.Stats(); st.MalformedDropped == 0 {
		t.Fatalf("MalformedDropped = 0 with digest corruption: %+v\nemulator %+v", st, srv.Stats())
	}
}

// TestTLSEndpointAndRootCAs guards the RootCAs path: https API and wss data
// channel with a private CA, nothing from the environment.
func TestTLSEndpointAndRootCAs(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{TLS: true}, echo.addr())
	cfg := clientConfig(srv)
	cfg.AWS.HTTPClient = nil // use our client built with RootCAs
	cfg.AWS.BaseEndpoint = nil
	cfg.Endpoint = srv.URL()
	s := dial(t, cfg)
	echoTransfer(t, s, 64<<10, 30*time.Second, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseSaysGoodbyeWithCloseFrame guards a clean goodbye: Close sends
// the TerminateSession flag and then a websocket close frame with code 1000,
// so the service sees a normal closure, not 1006. The service answers the
// flag with channel_closed at once, which races Close's own goodbye; several
// sessions make a lost race (the socket closed before the close frame, as
// when the session's cancel came first) show even on an idle machine.
func TestCloseSaysGoodbyeWithCloseFrame(t *testing.T) {
	const sessions = 10
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	for i := range sessions {
		s := dial(t, clientConfig(srv))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		want := int64(i + 1)
		waitFor(t, 5*time.Second, fmt.Sprintf("a normal websocket closure of session %d", want), func() bool { return srv.Stats().WebsocketsClosedNormally == want })
	}
}
