package dialer_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
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
	t.Run("direct-basic", func(t *testing.T) {
		// An agent ≤ 3.0.196.0: one session per connection (§8.3).
		tun, _ := directStack(t, 1, ssmtest.Config{AgentVersion: "3.0.196.0"})
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

// TestDirectStalledReaderFreezesOtherConns: smux v1 has no per-stream
// flow control, so a connection whose reader stops could fill the
// session's 4 MiB receive buffer and freeze every other connection of the
// session. Here one PostgreSQL connection stops reading a ≈ 10 MB result
// for 20 s while a second one on the same session runs small queries under
// realistic pacing: they must keep answering, and afterwards the stalled
// result must arrive complete.
func TestDirectStalledReaderFreezesOtherConns(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s pause")
	}
	tun, _ := directStack(t, 1, ssmtest.Config{Pacing: ssmtest.Realistic})
	dsn := testenv.PostgresDSN(t)
	c := ctx(t, 3*time.Minute)
	a, err := dialer.ConnectPgx(c, tun, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { a.Close(c) })
	b, err := dialer.ConnectPgx(c, tun, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { b.Close(c) })
	if ids := tun.Stats().SessionIDs; len(ids) != 1 {
		t.Fatalf("sessions %v; want both connections on one session", ids)
	}

	const rows = 10_000 // 1 KiB each
	rowsA, err := a.Query(c, "SELECT i, repeat(md5(i::text), 32) FROM generate_series(1, $1::int) i", rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rowsA.Close()
	if !rowsA.Next() {
		t.Fatalf("first row: %v", rowsA.Err())
	}
	before := tun.Stats().BytesReceived

	// A's reader now stops for 20 s; B keeps querying.
	const pause = 20 * time.Second
	var lat []time.Duration
	end := time.Now().Add(pause)
	for i := 0; time.Now().Before(end); i++ {
		qc, cancel := context.WithTimeout(c, 10*time.Second)
		t0 := time.Now()
		var got int
		err := b.QueryRow(qc, "SELECT $1::int + 1", i).Scan(&got)
		cancel()
		if err != nil || got != i+1 {
			t.Fatalf("small query %d after %v of the pause: %d, %v (the stalled reader froze the session)", i, pause-time.Until(end), got, err)
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(100 * time.Millisecond)
	}
	buffered := tun.Stats().BytesReceived - before
	slices.Sort(lat)
	t.Logf("during the %v pause: %d small queries, latency median %v, p90 %v, max %v; %.1f MiB of the stalled result buffered meanwhile",
		pause, len(lat), lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1], float64(buffered)/(1<<20))

	// After the pause: every row, every byte.
	n := 1
	for rowsA.Next() {
		var i int
		var v string
		if err := rowsA.Scan(&i, &v); err != nil {
			t.Fatal(err)
		}
		n++
		sum := md5.Sum([]byte(strconv.Itoa(i)))
		if want := strings.Repeat(hex.EncodeToString(sum[:]), 32); v != want || i != n {
			t.Fatalf("row %d (id %d) differs after the pause", n, i)
		}
	}
	if err := rowsA.Err(); err != nil || n != rows {
		t.Fatalf("stalled result: %d rows, %v; want %d", n, err, rows)
	}
}

func TestDirectRefusedDialNotTypedThroughDrivers(t *testing.T) {
	for _, agent := range []string{"", "3.0.196.0"} {
		t.Run("agent="+agent, func(t *testing.T) {
			tun, srv := directStack(t, 1, ssmtest.Config{AgentVersion: agent})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closed := ln.Addr().String()
			ln.Close()
			c := ctx(t, 30*time.Second)
			_, err = dialer.ConnectPgx(c, tun, "postgres://postgres@"+closed+"/test?sslmode=disable&connect_timeout=20")
			if !errors.Is(err, link.ErrConnect) {
				t.Fatalf("pgx to a closed port: %v; want an error matching link.ErrConnect", err)
			}
			db, err := dialer.OpenMySQL(tun, "root@tcp("+closed+")/test?timeout=20s")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.PingContext(c); !errors.Is(err, link.ErrConnect) {
				t.Fatalf("mysql to a closed port: %v; want an error matching link.ErrConnect", err)
			}
			db.Close()
			deadline := time.Now().Add(5 * time.Second)
			for srv.Stats().SessionsOpen != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := srv.Stats().SessionsOpen; n != 0 {
				t.Fatalf("%d sessions left open after refused dials", n)
			}
		})
	}
}
