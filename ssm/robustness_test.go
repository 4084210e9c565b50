package ssm_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// TestDialCancelAtAnyPointLeavesNoSession guards against a session left
// open at the service when Dial's ctx is cancelled while StartSession is in
// flight (the service created the session, the client never learned its id)
// or at any later point of Dial.
func TestDialCancelAtAnyPointLeavesNoSession(t *testing.T) {
	echo := startEcho(t, []byte("SSH-2.0-echo\r\n"))
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	cfg := clientConfig(srv)
	rng := rand.New(rand.NewPCG(1, 2))
	var cancelled, dialed int
	for i := range 50 {
		// Mostly inside StartSession (a few ms on loopback), some later.
		d := time.Duration(rng.Int64N(int64(4 * time.Millisecond)))
		if i%5 == 4 {
			d = time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
		}
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(d, cancel)
		s, err := ssm.Dial(ctx, cfg)
		stop.Stop()
		cancel()
		switch {
		case err == nil:
			dialed++
			if cerr := s.Close(); cerr != nil {
				t.Errorf("iteration %d: Close: %v", i, cerr)
			}
		case errors.Is(err, context.Canceled):
			cancelled++
		default:
			t.Fatalf("iteration %d (cancel after %v): Dial = %v, want nil or context.Canceled", i, d, err)
		}
		// Dial and Close terminate synchronously: a session still open
		// a moment later was leaked.
		waitFor(t, time.Second, "SessionsOpen == 0 after iteration", func() bool { return srv.Stats().SessionsOpen == 0 })
	}
	st := srv.Stats()
	t.Logf("%d cancelled, %d dialed; emulator: %d started, %d terminated", cancelled, dialed, st.SessionsStarted, st.SessionsTerminated)
	if cancelled == 0 {
		t.Error("no Dial was cancelled: the delays miss Dial altogether")
	}
	if st.SessionsEnded != st.SessionsStarted {
		t.Errorf("SessionsEnded = %d, SessionsStarted = %d", st.SessionsEnded, st.SessionsStarted)
	}
}

// TestResumeWithoutTokenFailsWithErrSessionGone guards the reconnect path
// when the service no longer knows the session: the data channel breaks
// without the client hearing channel_closed (it went into a dead network
// path), the session is terminated at the API meanwhile, and ResumeSession
// answers without a TokenValue. Read and Write must then fail with
// ErrSessionGone instead of retrying until ResumeTimeout.
func TestResumeWithoutTokenFailsWithErrSessionGone(t *testing.T) {
	echo := startEcho(t, []byte("banner\n"))
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	s := dial(t, clientConfig(srv))
	defer s.Close()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatalf("reading the banner: %v", err)
	}
	// The client's path goes dark first, so the channel_closed that the
	// termination causes never reaches it; the service then closes the
	// websocket, and the client tries to resume.
	if n := srv.StallWebsocket(s.ID()); n != 1 {
		t.Fatalf("StallWebsocket = %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	if _, err := api.TerminateSession(ctx, &ssmsdk.TerminateSessionInput{SessionId: aws.String(s.ID())}); err != nil {
		t.Fatalf("TerminateSession at the API: %v", err)
	}
	start := time.Now()
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Read(buf)
	if !errors.Is(err, ssm.ErrSessionGone) {
		t.Fatalf("Read = %v, want ErrSessionGone", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("ErrSessionGone took %v: the client kept retrying a session the service gave up", el)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ssm.ErrSessionGone) {
		t.Errorf("Write = %v, want ErrSessionGone", err)
	}
	select {
	case <-s.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after ErrSessionGone")
	}
	if !errors.Is(s.Err(), ssm.ErrSessionGone) {
		t.Errorf("Err = %v, want ErrSessionGone", s.Err())
	}
	if strings.Contains(err.Error(), "AKIA") || strings.Contains(err.Error(), "Token") && !strings.Contains(err.Error(), "token") {
		t.Errorf("error mentions credentials or token values: %v", err)
	}
	st := srv.Stats()
	if st.Resumes != 0 || st.APIRequests < 3 {
		t.Errorf("emulator: Resumes = %d (want 0), APIRequests = %d (want StartSession, TerminateSession and ≥1 ResumeSession)", st.Resumes, st.APIRequests)
	}
	if st.SessionsOpen != 0 {
		t.Errorf("SessionsOpen = %d, want 0", st.SessionsOpen)
	}
}

// TestDeadButOpenSocketIsNoticedByPingTimeout guards the liveness check: a
// websocket whose TCP connection stays open but over which nothing arrives
// any more (no frames, no pongs) must be declared dead after PingTimeout,
// and the session resumed on a new websocket without losing a byte.
//
// The ping timeout is short, so on a loaded host a late pong may end a
// live websocket too, before the stall: that is a reconnect the test does
// not count against the client. It requires one more reconnect after the
// stall, and a ResumeSession for each (a redial that failed under load may
// add one).
func TestDeadButOpenSocketIsNoticedByPingTimeout(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = -1
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = 600 * time.Millisecond
	s := dial(t, cfg)
	defer s.Close()
	waitFor(t, 30*time.Second, "agent handshake flag", func() bool { return srv.Stats().Handshakes == 1 })
	echoTransfer(t, s, 64<<10, 30*time.Second, nil)
	before := s.Stats().Reconnects
	if n := srv.StallWebsocket(s.ID()); n != 1 {
		t.Fatalf("StallWebsocket = %d, want 1", n)
	}
	start := time.Now()
	// Written into the black hole first, then resent on the new websocket.
	echoTransfer(t, s, 256<<10, 60*time.Second, nil)
	el := time.Since(start)
	cst, st := s.Stats(), srv.Stats()
	t.Logf("recovered in %v; client reconnects %d (%d before the stall), retransmissions %d; emulator resumes %d, frames stalled %d",
		el, cst.Reconnects, before, cst.Retransmissions, st.Resumes, st.FramesStalled)
	if cst.Reconnects <= before || st.Resumes < cst.Reconnects {
		t.Errorf("Reconnects = %d (%d before the stall), emulator Resumes = %d; want a reconnect after the stall, each one resumed", cst.Reconnects, before, st.Resumes)
	}
	if st.FramesStalled == 0 {
		t.Error("no frame went into the black hole: the test did not exercise a dead socket")
	}
	if el < cfg.PingTimeout {
		t.Errorf("transfer finished in %v, before PingTimeout: the stall had no effect", el)
	}
	if err := s.Err(); err != nil {
		t.Errorf("session ended: %v", err)
	}
}

// TestUnsupportedHandshakeActionFailsDial guards the handshake when the
// agent requests what this client cannot do (KMS encryption, an action
// of a newer agent): the client must answer it Unsupported, Dial must
// return a *HandshakeError saying which action, and no session may stay
// open at the service.
func TestUnsupportedHandshakeActionFailsDial(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action ssmtest.HandshakeAction
		want   string
	}{
		{"KMSEncryption", ssmtest.HandshakeAction{ActionType: "KMSEncryption",
			ActionParameters: json.RawMessage(`{"KMSKeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","Challenge":"AAECAwQFBgcICQoLDA0ODw=="}`)}, `"KMSEncryption" is not supported`},
		{"action of a future agent", ssmtest.HandshakeAction{ActionType: "PortForwardingV2",
			ActionParameters: json.RawMessage(`{"Mode":"quic"}`)}, `"PortForwardingV2" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := startEcho(t, nil)
			srv := newEmulator(t, ssmtest.Config{ExtraHandshakeActions: []ssmtest.HandshakeAction{tc.action}}, echo.addr())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := ssm.Dial(ctx, clientConfig(srv))
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded although the agent requested an action the client cannot perform")
			}
			var he *ssm.HandshakeError
			if !errors.As(err, &he) || !errors.Is(err, ssm.ErrHandshake) || errors.Is(err, ssm.ErrHandshakeTimeout) {
				t.Fatalf("Dial = %v, want a *HandshakeError (not a timeout)", err)
			}
			if !strings.Contains(he.Reason, tc.want) || he.SessionID == "" {
				t.Errorf("HandshakeError %q: want the reason to say %s and name the session", err, tc.want)
			}
			waitFor(t, 5*time.Second, "SessionsOpen == 0", func() bool { return srv.Stats().SessionsOpen == 0 })
			st := srv.Stats()
			if st.Handshakes != 0 || st.TargetDials != 0 {
				t.Errorf("emulator: Handshakes = %d, TargetDials = %d; the agent went ahead with the session", st.Handshakes, st.TargetDials)
			}
			if st.SessionsFailed+st.SessionsTerminated != 1 {
				t.Errorf("emulator: SessionsFailed = %d, SessionsTerminated = %d; want the session failed by the agent or terminated by the client", st.SessionsFailed, st.SessionsTerminated)
			}
		})
	}
}

// TestValidateReportsWhatDialRejects guards Config.Validate against
// drifting from Dial's own checks: the same *ConfigError, no network call,
// and nil for a config Dial accepts.
func TestValidateReportsWhatDialRejects(t *testing.T) {
	srv := newEmulator(t, ssmtest.Config{}, "127.0.0.1:1")
	good := clientConfig(srv)
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, tc := range []struct {
		name  string
		field string
		mod   func(*ssm.Config)
	}{
		{"empty target", "Target", func(c *ssm.Config) { c.Target = "" }},
		{"uppercase hex", "Target", func(c *ssm.Config) { c.Target = "i-0123456789ABCDEF0" }},
		{"missing region", "AWS.Region", func(c *ssm.Config) { c.AWS.Region = "" }},
		{"missing credentials", "AWS.Credentials", func(c *ssm.Config) { c.AWS.Credentials = nil }},
		{"relative endpoint", "Endpoint", func(c *ssm.Config) { c.Endpoint = "ssm.example" }},
		{"port out of range", "PortNumber", func(c *ssm.Config) { c.PortNumber = -1 }},
		{"negative buffer", "ReadBuffer", func(c *ssm.Config) { c.ReadBuffer = -1 }},
		{"negative timeout", "CloseTimeout", func(c *ssm.Config) { c.CloseTimeout = -time.Second }},
		{"rto bounds crossed", "MinRTO", func(c *ssm.Config) { c.MinRTO = time.Minute }},
		{"ping timeout below default interval", "PingTimeout", func(c *ssm.Config) { c.PingTimeout = time.Second }},
		{"ping timeout equal to interval", "PingTimeout", func(c *ssm.Config) { c.PingInterval, c.PingTimeout = time.Second, time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			verr := cfg.Validate()
			var ce *ssm.ConfigError
			if !errors.Is(verr, ssm.ErrInvalidConfig) || !errors.As(verr, &ce) || ce.Field != tc.field {
				t.Fatalf("Validate = %v, want *ConfigError for %s", verr, tc.field)
			}
			_, derr := ssm.Dial(context.Background(), cfg)
			if derr == nil || derr.Error() != verr.Error() {
				t.Errorf("Dial = %v, Validate = %v; want the same error", derr, verr)
			}
		})
	}
	// Defaults are applied first: zero values and a negative PingInterval
	// (pings off, PingTimeout ignored) are valid.
	noPing := good
	noPing.PingInterval, noPing.PingTimeout = -1, time.Millisecond
	if err := noPing.Validate(); err != nil {
		t.Errorf("Validate with pings off = %v", err)
	}
	if n := srv.Stats().APIRequests; n != 0 {
		t.Errorf("%d API requests made while validating", n)
	}
}

// TestDialWithCancelledContextStartsNoSession guards the cheap path: a ctx
// that is already done must not cost a StartSession (nor a session to
// terminate).
func TestDialWithCancelledContextStartsNoSession(t *testing.T) {
	srv := newEmulator(t, ssmtest.Config{}, "127.0.0.1:1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ssm.Dial(ctx, clientConfig(srv)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial = %v, want context.Canceled", err)
	}
	if n := srv.Stats().APIRequests; n != 0 {
		t.Errorf("%d API requests with a cancelled ctx", n)
	}
}
