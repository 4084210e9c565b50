package aliyun_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
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
	tr, err := aliyun.NewTransport(realAgentConfig(srv, "127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	waitAgentTakesSessions(t, tr, srv)
	return srv
}

// TestRealAgent moves 1 MiB each way sha256-equal through Alibaba's real
// Cloud Assistant agent (v2.2.3.578), via SSH to a real sshd and direct to
// a real PostgreSQL, with the server side unpaced (flowLimit) and at the
// agent's default pacing. The three transfers of a pacing (SSH echo;
// direct upload; direct download) run at once on sessions of their own, as
// the per-session pacing (≈ 24 KB/s: 1 MiB ≈ 43 s) makes parallel sessions
// the lever; goroutines, not parallel subtests, since -parallel defaults
// to the number of CPUs.
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
			transfers := map[string]func() error{
				"SSH":                    realAgentSSH(t, srv),
				"DirectPostgresUpload":   realAgentDirectUp(t, srv),
				"DirectPostgresDownload": realAgentDirectDown(t, srv),
			}
			start := time.Now()
			var wg sync.WaitGroup
			for name, f := range transfers {
				wg.Go(func() {
					if err := f(); err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					t.Logf("%s: 1 MiB sha256-equal after %v", name, time.Since(start).Round(time.Millisecond))
				})
			}
			wg.Wait()
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

// realAgentSSH prepares (sshd, echo server) and returns the SSH transfer:
// a tunnel through the real agent to sshd, 1 MiB echoed through a
// direct-tcpip channel.
func realAgentSSH(t *testing.T, srv *aliyuntest.Server) func() error {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	tcfg := sshTunnelConfig(srv, sshd, 1)
	acfg := realAgentConfig(srv, sshd.Addr)
	tcfg.DialBastion = func(ctx context.Context) (net.Conn, error) { return aliyun.Dial(ctx, acfg) }
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		tun, err := tunnel.Open(ctx, tcfg)
		if err != nil {
			return fmt.Errorf("tunnel.Open through the real agent: %w", err)
		}
		defer tun.Close()
		c, err := tun.DialContext(ctx, "tcp", echo)
		if err != nil {
			return err
		}
		defer c.Close()
		data := make([]byte, 1<<20)
		rand.Read(data)
		errc := make(chan error, 1)
		go func() { _, err := c.Write(data); errc <- err }()
		got := make([]byte, len(data))
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			return errors.New("1 MiB echoed through SSH and the real agent differs")
		}
		return nil
	}
}

// realAgentConn returns a function that connects pgx direct to PostgreSQL
// through the real agent (a session of its own).
func realAgentConn(t *testing.T, srv *aliyuntest.Server) func(ctx context.Context) (*pgx.Conn, error) {
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
	dsn := testenv.PostgresDSN(t)
	if strings.Contains(dsn, "://") && !strings.Contains(dsn, "connect_timeout") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + "connect_timeout=60"
	}
	return func(ctx context.Context) (*pgx.Conn, error) {
		conn, err := dialer.ConnectPgx(ctx, tr, dsn)
		if err != nil {
			return nil, fmt.Errorf("%w (inputs the emulator's server side dropped before the agent's websocket: %d)", err, srv.Stats().InputsDropped)
		}
		return conn, nil
	}
}

// realAgentDirectUp returns the upload: 1 MiB of random bytes to
// PostgreSQL, which stores them and returns their sha256.
func realAgentDirectUp(t *testing.T, srv *aliyuntest.Server) func() error {
	connect := realAgentConn(t, srv)
	tbl := table("agent")
	return func() error {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		conn, err := connect(c)
		if err != nil {
			return err
		}
		defer bounded(func(c context.Context) { conn.Close(c) })
		data := make([]byte, 1<<20)
		rand.Read(data)
		if _, err := conn.Exec(c, "CREATE TEMP TABLE "+tbl+" (b bytea)"); err != nil {
			return err
		}
		if _, err := conn.Exec(c, "INSERT INTO "+tbl+" VALUES ($1)", data); err != nil {
			return err
		}
		var serverSum []byte
		var n int
		if err := conn.QueryRow(c, "SELECT sha256(b), length(b) FROM "+tbl).Scan(&serverSum, &n); err != nil {
			return err
		}
		if want := sha256.Sum256(data); n != len(data) || !bytes.Equal(serverSum, want[:]) {
			return fmt.Errorf("PostgreSQL stored %d bytes with another sha256 than the 1 MiB sent through the real agent", n)
		}
		return nil
	}
}

// realAgentDirectDown returns the download: PostgreSQL makes 1 MiB of
// random bytes and sends them with their sha256.
func realAgentDirectDown(t *testing.T, srv *aliyuntest.Server) func() error {
	connect := realAgentConn(t, srv)
	return func() error {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		conn, err := connect(c)
		if err != nil {
			return err
		}
		defer bounded(func(c context.Context) { conn.Close(c) })
		var back, serverSum []byte
		err = conn.QueryRow(c, `SELECT b, sha256(b) FROM (SELECT decode(string_agg(lpad(to_hex((random()*4294967295)::bigint), 8, '0'), ''), 'hex') AS b
			FROM generate_series(1, 262144)) s`).Scan(&back, &serverSum)
		if err != nil {
			return err
		}
		if got := sha256.Sum256(back); len(back) != 1<<20 || !bytes.Equal(serverSum, got[:]) {
			return fmt.Errorf("received %d bytes through the real agent with another sha256 than PostgreSQL's 1 MiB", len(back))
		}
		return nil
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
