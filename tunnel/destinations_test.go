package tunnel_test

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmlink"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// sessionsOnly hides DialPort: the AWS transport as a transport without
// port sessions (one basic session per Dial), the shape of Alibaba's.
type sessionsOnly struct{ link.Transport }

func sessionsOnlyConfig(srv *ssmtest.Server, dests ...string) tunnel.Config {
	return tunnel.Config{
		Mode:      tunnel.ModeDirect,
		Transport: sessionsOnly{ssmlink.New(ssm.Config{AWS: srv.AWSConfig(), Target: target})},
		Direct:    tunnel.DirectConfig{Destinations: dests, ProbeWait: 300 * time.Millisecond},
	}
}

// TestDestinationsWithoutPortSessionsClosedPortFailsOpen guards
// Direct.Destinations on a transport without port sessions: a destination
// nothing listens on fails Open with a *link.ConnectError naming it (not
// the first connection), the other destination's probe is ended too, and
// nothing is left open.
func TestDestinationsWithoutPortSessionsClosedPortFailsOpen(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	echo := testenv.EchoServer(t)
	closed := closedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, sessionsOnlyConfig(srv, echo, closed))
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded although a destination's port is closed")
	}
	var ce *link.ConnectError
	if !errors.As(err, &ce) || ce.Addr != closed || errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("Open = %v; want a *link.ConnectError for %s", err, closed)
	}
	waitNoSessions(t, srv)
	if st := srv.Stats(); st.SessionsStarted != 2 {
		t.Fatalf("emulator: %d sessions started; want one per destination (2)", st.SessionsStarted)
	}
}

// TestDestinationsWithoutPortSessionsProbeEndedFirstConnFresh guards the
// probe's end: after Open no session is open (the probe was ended, not
// kept), the first connection starts its own session and works, and the
// probe of a silent server (the echo server waits for the client) took
// ProbeWait, not longer.
func TestDestinationsWithoutPortSessionsProbeEndedFirstConnFresh(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	echo := testenv.EchoServer(t)
	tun := open(t, sessionsOnlyConfig(srv, echo))
	waitNoSessions(t, srv)
	if st := srv.Stats(); st.SessionsStarted != 1 {
		t.Fatalf("emulator: %d sessions started at Open; want 1 (the probe)", st.SessionsStarted)
	}
	echoRoundTrip(t, dial(t, tun, echo), 1000)
	if st := srv.Stats(); st.SessionsStarted != 2 || st.SessionsOpen != 1 {
		t.Fatalf("emulator: %d started, %d open; want the first connection on a fresh session", st.SessionsStarted, st.SessionsOpen)
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoSessions(t, srv)
}

// TestDestinationsWithoutPortSessionsWrongTargetFailsOpen: a target the
// service does not know fails Open (ssm's typed error), leaving nothing.
func TestDestinationsWithoutPortSessionsWrongTargetFailsOpen(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	cfg := sessionsOnlyConfig(srv, testenv.EchoServer(t))
	cfg.Transport = sessionsOnly{ssmlink.New(ssm.Config{AWS: srv.AWSConfig(), Target: "i-0fffffffffffffff0"})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, cfg)
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded with an unknown target")
	}
	var (
		ae  *ssm.APIError
		tnc *types.TargetNotConnected
	)
	if !errors.As(err, &ae) || ae.Op != "StartSession" || !errors.As(err, &tnc) {
		t.Fatalf("Open = %v; want an *ssm.APIError from StartSession wrapping *types.TargetNotConnected", err)
	}
	waitNoSessions(t, srv)
}

// TestDirectClosedPortWriteFirstReadsConnectErrorNotEOF guards a
// client-speaks-first protocol (PostgreSQL) to a closed port over a mux
// port session: the agent answers ConnectToPortError and the stream's FIN;
// a Write issued before that arrives may be accepted (its bytes are
// dropped), but the first Read, and every Write after it, fail with a
// *link.ConnectError naming the address: never io.EOF, never a hang.
func TestDirectClosedPortWriteFirstReadsConnectErrorNotEOF(t *testing.T) {
	srv := directEmulator(t, ssmtest.Config{})
	tun := open(t, directTunnelConfig(srv))
	closed := closedPort(t)
	c := dial(t, tun, closed)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("startup packet")); err != nil && !errors.Is(err, link.ErrConnect) {
		t.Fatalf("first Write = %v; want success (not yet refused) or link.ErrConnect", err)
	}
	_, rerr := c.Read(make([]byte, 1))
	_, werr := c.Write([]byte("more"))
	for _, e := range []struct {
		op  string
		err error
	}{{"Read", rerr}, {"Write after Read", werr}} {
		var ce *link.ConnectError
		if !errors.As(e.err, &ce) || ce.Addr != closed || errors.Is(e.err, io.EOF) || errors.Is(e.err, os.ErrDeadlineExceeded) {
			t.Errorf("%s on a refused connection = %v; want a *link.ConnectError for %s", e.op, e.err, closed)
		}
	}
	c.Close()
	waitNoSessions(t, srv)
	if tun.Err() != nil {
		t.Fatalf("tunnel down after a refused connection: %v", tun.Err())
	}
}
