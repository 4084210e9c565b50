package aliyun_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/aliyun/internal/realagent"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/tunnel"
)

// Direct.Destinations on the Alibaba transport (no port sessions): Open
// starts one session per destination, waits for the agent's refusal or the
// server's first byte, and ends it (docs/design.md, "Destinations at Open
// without port sessions").

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDestinationsClosedPortFailsOpenNotFirstConn guards the promise of
// Direct.Destinations: with the agent's measured 1 s dial delay (emulator
// default), a destination nothing listens on fails Open with the agent's
// refusal (link.ErrConnect, *aliyun.StatusError), within ProbeWait, and
// Open leaves no session open.
func TestDestinationsClosedPortFailsOpenNotFirstConn(t *testing.T) {
	cfg := fast()
	cfg.DialDelay = 0 // the agent's 1 s, as measured
	srv := newServer(t, cfg)
	tr, err := aliyun.NewTransport(config(srv, "127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	pg := testenv.PostgresAddr(t)
	closed := closedAddr(t)
	start := time.Now()
	tun, err := tunnel.Open(tctx(t, 30*time.Second), tunnel.Config{
		Mode: tunnel.ModeDirect, Transport: tr.Link(),
		Direct: tunnel.DirectConfig{Destinations: []string{pg, closed}},
	})
	took := time.Since(start)
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded although a destination's port is closed")
	}
	var (
		se *aliyun.StatusError
		ce *link.ConnectError
	)
	if !errors.Is(err, link.ErrConnect) || !errors.As(err, &se) || errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("Open = %v; want link.ErrConnect (*aliyun.StatusError), not ErrTunnelDown", err)
	}
	if !errors.As(err, &ce) || ce.Addr != closed || ce.SessionID == "" {
		t.Fatalf("Open = %v; want a *link.ConnectError naming %s and its session", err, closed)
	}
	t.Logf("closed port: Open failed after %v: %v", took.Round(time.Millisecond), err)
	if took > tunnel.DefaultProbeWait+10*time.Second {
		t.Fatalf("Open took %v; want about the agent's dial delay (ProbeWait %v bounds the wait)", took, tunnel.DefaultProbeWait)
	}
	waitNoSessions(t, srv)
	if st := srv.Stats(); st.SessionsStarted != 2 {
		t.Fatalf("sessions started %d; want one per destination (2)", st.SessionsStarted)
	}
}

// TestDestinationsProbeSessionEndedNotKept guards the choice not to keep
// the probe session for the first connection (a target's handshake timer
// would close it unseen): after Open no session is open, and the first
// connection gets a fresh session that works end to end (pgx to the real
// PostgreSQL, which stays silent during the probe, and MySQL, which
// speaks first).
func TestDestinationsProbeSessionEndedNotKept(t *testing.T) {
	tr, srv := linkTransport(t)
	pg, my := testenv.PostgresAddr(t), testenv.MySQLAddr(t)
	tun := openSeam(t, srv, tunnel.Config{
		Mode: tunnel.ModeDirect, Transport: tr,
		Direct: tunnel.DirectConfig{Destinations: []string{pg, my}, ProbeWait: 500 * time.Millisecond},
	})
	st := srv.Stats()
	if st.SessionsStarted != 2 || st.SessionsOpen != 0 {
		t.Fatalf("after Open: %d sessions started, %d open; want one probe per destination (2), all ended", st.SessionsStarted, st.SessionsOpen)
	}
	if ts := tun.Stats(); ts.OpenConns != 0 || len(ts.SessionIDs) != 0 {
		t.Fatalf("tunnel stats after Open %+v; want nothing open", ts)
	}
	pgxRoundTrip(t, tun)
	if got := srv.Stats().SessionsStarted; got != 3 {
		t.Fatalf("sessions started %d; want the first connection on a fresh one (3)", got)
	}
}

// TestDestinationsWrongInstanceOrKeysFailOpenTyped: a wrong instance or
// wrong keys fail Open with aliyun's typed errors, not at the first
// connection, and leave nothing open.
func TestDestinationsWrongInstanceOrKeysFailOpenTyped(t *testing.T) {
	srv := newServer(t, fast())
	pg := testenv.PostgresAddr(t)
	other, err := aliyuntest.NewServer(aliyuntest.Config{Instances: fast().Instances})
	if err != nil {
		t.Fatal(err)
	}
	wrongKeys := other.Credential()
	other.Close()
	for _, tc := range []struct {
		name string
		edit func(*aliyun.Config)
		want error
	}{
		{"unknown instance", func(c *aliyun.Config) { c.InstanceID = "i-bp1unknown00000000" }, aliyun.ErrInstanceNotFound},
		{"wrong keys", func(c *aliyun.Config) { c.Credential = wrongKeys }, aliyun.ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acfg := config(srv, "127.0.0.1:1")
			tc.edit(&acfg)
			tr, err := aliyun.NewTransport(acfg)
			if err != nil {
				t.Fatal(err)
			}
			tun, err := tunnel.Open(tctx(t, 30*time.Second), tunnel.Config{
				Mode: tunnel.ModeDirect, Transport: tr.Link(),
				Direct: tunnel.DirectConfig{Destinations: []string{pg}},
			})
			if err == nil {
				tun.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v; want %v", err, tc.want)
			}
			waitNoSessions(t, srv)
		})
	}
}

// TestRealAgentDestinationClosedPortFailsOpen runs the same promise against
// Alibaba's real agent (v2.2.3.578): its refused dial (reported to the
// server as Open_port_failed) fails Open with link.ErrConnect within
// ProbeWait, and a destination that listens passes; nothing stays open.
func TestRealAgentDestinationClosedPortFailsOpen(t *testing.T) {
	if realagent.Find() == "" {
		t.Skip("no ../shared/peers/aliyun")
	}
	srv := startRealAgent(t, aliyuntest.UnpacedRate)
	tr, err := aliyun.NewTransport(realAgentConfig(srv, "127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	closed := closedAddr(t)
	start := time.Now()
	tun, err := tunnel.Open(tctx(t, 60*time.Second), tunnel.Config{
		Mode: tunnel.ModeDirect, Transport: tr.Link(),
		Direct: tunnel.DirectConfig{Destinations: []string{closed}},
	})
	took := time.Since(start)
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded although the destination's port is closed")
	}
	var se *aliyun.StatusError
	if !errors.Is(err, link.ErrConnect) || !errors.As(err, &se) {
		t.Fatalf("Open through the real agent = %v; want link.ErrConnect (*aliyun.StatusError)", err)
	}
	t.Logf("real agent, closed port: Open failed after %v: %v", took.Round(time.Millisecond), err)
	waitNoSessions(t, srv)

	for _, d := range []struct{ name, addr string }{
		{"MySQL (speaks first)", testenv.MySQLAddr(t)},
		{"PostgreSQL (waits for the client)", testenv.PostgresAddr(t)},
	} {
		start = time.Now()
		tun, err = tunnel.Open(tctx(t, 60*time.Second), tunnel.Config{
			Mode: tunnel.ModeDirect, Transport: tr.Link(),
			Direct: tunnel.DirectConfig{Destinations: []string{d.addr}},
		})
		if err != nil {
			t.Fatalf("Open with a listening %s destination through the real agent: %v", d.name, err)
		}
		t.Logf("real agent, %s destination: Open in %v", d.name, time.Since(start).Round(time.Millisecond))
		if err := tun.Close(); err != nil {
			t.Fatal(err)
		}
		waitNoSessions(t, srv)
	}
	t.Logf("agent reports: %v", srv.AgentReports())
}

// TestDirectClosedPortWriteFirstFailsTypedNotSilently guards a
// client-speaks-first protocol (PostgreSQL) to a closed port, with the
// agent's measured timing (it dials 1 s after the session starts) and the
// default write hold (3 s): the first Write does not pass for success (its
// bytes would be dropped) but fails with a *link.ConnectError naming the
// address, about 1 s after the dial; Read says the same, never io.EOF; the
// session is ended.
func TestDirectClosedPortWriteFirstFailsTypedNotSilently(t *testing.T) {
	cfg := fast()
	cfg.DialDelay = 0 // 1 s, as measured
	srv := newServer(t, cfg)
	acfg := config(srv, "127.0.0.1:1")
	acfg.HoldFirstWrite = 0 // the default 3 s
	tr, err := aliyun.NewTransport(acfg)
	if err != nil {
		t.Fatal(err)
	}
	tun := openSeam(t, srv, tunnel.Config{Mode: tunnel.ModeDirect, Transport: tr.Link()})
	closed := closedAddr(t)
	c, err := tun.DialContext(tctx(t, 30*time.Second), "tcp", closed)
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	_, werr := c.Write([]byte("startup packet"))
	took := time.Since(start)
	_, rerr := c.Read(make([]byte, 1))
	for _, e := range []struct {
		op  string
		err error
	}{{"Write", werr}, {"Read", rerr}} {
		var ce *link.ConnectError
		if !errors.As(e.err, &ce) || ce.Addr != closed || errors.Is(e.err, io.EOF) || errors.Is(e.err, tunnel.ErrTunnelDown) {
			t.Errorf("first %s to a closed port = %v; want a *link.ConnectError for %s", e.op, e.err, closed)
		}
	}
	t.Logf("closed port, write first: Write failed after %v: %v", took.Round(time.Millisecond), werr)
	c.Close()
	waitNoSessions(t, srv)
}

// waitAgentTakesSessions waits until the real agent serves a session (the
// MySQL greeting comes back). Just after it starts, the agent may ignore a
// kick ("Fetching tasks is disabled due to network is not ready" in its
// log, seen under load): such a session stays silent, which a probe cannot
// tell from a server that waits for the client.
func waitAgentTakesSessions(t testing.TB, tr *aliyun.Transport, srv *aliyuntest.Server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := tr.Dial(ctx, testenv.MySQLAddr(t))
		if err != nil {
			cancel()
			t.Fatalf("warm-up session: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		cancel()
		if err == nil {
			if try > 1 {
				t.Logf("the real agent served session %d of the warm-up (the earlier ones stayed silent)", try)
			}
			waitNoSessions(t, srv)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the real agent serves no session: %v", err)
		}
	}
}
