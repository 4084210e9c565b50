package aliyun_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

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
	agent := realagent.Start(t, srv.AgentHost(), srv.CACertPEM())
	select {
	case <-srv.AgentConnected():
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
// agent's default pacing.
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
			t.Run("SSH", func(t *testing.T) { realAgentSSH(t, srv) })
			t.Run("DirectPostgres", func(t *testing.T) { realAgentDirect(t, srv) })
			waitNoSessions(t, srv)
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

func realAgentDirect(t *testing.T, srv *aliyuntest.Server) {
	tr, err := aliyun.NewTransport(realAgentConfig(srv, "127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	c := tctx(t, 5*time.Minute)
	conn, err := dialer.ConnectPgx(c, tr, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	data := make([]byte, 1<<20)
	rand.Read(data)
	tbl := table("agent")
	if _, err := conn.Exec(c, "CREATE TEMP TABLE "+tbl+" (b bytea)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(c, "INSERT INTO "+tbl+" VALUES ($1)", data); err != nil {
		t.Fatal(err)
	}
	var back []byte
	var serverSum []byte
	if err := conn.QueryRow(c, "SELECT b, sha256(b) FROM "+tbl).Scan(&back, &serverSum); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(serverSum, want[:]) || sha256.Sum256(back) != want {
		t.Fatal("1 MiB through PostgreSQL and the real agent differs")
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
