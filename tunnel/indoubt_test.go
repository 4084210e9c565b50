package tunnel_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// TestSessionLostMidStatementNeverRunsTwice guards against silent double
// execution and hidden failures when a session ends (Config.Replace) while
// an INSERT runs on it: the INSERT sleeps on the server (pg_sleep / SLEEP in
// its SELECT), the session is ended while it sleeps, and the table then
// holds exactly what the caller was told: a success means one row; a
// failure means zero or one row (the server may finish a statement whose
// client is gone: inherent, documented), never two. Before dialer's
// ErrStatementInDoubt, pgx's stdlib turned the lost connection of an INSERT
// without arguments into driver.ErrBadConn and database/sql ran it again
// on the replacement session: two rows, and success reported.
func TestSessionLostMidStatementNeverRunsTwice(t *testing.T) {
	type client struct {
		name string
		sql  bool // through database/sql (whose pool retries ErrBadConn)
		// simple: a statement without arguments goes by pgx's simple
		// protocol, whose lost connection pgx's stdlib calls ErrBadConn
		// (dialer makes it ErrStatementInDoubt).
		simple bool
		mysql  bool
		// insert runs one INSERT of table through tun and returns its error.
		insert func(t *testing.T, ctx context.Context, tun *tunnel.Tunnel, table, kind string, pinged chan<- struct{}, proceed <-chan struct{}) error
	}
	viaSQL := func(db *sql.DB, q string, args []any, pinged chan<- struct{}, proceed <-chan struct{}) error {
		db.SetMaxOpenConns(2)
		if err := db.Ping(); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		close(pinged)
		<-proceed
		_, err := db.Exec(q, args...)
		return err
	}
	clients := []client{
		{name: "pgx-stdlib", sql: true, simple: true, insert: func(t *testing.T, ctx context.Context, tun *tunnel.Tunnel, table, kind string, pinged chan<- struct{}, proceed <-chan struct{}) error {
			db, err := dialer.OpenPostgres(tun, testenv.PostgresDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			switch kind {
			case withParams:
				return viaSQL(db, "INSERT INTO "+table+" SELECT $1::int FROM pg_sleep(1)", []any{1}, pinged, proceed)
			case script:
				return viaSQL(db, scriptSQL(table), nil, pinged, proceed)
			}
			return viaSQL(db, "INSERT INTO "+table+" SELECT 1 FROM pg_sleep(1)", nil, pinged, proceed)
		}},
		{name: "pgx-stdlib-prepared", sql: true, insert: func(t *testing.T, ctx context.Context, tun *tunnel.Tunnel, table, kind string, pinged chan<- struct{}, proceed <-chan struct{}) error {
			db, err := dialer.OpenPostgres(tun, testenv.PostgresDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(2)
			q, args := "INSERT INTO "+table+" SELECT 1 FROM pg_sleep(1)", []any(nil)
			switch kind {
			case withParams:
				q, args = "INSERT INTO "+table+" SELECT $1::int FROM pg_sleep(1)", []any{1}
			case script:
				q = scriptSQL(table)
			}
			st, err := db.PrepareContext(ctx, q)
			if err != nil {
				return fmt.Errorf("prepare: %w", err)
			}
			defer st.Close()
			close(pinged)
			<-proceed
			_, err = st.ExecContext(ctx, args...)
			return err
		}},
		{name: "pgxpool", insert: func(t *testing.T, ctx context.Context, tun *tunnel.Tunnel, table, kind string, pinged chan<- struct{}, proceed <-chan struct{}) error {
			cfg, err := dialer.ParsePgxPool(tun, testenv.PostgresDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			close(pinged)
			<-proceed
			switch kind {
			case withParams:
				_, err = pool.Exec(ctx, "INSERT INTO "+table+" SELECT $1::int FROM pg_sleep(1)", 1)
			case script:
				_, err = pool.Exec(ctx, scriptSQL(table))
			default:
				_, err = pool.Exec(ctx, "INSERT INTO "+table+" SELECT 1 FROM pg_sleep(1)")
			}
			return err
		}},
		{name: "mysql", sql: true, mysql: true, insert: func(t *testing.T, ctx context.Context, tun *tunnel.Tunnel, table, kind string, pinged chan<- struct{}, proceed <-chan struct{}) error {
			db, err := dialer.OpenMySQL(tun, testenv.MySQLDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if kind == withParams {
				return viaSQL(db, "INSERT INTO "+table+" SELECT ? FROM (SELECT SLEEP(1)) s", []any{1}, pinged, proceed)
			}
			return viaSQL(db, "INSERT INTO "+table+" SELECT 1 FROM (SELECT SLEEP(1)) s", nil, pinged, proceed)
		}},
	}
	for _, mode := range []tunnel.Mode{tunnel.ModeSSH, tunnel.ModeDirect} {
		for _, c := range clients {
			for _, kind := range []string{withoutParams, withParams, script} {
				if kind == script && (c.mysql || c.name == "pgx-stdlib-prepared") {
					continue // multiStatements is off by default; PostgreSQL prepares one statement
				}
				for _, running := range []bool{true, false} {
					name := mode.String() + "/" + c.name + "/" + kind
					if running {
						name += "/lost-while-running"
					} else {
						name += "/lost-before-sent"
					}
					t.Run(name, func(t *testing.T) {
						testSessionLostMidStatement(t, mode, kind, c.sql, c.simple, c.mysql, running, c.insert)
					})
				}
			}
		}
	}
}

// testSessionLostMidStatement runs one INSERT whose session ends while it
// runs on the server (running) or while its connection sits idle in the
// pool just before the INSERT is sent (!running).
func testSessionLostMidStatement(t *testing.T, mode tunnel.Mode, kind string, viaSQL, simple, mysql, running bool,
	insert func(*testing.T, context.Context, *tunnel.Tunnel, string, string, chan<- struct{}, <-chan struct{}) error) {
	// The direct connection that checks the table (not through the tunnel).
	var local *sql.DB
	if mysql {
		db, err := sql.Open("mysql", testenv.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		local = db
	} else {
		local = stdlib.OpenDB(*mustParsePgx(t))
	}
	defer local.Close()
	table := fmt.Sprintf("indoubt_%d", time.Now().UnixNano())
	if _, err := local.Exec("CREATE TABLE " + table + " (v int)"); err != nil {
		t.Fatal(err)
	}
	defer local.Exec("DROP TABLE " + table)

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
	cfg.Replace = tunnel.ReplaceConfig{Enabled: true, Backoff: 50 * time.Millisecond}
	cfg.SSM.CloseTimeout = 2 * time.Second
	tun := open(t, cfg)
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pinged, proceed := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- insert(t, ctx, tun, table, kind, pinged, proceed) }()
	select {
	case <-pinged:
	case err := <-done:
		t.Fatalf("before the INSERT: %v", err)
	}
	activity := "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%INSERT INTO " + table + " %' AND state = 'active' AND pid <> pg_backend_pid()"
	if mysql {
		activity = "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO " + table + "%'"
	}
	runningNow := func() int {
		var n int
		if err := local.QueryRow(activity).Scan(&n); err != nil {
			t.Fatalf("activity: %v", err)
		}
		return n
	}
	lost := tun.Stats().SessionIDs[0]
	if running {
		// End the session once the INSERT sleeps on the server.
		close(proceed)
		waitUntil(t, 10*time.Second, "the INSERT running on the server", func() bool { return runningNow() == 1 })
		if kind == script {
			waitUntil(t, 10*time.Second, "the script's INSERT committed", func() bool { return count(t, local, table) == 1 })
		}
		srv.CloseChannel(lost, ssmtest.MaxDurationOutput)
	} else {
		// End the session under the idle connection, wait for the
		// replacement, then send the INSERT on the dead connection.
		srv.CloseChannel(lost, ssmtest.MaxDurationOutput)
		waitUntil(t, 20*time.Second, "the replacement session", func() bool { return tun.Stats().Replacements == 1 })
		close(proceed)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the INSERT did not return within 30s of its session's end")
	}
	// Let the server finish whatever it still runs (a retry included).
	waitUntil(t, 10*time.Second, "the server done with the INSERT", func() bool { return runningNow() == 0 })
	rows := count(t, local, table)
	t.Logf("caller told: %v; rows: %d", err, rows)
	switch {
	case rows > 1:
		t.Fatalf("%d rows after one INSERT (caller told %v): the statement ran twice", rows, err)
	case err == nil && rows != 1:
		t.Fatalf("INSERT reported success but the table has %d rows", rows)
	case err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		t.Fatalf("INSERT failed with %v; want a loud error, never EOF", err)
	}
	switch {
	case running && err == nil:
		// The statement cannot have succeeded on the session that
		// ended: a success here is a re-run on another one (rows == 1
		// only because the server did not finish the first).
		t.Fatalf("INSERT reported success although its session ended while it ran (rows %d): a driver retry", rows)
	case running && viaSQL && !mysql && !errors.Is(err, tunnel.ErrSessionLost):
		t.Fatalf("INSERT on the ended session: %v; want ErrSessionLost (dialer restores it)", err)
	case running && simple && kind != withParams && !errors.Is(err, dialer.ErrStatementInDoubt):
		t.Fatalf("INSERT on the ended session: %v; want dialer.ErrStatementInDoubt", err)
	case !running && err != nil && rows != 0:
		t.Fatalf("INSERT never sent failed with %v but the table has %d rows", err, rows)
	case !running && viaSQL && err != nil:
		// Nothing of it was written: database/sql must take a new
		// connection (on the replacement) and run it once.
		t.Fatalf("INSERT on a dead idle connection: %v; want database/sql to run it on a new connection", err)
	case !running && err != nil && !errors.Is(err, tunnel.ErrSessionLost):
		t.Fatalf("INSERT on a dead idle connection: %v; want ErrSessionLost", err)
	}
}

// The statements each subtest runs.
const (
	withoutParams = "insert-without-params"
	withParams    = "insert-with-params"
	script        = "script" // commits its INSERT, then sleeps: a re-run is a second row
)

// scriptSQL is an ETL-style script of several statements (simple protocol,
// no parameters) that commits an INSERT and goes on working.
func scriptSQL(table string) string {
	return "BEGIN; INSERT INTO " + table + " SELECT 1; COMMIT; SELECT pg_sleep(1)"
}

// count returns the rows of table, read without the tunnel.
func count(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func mustParsePgx(t *testing.T) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
