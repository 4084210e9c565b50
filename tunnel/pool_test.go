package tunnel_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// waitUntil polls cond every 10 ms until it holds or d passed.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionEnding is one way the service ends a session under a running job.
type sessionEnding struct {
	name  string
	end   func(t *testing.T, srv *ssmtest.Server, id string)
	cause error
}

var sessionEndings = []sessionEnding{
	{
		name: "TerminateSessionFromOutside",
		end: func(t *testing.T, srv *ssmtest.Server, id string) {
			api := ssmsdk.NewFromConfig(srv.AWSConfig())
			if _, err := api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: aws.String(id)}); err != nil {
				t.Fatalf("TerminateSession: %v", err)
			}
		},
		cause: ssm.ErrSessionTerminated,
	},
	{
		// What the service does at its maximum session duration
		// (ssmtest.Config.MaxSessionDuration ends a session the same way).
		name: "MaxSessionDurationChannelClosed",
		end: func(_ *testing.T, srv *ssmtest.Server, id string) {
			srv.CloseChannel(id, ssmtest.MaxDurationOutput)
		},
		cause: ssm.ErrSessionTerminated,
	},
	{
		// An instance reboot, as the emulator models it (assumption: the
		// service ends the session with channel_closed when the agent goes
		// away, and StartSession answers TargetNotConnected until the agent
		// is back): the first replacement tries fail, a later one succeeds.
		name: "InstanceRebootAgentGone",
		end: func(_ *testing.T, srv *ssmtest.Server, id string) {
			srv.SetInstance(target, ssmtest.Instance{PingStatus: ssmtest.PingConnectionLost})
			srv.CloseChannel(id, "")
			time.AfterFunc(700*time.Millisecond, func() { srv.SetInstance(target, ssmtest.Instance{}) })
		},
		cause: ssm.ErrSessionTerminated,
	},
}

// TestReplaceSessionPgxPoolCarriesOn guards Config.Replace with a real sshd
// and a real PostgreSQL through the emulator: a pgxpool runs a query on a
// session that the service ends; that query fails loudly (ErrSessionLost
// wrapping the cause, never io.EOF), the tunnel stays up, later queries
// succeed on the replacement, and Stats counts one replacement.
func TestReplaceSessionPgxPoolCarriesOn(t *testing.T) {
	for _, mode := range []tunnel.Mode{tunnel.ModeSSH, tunnel.ModeDirect} {
		for _, e := range sessionEndings {
			t.Run(mode.String()+"/"+e.name, func(t *testing.T) {
				testReplaceSessionPgxPool(t, mode, e)
			})
		}
	}
}

func testReplaceSessionPgxPool(t *testing.T, mode tunnel.Mode, e sessionEnding) {
	verifyNoLeaks(t)
	var (
		srv *ssmtest.Server
		cfg tunnel.Config
	)
	if mode == tunnel.ModeSSH {
		sshd := testenv.StartSSHD(t)
		srv = newEmulator(t, sshd.Addr)
		cfg = ssmConfig(srv, sshd)
	} else {
		srv = directEmulator(t, ssmtest.Config{})
		cfg = directTunnelConfig(srv)
	}
	cfg.Replace = tunnel.ReplaceConfig{Enabled: true, Backoff: 200 * time.Millisecond}
	cfg.SSM.CloseTimeout = 2 * time.Second
	tun := open(t, cfg)
	defer tun.Close()

	pcfg, err := dialer.ParsePgxPool(tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query before the ending: %v", err)
	}

	// A query in flight on the session when it ends. With a
	// parameter: pgx's simple protocol (Exec without arguments)
	// drops the read error in MultiResultReader.NextResult and
	// reports "conn closed" instead (pgx v5.12.0).
	slow := make(chan error, 1)
	go func() {
		_, err := pool.Exec(ctx, "SELECT pg_sleep($1)", 30)
		slow <- err
	}()
	waitUntil(t, 10*time.Second, "pg_sleep running", func() bool { return pool.Stat().AcquiredConns() == 1 })
	time.Sleep(100 * time.Millisecond) // the query has left the client
	lostID := tun.Stats().SessionIDs[0]
	e.end(t, srv, lostID)

	select {
	case err = <-slow:
	case <-time.After(20 * time.Second):
		t.Fatal("the query on the ended session did not fail within 20s")
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("query on the ended session: %v; want a loud error, never EOF", err)
	}
	if !errors.Is(err, tunnel.ErrSessionLost) || !errors.Is(err, e.cause) {
		t.Fatalf("query on the ended session: %v; want ErrSessionLost wrapping %v", err, e.cause)
	}
	if errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("query on the ended session: %v matches ErrTunnelDown, but the tunnel lives on", err)
	}
	t.Logf("query on the ended session: %v", err)

	// Later queries go through the replacement. pgxpool may hand out
	// an idle connection of the dead session first: that query fails
	// the same loud way, and the pool drops the connection. (In
	// ModeDirect a stream opened in the instant the session ended is
	// such a connection too: smux opens streams without a round trip.)
	waitUntil(t, 20*time.Second, "the replacement session", func() bool { return tun.Stats().Replacements == 1 })
	ok, failed := 0, 0
	for ok < 5 {
		err := pool.QueryRow(ctx, "SELECT 1").Scan(&one)
		if err == nil {
			ok++
			continue
		}
		failed++
		if !errors.Is(err, tunnel.ErrSessionLost) || errors.Is(err, io.EOF) {
			t.Fatalf("query after the ending: %v; want success, or ErrSessionLost on a connection of the dead session", err)
		}
		if failed > int(pcfg.MaxConns) {
			t.Fatalf("%d queries failed after the ending; at most one per pooled connection (%d) may", failed, pcfg.MaxConns)
		}
	}
	select {
	case <-tun.Done():
		t.Fatalf("tunnel down: %v", tun.Err())
	default:
	}
	st := tun.Stats()
	if st.Replacements != 1 || st.LastReplacementReason == "" || slices.Contains(st.SessionIDs, lostID) || len(st.SessionIDs) != 1 {
		t.Fatalf("Stats after the ending: %+v; want 1 replacement with a reason and one session other than %s", st, lostID)
	}
	t.Logf("replacement reason: %s", st.LastReplacementReason)
	if n := srv.Stats().SessionsOpen; n != 1 {
		t.Fatalf("emulator has %d sessions open; want 1 (the replacement)", n)
	}
	pool.Close()
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitNoSessions(t, srv)
}

// TestReplaceSessionDatabaseSQLCarriesOn is the database/sql variant: the
// connection of the ended session is dropped and the pool goes on.
func TestReplaceSessionDatabaseSQLCarriesOn(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	cfg.Replace = tunnel.ReplaceConfig{Enabled: true, Backoff: 100 * time.Millisecond}
	var logs testenv.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tun := open(t, cfg)
	defer tun.Close()
	db, err := dialer.OpenPostgres(tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	query := func() error {
		var one int
		return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}
	if err := query(); err != nil {
		t.Fatal(err)
	}
	// With a parameter (see TestReplaceSessionPgxPoolCarriesOn). Without
	// one, pgx reports "conn closed", which its stdlib driver turns into
	// driver.ErrBadConn; dialer.OpenPostgres turns that into
	// dialer.ErrStatementInDoubt (TestSessionLostMidStatementNeverRunsTwice).
	slow := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(ctx, "SELECT pg_sleep($1)", 30)
		slow <- err
	}()
	waitUntil(t, 10*time.Second, "pg_sleep running", func() bool { return db.Stats().InUse == 1 })
	time.Sleep(100 * time.Millisecond)
	srv.CloseChannel(tun.Stats().SessionIDs[0], ssmtest.MaxDurationOutput)
	if err := <-slow; err == nil || errors.Is(err, io.EOF) || !errors.Is(err, tunnel.ErrSessionLost) {
		t.Fatalf("statement on the ended session: %v; want ErrSessionLost, never EOF", err)
	}
	failed := 0
	for ok := 0; ok < 5; {
		if err := query(); err != nil {
			if failed++; failed > 2 || !errors.Is(err, tunnel.ErrSessionLost) && !errors.Is(err, sql.ErrConnDone) {
				t.Fatalf("query after the ending (%d failed): %v", failed, err)
			}
			continue
		}
		ok++
	}
	if st := tun.Stats(); st.Replacements != 1 || tun.Err() != nil {
		t.Fatalf("Stats %+v, Err %v; want 1 replacement and the tunnel up", st, tun.Err())
	}
	for _, want := range []string{"level=WARN msg=\"tunnel session lost\"", "level=INFO msg=\"tunnel session replaced\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

// TestReplaceImpossibleFailsTunnel guards the bound: when no replacement
// can be opened (the agent never comes back), Done fires after
// Replace.Attempts tries and Err wraps both the loss and the last failure.
func TestReplaceImpossibleFailsTunnel(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	cfg.Replace = tunnel.ReplaceConfig{Enabled: true, Attempts: 3, Backoff: 20 * time.Millisecond}
	tun := open(t, cfg)
	defer tun.Close()
	echo := testenv.EchoServer(t)
	c := dial(t, tun, echo)
	srv.SetInstance(target, ssmtest.Instance{PingStatus: ssmtest.PingConnectionLost})
	srv.CloseChannel(tun.Stats().SessionIDs[0], "")
	// A dial while no session is ready waits for the replacement; it
	// fails with the tunnel.
	dialErr := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		c, err := tun.DialContext(context.Background(), "tcp", echo)
		if c != nil {
			c.Close()
		}
		dialErr <- err
	}()
	select {
	case <-tun.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("tunnel not down 30s after every replacement failed")
	}
	err := tun.Err()
	if !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, ssm.ErrSessionTerminated) {
		t.Fatalf("Err = %v; want ErrTunnelDown wrapping ssm.ErrSessionTerminated", err)
	}
	t.Logf("Err = %v", err)
	if err := <-dialErr; !errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("dial waiting for a replacement: %v; want ErrTunnelDown", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Read of a connection of the lost session: %v; want a loud error", err)
	}
	c.Close()
	tun.Close()
	waitNoSessions(t, srv)
}

// TestFailFastStaysDefault guards the default: without Replace, the end
// of one session of two fails the whole tunnel.
func TestFailFastStaysDefault(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	cfg.Sessions = 2
	tun := open(t, cfg)
	defer tun.Close()
	srv.CloseChannel(tun.Stats().SessionIDs[1], ssmtest.MaxDurationOutput)
	select {
	case <-tun.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel still up 10s after one of its sessions ended")
	}
	if err := tun.Err(); !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, ssm.ErrSessionTerminated) {
		t.Fatalf("Err = %v; want ErrTunnelDown wrapping ssm.ErrSessionTerminated", err)
	}
	if st := tun.Stats(); st.Replacements != 0 {
		t.Fatalf("Replacements = %d without Config.Replace", st.Replacements)
	}
}

// TestAutoSessionsOpenForLoadAndCloseWhenIdle guards Sessions:
// AutoSessions: downloads dialed one after the other open sessions up to
// Scale.Max, the next dials go to the least-loaded sessions, a session
// carrying an (idle) connection is never closed, and the extra sessions are
// closed once idle (the emulator's open-session counter drops back to 1).
func TestAutoSessionsOpenForLoadAndCloseWhenIdle(t *testing.T) {
	for _, mode := range []tunnel.Mode{tunnel.ModeSSH, tunnel.ModeDirect} {
		t.Run(mode.String(), func(t *testing.T) { testAutoSessions(t, mode) })
	}
}

func testAutoSessions(t *testing.T, mode tunnel.Mode) {
	verifyNoLeaks(t)
	echo := testenv.EchoServer(t)
	var (
		srv *ssmtest.Server
		cfg tunnel.Config
	)
	if mode == tunnel.ModeSSH {
		sshd := testenv.StartSSHD(t)
		srv = newEmulator(t, sshd.Addr)
		cfg = ssmConfig(srv, sshd)
	} else {
		srv = directEmulator(t, ssmtest.Config{})
		cfg = directTunnelConfig(srv)
		cfg.Direct.Destinations = []string{echo} // its session at Open
	}
	cfg.Sessions = tunnel.AutoSessions
	cfg.Scale = tunnel.ScaleConfig{Max: 4, Interval: 50 * time.Millisecond, IdleClose: 300 * time.Millisecond}
	tun := open(t, cfg)
	defer tun.Close()
	if n := srv.Stats().SessionsOpen; n != 1 {
		t.Fatalf("AutoSessions opened %d sessions at Open; want 1", n)
	}

	// Six connections, each busy with echo round trips, dialed one after
	// the other.
	stop := make(chan struct{})
	var conns []net.Conn
	var done []chan error
	busy := func() {
		c := dial(t, tun, echo)
		conns = append(conns, c)
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() {
			buf := make([]byte, 16<<10)
			for {
				select {
				case <-stop:
					ch <- nil
					return
				default:
				}
				if _, err := c.Write(buf); err != nil {
					ch <- err
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					ch <- err
					return
				}
			}
		}()
	}
	for range 6 {
		busy()
	}
	waitUntil(t, 20*time.Second, "4 sessions for 6 busy connections", func() bool {
		return srv.Stats().SessionsOpen == 4 && len(tun.Stats().SessionIDs) == 4
	})
	time.Sleep(200 * time.Millisecond)
	if st := srv.Stats(); st.SessionsOpen != 4 || st.SessionsStarted != 4 {
		t.Fatalf("emulator: %d open, %d started; want 4 and 4 (Scale.Max)", st.SessionsOpen, st.SessionsStarted)
	}
	// The next dials go to the least-loaded sessions: the new ones.
	sc0 := tun.Stats().SessionConns
	for range 3 {
		busy()
	}
	sc := tun.Stats().SessionConns
	if len(sc) != 4 || slices.Contains(sc, 0) {
		t.Fatalf("SessionConns = %v after 3 more dials (before: %v); want every session carrying a connection", sc, sc0)
	}
	t.Logf("SessionConns = %v, before the last 3 dials %v", sc, sc0)
	close(stop)
	for _, ch := range done {
		if err := <-ch; err != nil {
			t.Fatalf("echo: %v", err)
		}
	}
	// The connections are idle now, but open: no session is closed.
	time.Sleep(3 * cfg.Scale.IdleClose)
	if n := srv.Stats().SessionsOpen; n != 4 {
		t.Fatalf("%d sessions open while each carries a connection; want 4", n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitUntil(t, 10*time.Second, "extra sessions closed when idle", func() bool { return srv.Stats().SessionsOpen == 1 })
	st := tun.Stats()
	if st.SessionsOpened != 4 || st.SessionsClosedIdle != 3 || len(st.SessionIDs) != 1 {
		t.Fatalf("Stats = %+v; want 4 opened, 3 closed idle, 1 left", st)
	}
	if st.TotalConns != 9 {
		t.Fatalf("TotalConns = %d after closing sessions; want 9 (counters of closed sessions kept)", st.TotalConns)
	}
	// The last session stays, however long it idles, and still works.
	time.Sleep(3 * cfg.Scale.IdleClose)
	if n := srv.Stats().SessionsOpen; n != 1 {
		t.Fatalf("%d sessions open; want the last one kept", n)
	}
	c := dial(t, tun, echo)
	echoRoundTrip(t, c, 1000)
	c.Close()
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitNoSessions(t, srv)
}

// TestScaleConfigErrorsAreTyped guards the checks of Sessions, Scale and
// Replace: bad values fail Open before any network call.
func TestScaleConfigErrorsAreTyped(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*tunnel.Config)
	}{
		{"Sessions", func(c *tunnel.Config) { c.Sessions = -2 }},
		{"Scale.Max", func(c *tunnel.Config) { c.Sessions, c.Scale.Max = 4, 2 }},
		{"Scale.Max", func(c *tunnel.Config) { c.Scale.Max = tunnel.MaxSessions + 1 }},
		{"Scale", func(c *tunnel.Config) { c.Scale.Max, c.Scale.Interval = 4, -time.Second }},
		{"Replace", func(c *tunnel.Config) { c.Replace = tunnel.ReplaceConfig{Enabled: true, Attempts: -1} }},
	} {
		cfg := tunnel.Config{SSM: ssm.Config{Target: target, AWS: aws.Config{Region: "us-east-1"}}}
		tc.mod(&cfg)
		_, err := tunnel.Open(context.Background(), cfg)
		var ce *tunnel.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, tunnel.ErrInvalidConfig) {
			t.Errorf("%s: Open = %v; want a *ConfigError for %s", tc.field, err, tc.field)
		}
	}
}

// TestOpeningSessionDoesNotBlockDialsToIdleSessions guards the placement
// rule: while the pool opens a session (here one that hangs), a dial that
// a ready session without busy connections can take goes there at once,
// and a dial that waited for the hanging session falls back to a ready one
// after Scale.DialWait.
func TestOpeningSessionDoesNotBlockDialsToIdleSessions(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	cfg := directConfig(sshd)
	plain := cfg.DialBastion
	var calls atomic.Int32
	cfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
		if calls.Add(1) > 2 { // the sessions of Open work; later ones hang
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return plain(ctx)
	}
	cfg.Sessions = 2
	cfg.Scale = tunnel.ScaleConfig{Max: 3, Interval: time.Minute, DialWait: 5 * time.Second}
	tun := open(t, cfg)
	defer tun.Close()
	c1 := dial(t, tun, echo) // busy: dialed less than Interval ago
	dial(t, tun, echo)
	if sc := tun.Stats().SessionConns; !slices.Equal(sc, []int{1, 1}) {
		t.Fatalf("SessionConns = %v; want [1 1]", sc)
	}
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := tun.DialContext(ctx, "tcp", echo) // both busy: waits for the third session
		if c != nil {
			c.Close()
		}
		waited <- err
	}()
	waitUntil(t, 5*time.Second, "the third session opening", func() bool { return calls.Load() == 3 })
	c1.Close()
	c4 := dial(t, tun, echo) // the first session carries nothing now
	// c4 did not wait: the dial that waits for the opening session (up
	// to DialWait) still does.
	select {
	case err := <-waited:
		t.Fatalf("the dial waiting for the opening session returned before DialWait: %v", err)
	default:
	}
	echoRoundTrip(t, c4, 100)
	if err := <-waited; err != nil {
		t.Fatalf("the dial that waited for the hanging session: %v; want it on a ready session after DialWait", err)
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("Close with a session opening: %v", err)
	}
}

// TestAutoSessionsScaleUpFailureKeepsTunnel guards the rule that a failed
// scale-up (here the SSM API throttles StartSession) never fails the
// tunnel: the connections share the sessions that exist, and the pool
// tries again later, once the API answers.
func TestAutoSessionsScaleUpFailureKeepsTunnel(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	cfg := ssmConfig(srv, sshd)
	cfg.Sessions = tunnel.AutoSessions
	cfg.Scale = tunnel.ScaleConfig{Max: 3, Interval: 50 * time.Millisecond}
	tun := open(t, cfg)
	defer tun.Close()
	srv.SetAPIFault(ssmtest.APIFault{Operation: "StartSession", Code: "ThrottlingException"})
	stop := make(chan struct{})
	errs := make(chan error, 3)
	for range 3 {
		c := dial(t, tun, echo)
		go func() {
			buf := make([]byte, 4<<10)
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	waitUntil(t, 10*time.Second, "scale-up attempts refused by the API", func() bool { return srv.Stats().APIErrors >= 2 })
	if err := tun.Err(); err != nil {
		t.Fatalf("a failed scale-up failed the tunnel: %v", err)
	}
	if st := tun.Stats(); st.SessionsOpened != 1 || !slices.Equal(st.SessionConns, []int{3}) {
		t.Fatalf("Stats = %+v; want the 3 connections on the one session", st)
	}
	srv.ClearAPIFault("StartSession")
	waitUntil(t, 20*time.Second, "the pool opening sessions once the API answers", func() bool { return srv.Stats().SessionsOpen == 3 })
	close(stop)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("echo: %v", err)
		}
	}
}
