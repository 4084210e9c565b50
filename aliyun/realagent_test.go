package aliyun_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/aliyun/internal/realagent"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/tunnel"
)

// startRealAgent starts the emulator's server side for a real agent and
// Alibaba's real agent pointed at it.
func startRealAgent(t testing.TB, flowLimit int64) *aliyuntest.Server {
	t.Helper()
	srv := newServer(t, aliyuntest.Config{RealAgent: instance, FlowLimit: flowLimit})
	start := time.Now()
	agent := realagent.Start(t, srv.AgentHost(), srv.CACertPEM())
	select {
	case <-srv.AgentConnected():
		t.Logf("the agent connected %v after its start", time.Since(start).Round(time.Millisecond))
	case <-agent.Done():
		t.Fatal("the agent exited before connecting")
	case <-time.After(60 * time.Second):
		t.Fatal("the agent did not open its notify websocket within 60 s")
	}
	return srv
}

// TestRealAgent moves 1 MiB each way sha256-equal through Alibaba's real
// Cloud Assistant agent (v2.2.3.578), via SSH to a real sshd and direct to
// a real PostgreSQL, with the server side unpaced (flowLimit) and at the
// agent's default pacing. The SSH and direct transfers (and, direct, the
// upload and the download) run at once on sessions of their own, as the
// per-session pacing (≈ 24 KB/s: 1 MiB ≈ 43 s) makes parallel sessions the
// lever.
func TestRealAgent(t *testing.T) {
	if realagent.Find() == "" {
		t.Skip("no ../shared/peers/aliyun")
	}
	for _, c := range []struct {
		name      string
		flowLimit int64
	}{{"Unpaced", aliyuntest.UnpacedRate}, {"DefaultPacing", 0}} {
		t.Run(c.name, func(t *testing.T) {
			srv := startRealAgent(t, c.flowLimit)
			start := time.Now()
			t.Run("Transfers", func(t *testing.T) {
				t.Run("SSH", func(t *testing.T) { t.Parallel(); realAgentSSH(t, srv) })
				t.Run("DirectPostgresUpload", func(t *testing.T) { t.Parallel(); realAgentDirectUp(t, srv) })
				t.Run("DirectPostgresDownload", func(t *testing.T) { t.Parallel(); realAgentDirectDown(t, srv) })
			})
			t.Logf("transfers done after %v", time.Since(start).Round(time.Millisecond))
			waitNoSessions(t, srv)
			t.Cleanup(func() { t.Logf("cleanup starts %v after the transfers began", time.Since(start).Round(time.Millisecond)) })
			t.Logf("agent reports: %v", srv.AgentReports())
		})
	}
}

func realAgentConfig(srv *aliyuntest.Server, addr string) aliyun.Config {
	cfg := config(srv, addr)
	cfg.HoldFirstWrite = 0 // 3 s: the agent dials its target 1 s after its websocket opens
	return cfg
}

func realAgentSSH(t *testing.T, srv *aliyuntest.Server) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tcfg := sshTunnelConfig(srv, sshd, 1)
	acfg := realAgentConfig(srv, sshd.Addr)
	tcfg.DialBastion = func(ctx context.Context) (net.Conn, error) { return aliyun.Dial(ctx, acfg) }
	tun, err := tunnel.Open(tctx(t, 60*time.Second), tcfg)
	if err != nil {
		t.Fatalf("tunnel.Open through the real agent: %v", err)
	}
	defer tun.Close()
	c, err := tun.DialContext(tctx(t, 30*time.Second), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	got := make([]byte, len(data))
	c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("1 MiB echoed through SSH and the real agent differs")
	}
}

// realAgentConn is a pgx connection direct to PostgreSQL through the real
// agent (its own session).
func realAgentConn(t *testing.T, srv *aliyuntest.Server) (*pgx.Conn, context.Context) {
	cfg := realAgentConfig(srv, "127.0.0.1:1")
	// PostgreSQL speaks second, so only the delay releases the startup
	// message, and v578 drops Input that arrives before its dial (1 s
	// after its backend websocket opens; seconds more on a loaded machine):
	// a generous hold, the documented knob for such targets.
	cfg.HoldFirstWrite = 10 * time.Second
	tr, err := aliyun.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := tctx(t, 5*time.Minute)
	dsn := testenv.PostgresDSN(t)
	if strings.Contains(dsn, "://") && !strings.Contains(dsn, "connect_timeout") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + "connect_timeout=60"
	}
	conn, err := dialer.ConnectPgx(c, tr, dsn)
	if err != nil {
		t.Fatalf("%v (inputs the emulator's server side dropped before the agent's websocket: %d)", err, srv.Stats().InputsDropped)
	}
	t.Cleanup(func() { bounded(func(c context.Context) { conn.Close(c) }) })
	return conn, c
}

// realAgentDirectUp sends 1 MiB of random bytes to PostgreSQL, which
// stores them and returns their sha256.
func realAgentDirectUp(t *testing.T, srv *aliyuntest.Server) {
	conn, c := realAgentConn(t, srv)
	data := make([]byte, 1<<20)
	rand.Read(data)
	tbl := table("agent")
	if _, err := conn.Exec(c, "CREATE TEMP TABLE "+tbl+" (b bytea)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(c, "INSERT INTO "+tbl+" VALUES ($1)", data); err != nil {
		t.Fatal(err)
	}
	var serverSum []byte
	var n int
	if err := conn.QueryRow(c, "SELECT sha256(b), length(b) FROM "+tbl).Scan(&serverSum, &n); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); n != len(data) || !bytes.Equal(serverSum, want[:]) {
		t.Fatalf("PostgreSQL stored %d bytes with another sha256 than the 1 MiB sent through the real agent", n)
	}
}

// realAgentDirectDown has PostgreSQL make 1 MiB of random bytes and send
// them with their sha256.
func realAgentDirectDown(t *testing.T, srv *aliyuntest.Server) {
	conn, c := realAgentConn(t, srv)
	var back, serverSum []byte
	err := conn.QueryRow(c, `SELECT b, sha256(b) FROM (SELECT decode(string_agg(lpad(to_hex((random()*4294967295)::bigint), 8, '0'), ''), 'hex') AS b
		FROM generate_series(1, 262144)) s`).Scan(&back, &serverSum)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256.Sum256(back); len(back) != 1<<20 || !bytes.Equal(serverSum, got[:]) {
		t.Fatalf("received %d bytes through the real agent with another sha256 than PostgreSQL's 1 MiB", len(back))
	}
}

// TestRealAgentBinaryFoundBesideTheCheckout guards the harness's search:
// in CI (CI=true) ../shared is beside the checkout, and a real-agent test
// that skipped because the search missed it would pass without testing.
func TestRealAgentBinaryFoundBesideTheCheckout(t *testing.T) {
	if !testenv.InCI() {
		t.Skip("checked in CI, where ../shared/peers/aliyun is beside the checkout")
	}
	if realagent.Find() == "" {
		t.Fatal("CI=true but ../shared/peers/aliyun/aliyun-service.gz was not found")
	}
}
