package realagent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jumpless/jumpless/internal/realagent"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// testDirectMode: tunnel.ModeDirect (no SSH) through AWS's real agent: four
// connections to one destination ride one port session as smux streams,
// each echoing its own bytes intact, and a pgx round trip reaches the real
// PostgreSQL; nothing is left open afterwards.
func testDirectMode(t *testing.T, r *rig) {
	echo := testenv.EchoServer(t)
	r.agent.Forward(echo)
	pgAddr := testenv.PostgresAddr(t)
	r.agent.Forward(pgAddr)

	started := r.srv.Stats().SessionsStarted
	completed := r.srv.Stats().AgentTasksCompleted
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		Mode: tunnel.ModeDirect,
		SSM:  ssm.Config{AWS: r.srv.AWSConfig(), RootCAs: r.srv.CertPool(), Target: realagent.InstanceID},
	})
	if err != nil {
		t.Fatalf("tunnel.Open (direct) through the real agent: %v\nagent log:\n%s", err, tail(r.agent.Logs()))
	}
	defer tun.Close()

	const streams = 4
	var wg sync.WaitGroup
	errs := make([]error, streams)
	start := time.Now()
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := tun.DialContext(ctx, "tcp", echo)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			msg := []byte(strings.Repeat(string(rune('a'+i)), 64<<10))
			go func() { _, _ = c.Write(msg) }()
			got := make([]byte, len(msg))
			_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil {
				errs[i] = err
				return
			}
			if !bytes.Equal(got, msg) {
				errs[i] = io.ErrUnexpectedEOF
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("stream %d through the real agent's smux: %v\nagent log:\n%s", i, err, tail(r.agent.Logs()))
		}
	}
	elapsed := time.Since(start)
	if n := r.srv.Stats().SessionsStarted - started; n != 1 {
		t.Errorf("%d streams to one destination started %d sessions, want 1 (smux mux mode)", streams, n)
	}

	pc, err := pgx.ParseConfig(testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.DialFunc = tun.DialContext
	pg, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		t.Fatalf("pgx through the real agent in direct mode: %v", err)
	}
	var sum int64
	if err := pg.QueryRow(ctx, "SELECT sum(g) FROM generate_series(1, 1000) g").Scan(&sum); err != nil || sum != 500500 {
		t.Fatalf("postgres in direct mode: sum %d, %v", sum, err)
	}
	pg.Close(context.Background())
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.waitNoSessions(t, 30*time.Second)
	r.waitAgentCompleted(t, completed+r.srv.Stats().SessionsStarted-started)
	t.Logf("real agent, direct mode: %d smux streams × 64 KiB echoed intact in %v over one port session; pgx round trip ok", streams, elapsed.Round(time.Millisecond))
}

// testDirectModeTargetRefuses: in tunnel.ModeDirect, a connection to an
// address nothing listens on (in the agent's namespace) fails at its first
// Read with a *link.ConnectError naming the address, never io.EOF and
// never a hang, and the port session lives on for the next connection.
// What the real agent (3.3.0.0) does for a refused stream in mux mode is
// logged (the ConnectToPortError flag, then the stream's FIN).
func testDirectModeTargetRefuses(t *testing.T, r *rig) {
	echo := testenv.EchoServer(t)
	r.agent.Forward(echo)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String() // never forwarded: refused in the agent's namespace
	ln.Close()
	started := r.srv.Stats().SessionsStarted
	completed := r.srv.Stats().AgentTasksCompleted
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		Mode: tunnel.ModeDirect,
		SSM:  ssm.Config{AWS: r.srv.AWSConfig(), RootCAs: r.srv.CertPool(), Target: realagent.InstanceID},
	})
	if err != nil {
		t.Fatalf("tunnel.Open (direct): %v", err)
	}
	defer tun.Close()
	c, err := tun.DialContext(ctx, "tcp", closed)
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = c.Read(make([]byte, 1))
	took := time.Since(start)
	c.Close()
	t.Logf("real agent, refused stream: first Read after %v: %v", took.Round(time.Millisecond), err)
	var ce *link.ConnectError
	if !errors.As(err, &ce) || ce.Addr != closed || errors.Is(err, io.EOF) {
		t.Fatalf("first Read of a refused connection = %v (after %v); want a *link.ConnectError for %s, not io.EOF or a deadline\nagent log:\n%s", err, took, closed, tail(r.agent.FileLog()))
	}
	// The destination's session was dropped with the refused connection;
	// another destination works.
	c2, err := tun.DialContext(ctx, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("after a refusal")
	if _, err := c2.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c2, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo after a refused connection: %q %v", got, err)
	}
	c2.Close()
	if tun.Err() != nil {
		t.Fatalf("tunnel down after a refused connection: %v", tun.Err())
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.waitNoSessions(t, 30*time.Second)
	r.waitAgentCompleted(t, completed+r.srv.Stats().SessionsStarted-started)
}
