package dialer_test

import (
	"context"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// eachMode runs the same dialer code over an SSH-mode tunnel (stack) and a
// direct-mode tunnel (directStack), each through the emulator over real
// websockets to the real databases.
func eachMode(t *testing.T, f func(t *testing.T, tun *tunnel.Tunnel)) {
	t.Run("ssh", func(t *testing.T) {
		tun, _ := stack(t)
		f(t, tun)
	})
	t.Run("direct", func(t *testing.T) {
		tun, _ := directStack(t, 1, ssmtest.Config{})
		f(t, tun)
	})
}

// directStack opens a ModeDirect tunnel with sessions sessions per
// destination through an unpaced emulator (cfg's other fields as given)
// whose instance reaches the databases on 127.0.0.1. It checks at cleanup
// that the emulator has no session left.
func directStack(t *testing.T, sessions int, cfg ssmtest.Config) (*tunnel.Tunnel, *ssmtest.Server) {
	t.Helper()
	cfg.Targets = map[string]string{target: "127.0.0.1"}
	srv, err := ssmtest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		Mode:     tunnel.ModeDirect,
		SSM:      ssm.Config{AWS: srv.AWSConfig(), Target: target},
		Sessions: sessions,
	})
	if err != nil {
		t.Fatalf("tunnel.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("tunnel.Close: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for srv.Stats().SessionsOpen != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := srv.Stats().SessionsOpen; n != 0 {
			t.Errorf("emulator has %d sessions open after Close", n)
		}
	})
	return tun, srv
}

func TestDirect64ConnsOverFourSessionsNotSpread(t *testing.T) {
	tun, srv := directStack(t, 4, ssmtest.Config{})
	test64ConcurrentConns(t, tun)
	st := tun.Stats()
	if len(st.SessionIDs) != 4 {
		t.Fatalf("SessionIDs = %v; want 4 sessions for the one destination", st.SessionIDs)
	}
	for i, n := range st.SessionConns {
		if n < 64/4-2 || n > 64/4+2 {
			t.Errorf("session %d carries %d connections; want about 16 each (%v)", i, n, st.SessionConns)
		}
	}
	if n := srv.Stats().SessionsOpen; n != 4 {
		t.Fatalf("emulator has %d sessions open; want 4", n)
	}
	_ = testenv.MySQLAddr
}

func TestDirect64ConnsNotOnOneSession(t *testing.T) {
	tun, srv := directStack(t, 1, ssmtest.Config{})
	test64ConcurrentConns(t, tun)
	if ids := tun.Stats().SessionIDs; len(ids) != 1 {
		t.Fatalf("SessionIDs = %v; want the 64 connections on one session", ids)
	}
	if st := srv.Stats(); st.SessionsStarted != 1 || st.TargetDials < 64 {
		t.Fatalf("emulator started %d sessions and dialed the target %d times; want 1 session, ≥ 64 smux-stream dials", st.SessionsStarted, st.TargetDials)
	}
}
