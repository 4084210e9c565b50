package aliyun_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/internal/testenv"
)

func TestDialEchoesAndEndsTheSessionOnClose(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	cfg := config(srv, echo)
	cfg.UploadRate = aliyun.Unpaced
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	go func() { c.Write(data) }()
	got := make([]byte, len(data))
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("echo differs")
	}
	if st := c.Stats(); st.UploadRate != aliyuntest.UnpacedRate {
		t.Fatalf("upload rate %d: the server's Status 7 was not applied", st.UploadRate)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoSessions(t, srv)
	st := srv.Stats()
	if st.ClosesReceived != 1 || st.NormalCloses != 1 || st.SessionsEnded != 1 || st.APICalls["EndTerminalSession"] != 1 {
		t.Fatalf("stats after Close: %+v", st)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
}

// TestTargetCloseIsNotAnEOF guards the rule that the far side's silence
// never becomes a clean EOF: the agent does not signal the target's close.
func TestTargetCloseIsNotAnEOF(t *testing.T) {
	srv := newServer(t, fast())
	addr := testenv.TCPServer(t, func(c net.Conn) {
		c.Write([]byte("hello"))
		c.Close()
	})
	cfg := config(srv, addr)
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
		t.Fatal(string(b), err)
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := c.Read(b); !errors.Is(err, os_ErrDeadlineExceeded()) {
		t.Fatalf("Read after the target closed = %d, %v; want a deadline error, never io.EOF", n, err)
	}
}

// TestServerStatusBecomesTypedErrorWithReason: Status 2 (Aborted), 5
// (Closed) and 6 (Exited) from the server end the connection with a
// *StatusError carrying the code and the reason, for Read and Write.
func TestServerStatusBecomesTypedErrorWithReason(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	for _, st := range []struct {
		code   byte
		reason string
	}{{2, "AgentTimeout"}, {5, "FlowExceedLimit"}, {6, "Exit"}} {
		c, err := aliyun.Dial(context.Background(), config(srv, echo))
		if err != nil {
			t.Fatal(err)
		}
		onConn(t, func() int { return srv.SendStatus(c.Session().ID(), st.code, st.reason) })
		_, err = c.Read(make([]byte, 10))
		var se *aliyun.StatusError
		if !errors.As(err, &se) || se.Code != st.code || se.Reason != st.reason || !errors.Is(err, aliyun.ErrSessionClosed) || errors.Is(err, io.EOF) {
			t.Fatalf("Status %d: Read = %v", st.code, err)
		}
		if _, err := c.Write([]byte("x")); !errors.As(err, &se) {
			t.Fatalf("Status %d: Write after it = %v", st.code, err)
		}
		c.Close()
	}
	waitNoSessions(t, srv)
}

// TestHeldWritesGoOutAtTheFirstOutput guards the readiness rule for a
// target that speaks first (SSH, MySQL): bytes written before the agent
// dialled are held until its first Output, not for the whole
// HoldFirstWrite, and none is dropped.
func TestHeldWritesGoOutAtTheFirstOutput(t *testing.T) {
	cfg := fast()
	cfg.DialDelay = 300 * time.Millisecond // v578 drops Input before its dial
	srv := newServer(t, cfg)
	addr := testenv.TCPServer(t, func(c net.Conn) {
		c.Write([]byte("hello"))
		io.Copy(c, c)
	})
	acfg := config(srv, addr)
	acfg.HoldFirstWrite = time.Minute
	c, err := aliyun.Dial(context.Background(), acfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // far below the one-minute hold
	b := make([]byte, 9)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "helloping" {
		t.Fatalf("%q %v: the write was not released by the first Output", b, err)
	}
	if n := srv.Stats().InputsDropped; n != 0 {
		t.Fatalf("%d inputs dropped", n)
	}
}

func TestKilledWebsocketIsSessionLostNotEOF(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	c, err := aliyun.Dial(context.Background(), config(srv, echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	onConn(t, func() int { return srv.KillWebsocket("") })
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, aliyun.ErrSessionLost) || errors.Is(err, io.EOF) {
		t.Fatalf("Read = %v", err)
	}
}

func TestBadInputIsTypedAndLeavesNothingOpen(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	ctx := context.Background()

	cfg := config(srv, echo)
	cfg.InstanceID = "i-bp1unknown00000000"
	_, err := aliyun.Dial(ctx, cfg)
	var ae *aliyun.APIError
	if !errors.Is(err, aliyun.ErrInstanceNotFound) || !errors.As(err, &ae) || ae.Code != "InvalidInstance.NotFound" || ae.RequestID == "" {
		t.Fatalf("unknown instance: %v", err)
	}

	cfg = config(srv, echo)
	other, _ := aliyuntest.NewServer(aliyuntest.Config{Instances: fast().Instances})
	cfg.Credential = other.Credential()
	other.Close()
	if _, err := aliyun.Dial(ctx, cfg); !errors.Is(err, aliyun.ErrAuth) {
		t.Fatalf("wrong keys: %v", err)
	}
	if srv.Stats().SignatureFailures != 1 {
		t.Fatalf("signature failures %d", srv.Stats().SignatureFailures)
	}

	cfg = config(srv, echo)
	cfg.Region = ""
	if _, err := aliyun.Dial(ctx, cfg); !errors.Is(err, aliyun.ErrInvalidConfig) {
		t.Fatalf("no region: %v", err)
	}
	waitNoSessions(t, srv)
	if st := srv.Stats(); st.SessionsStarted != 0 {
		t.Fatalf("sessions started: %+v", st)
	}
}

func TestWrongSecretIsSignatureRefused(t *testing.T) {
	cfg := fast()
	cfg.AccessKeyID, cfg.AccessKeySecret = "LTAI5tEMULATEDKEY", "right-secret"
	srv := newServer(t, cfg)
	c := config(srv, "127.0.0.1:1")
	wrong := aliyuntest.Config{Instances: cfg.Instances, AccessKeyID: "LTAI5tEMULATEDKEY", AccessKeySecret: "wrong-secret"}
	w, err := aliyuntest.NewServer(wrong)
	if err != nil {
		t.Fatal(err)
	}
	c.Credential = w.Credential()
	w.Close()
	_, err = aliyun.Dial(context.Background(), c)
	var ae *aliyun.APIError
	if !errors.As(err, &ae) || ae.Code != "SignatureDoesNotMatch" || !errors.Is(err, aliyun.ErrAuth) {
		t.Fatalf("wrong secret: %v", err)
	}
	if bytes.Contains([]byte(err.Error()), []byte("wrong-secret")) {
		t.Fatal("the secret appears in the error")
	}
}

func TestClosedTargetPortIsTypedError(t *testing.T) {
	srv := newServer(t, fast())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c, err := aliyun.Dial(context.Background(), config(srv, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Read(make([]byte, 1))
	var se *aliyun.StatusError
	if !errors.As(err, &se) || se.Reason != "OpenPortFailed" {
		t.Fatalf("Read = %v", err)
	}
}

func TestCancelDuringOpenLeavesNoSession(t *testing.T) {
	cfg := fast()
	srv := newServer(t, cfg)
	echo := testenv.EchoServer(t)
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		c, err := aliyun.Dial(ctx, config(srv, echo))
		cancel()
		if err == nil {
			c.Close()
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial with a %v context = %v", d, err)
		}
	}
	waitNoSessions(t, srv)
}

func TestKeepaliveGoesOutWhenIdle(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	cfg := config(srv, echo)
	cfg.KeepaliveInterval = 100 * time.Millisecond
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Keepalives < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keepalives in 10 s at a 100 ms interval", srv.Stats().Keepalives)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIdleChannelIsEndedByTheAgent(t *testing.T) {
	cfg := fast()
	cfg.IdleTimeout = 300 * time.Millisecond
	srv := newServer(t, cfg)
	echo := testenv.EchoServer(t)
	c, err := aliyun.Dial(context.Background(), config(srv, echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var se *aliyun.StatusError
	if !errors.As(err, &se) || se.Reason != "IdleTimeout" {
		t.Fatalf("Read = %v", err)
	}
}

func TestInputBeforeTheAgentDialsIsHeldNotLost(t *testing.T) {
	cfg := fast()
	cfg.DialDelay = 300 * time.Millisecond
	srv := newServer(t, cfg)
	echo := testenv.EchoServer(t) // a client-speaks-first target
	acfg := config(srv, echo)
	acfg.HoldFirstWrite = 2 * time.Second
	c, err := aliyun.Dial(context.Background(), acfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("%q %v (dropped inputs: %d)", b, err, srv.Stats().InputsDropped)
	}
	if srv.Stats().InputsDropped != 0 {
		t.Fatal("input was dropped")
	}
}

func TestSessionLimitIsTypedBeforeAndWhenHit(t *testing.T) {
	cfg := fast()
	cfg.SessionLimit = 2
	srv := newServer(t, cfg)
	echo := testenv.EchoServer(t)
	var conns []*aliyun.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		c, err := aliyun.Dial(context.Background(), config(srv, echo))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	_, err := aliyun.Dial(context.Background(), config(srv, echo))
	if !errors.Is(err, aliyun.ErrSessionLimit) {
		t.Fatalf("third session: %v", err)
	}
}

// TestInstanceLimitRefusesBeforeTheAPI guards the "before it is hit" half
// of the 20-session limit: the 21st connection to one instance from this
// process is refused without a StartTerminalSession call.
func TestInstanceLimitRefusesBeforeTheAPI(t *testing.T) {
	cfg := fast()
	cfg.SessionLimit = 100
	srv := newServer(t, cfg)
	echo := testenv.EchoServer(t)
	var conns []*aliyun.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range aliyun.InstanceSessionLimit {
		c, err := aliyun.Dial(context.Background(), config(srv, echo))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	before := srv.Stats().APICalls["StartTerminalSession"]
	_, err := aliyun.Dial(context.Background(), config(srv, echo))
	if !errors.Is(err, aliyun.ErrSessionLimit) {
		t.Fatalf("21st connection: %v", err)
	}
	if n := srv.Stats().APICalls["StartTerminalSession"]; n != before {
		t.Fatalf("the API was called for the 21st connection")
	}
	conns[0].Close()
	c, err := aliyun.Dial(context.Background(), config(srv, echo))
	if err != nil {
		t.Fatalf("after one Close: %v", err)
	}
	conns[0] = c
}

// TestUploadIsChunkedAndPacedToTheLastRate guards the upload rules: Inputs
// of at most 2048 bytes, one pacing interval (83 ms at the default
// 204 800 bit/s) between them, and a Status 7 from the server changes the
// rate.
func TestUploadIsChunkedAndPacedToTheLastRate(t *testing.T) {
	cfg := fast()
	cfg.FlowLimit = 0 // no Status 7 at connect: the client's default rate rules
	srv := newServer(t, cfg)
	echo := testenv.TCPServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, err := aliyun.Dial(context.Background(), config(srv, echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := c.Stats().UploadRate; r != aliyun.DefaultUploadRate {
		t.Fatalf("upload rate %d before any Status 7", r)
	}
	start := time.Now()
	if _, err := c.Write(make([]byte, 5*2048+1)); err != nil {
		t.Fatal(err)
	}
	// 6 chunks: the 6th goes out 5 intervals after the first (a lower
	// bound holds under any load).
	if d := time.Since(start); d < 5*83*time.Millisecond {
		t.Fatalf("6 chunks sent in %v; pacing allows no less than %v", d, 5*83*time.Millisecond)
	}
	onConn(t, func() int { return srv.SetRate(c.ID(), 1638400) })
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().UploadRate != 1638400 {
		if time.Now().After(deadline) {
			t.Fatal("Status 7 not applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitNoSessions(t, srv)
	st := srv.Stats()
	if st.InputsReceived != 8 || st.MaxInputPayload != 2048 || st.NormalCloses != 1 {
		t.Fatalf("inputs %d (want 8), largest %d (want 2048), normal websocket closes %d (want 1)", st.InputsReceived, st.MaxInputPayload, st.NormalCloses)
	}
}

func TestStallHoldsBytesAndResumeDeliversThem(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	c, err := aliyun.Dial(context.Background(), config(srv, echo))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	onConn(t, func() int { return srv.Stall(c.ID(), true) })
	c.Write([]byte("held"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); !errors.Is(err, os_ErrDeadlineExceeded()) {
		t.Fatalf("read through a stalled session: %d %v", n, err)
	}
	srv.Stall(c.ID(), false)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "held" {
		t.Fatalf("%q %v", b, err)
	}
}

// TestCancelDuringStartTerminalSessionEndsTheSession guards the case where
// ctx ends while StartTerminalSession is in flight and the service has
// already created the session: Dial returns ctx's error and the session
// is ended, not left to time out.
func TestCancelDuringStartTerminalSessionEndsTheSession(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	srv.SetAPIDelay(400 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := aliyun.Dial(ctx, config(srv, echo))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v", err)
	}
	srv.SetAPIDelay(0)
	waitNoSessions(t, srv)
	if st := srv.Stats(); st.SessionsStarted != 1 || st.SessionsEnded != 1 {
		t.Fatalf("started %d, ended %d", st.SessionsStarted, st.SessionsEnded)
	}
}
