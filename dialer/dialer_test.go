package dialer_test

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const target = "i-0123456789abcdef0"

var seq atomic.Int64

// table returns a table name unique to this test run.
func table(prefix string) string {
	return fmt.Sprintf("jl_%s_%d_%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

// stack opens the full stack: SSM emulator (unpaced) → real sshd →
// tunnel. It checks at cleanup that the emulator has no session left.
func stack(t *testing.T) (*tunnel.Tunnel, *ssmtest.Server) {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr}, Pacing: ssmtest.Unpaced})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target},
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			KnownHostsFile: sshd.WriteKnownHosts(true, target),
		},
	})
	if err != nil {
		t.Fatalf("tunnel.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("tunnel.Close: %v", err)
		}
		if n := srv.Stats().SessionsOpen; n != 0 {
			t.Errorf("emulator has %d sessions open after Close", n)
		}
	})
	return tun, srv
}

// bounded runs f with a fresh 30s context, so that cleanup over a stalled
// tunnel fails instead of hanging the test binary.
func bounded(f func(context.Context)) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f(c)
}

// ctx returns a test-bounded context.
func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func openMySQL(t *testing.T, tun *tunnel.Tunnel) *sql.DB {
	t.Helper()
	db, err := dialer.OpenMySQL(tun, testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(t *testing.T, tun *tunnel.Tunnel) *sql.DB {
	t.Helper()
	db, err := dialer.OpenPostgres(tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// roundTrip runs DDL, INSERT and SELECT on db and checks what comes back.
func roundTrip(t *testing.T, db *sql.DB, ph func(int) string) {
	t.Helper()
	c := ctx(t, 30*time.Second)
	tbl := table("rt")
	if _, err := db.ExecContext(c, "CREATE TABLE "+tbl+" (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatalf("CREATE TABLE: %v", err)
	}
	defer bounded(func(c context.Context) { db.ExecContext(c, "DROP TABLE IF EXISTS "+tbl) })
	want := map[int]string{1: "alpha", 2: "beta ü", 3: strings.Repeat("x", 64)}
	for id, name := range want {
		if _, err := db.ExecContext(c, "INSERT INTO "+tbl+" (id, name) VALUES ("+ph(1)+", "+ph(2)+")", id, name); err != nil {
			t.Fatalf("INSERT: %v", err)
		}
	}
	rows, err := db.QueryContext(c, "SELECT id, name FROM "+tbl+" ORDER BY id")
	if err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	defer rows.Close()
	got := map[int]string{}
	for rows.Next() {
		var id int
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		got[id] = name
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SELECT returned %v; want %v", got, want)
	}
}

func mysqlPH(int) string      { return "?" }
func postgresPH(i int) string { return fmt.Sprintf("$%d", i) }

func TestMySQLRoundTripThroughSSMFails(t *testing.T) { eachMode(t, testMySQLRoundTrip) }

func testMySQLRoundTrip(t *testing.T, tun *tunnel.Tunnel) {
	roundTrip(t, openMySQL(t, tun), mysqlPH)
	if st := tun.Stats(); st.TotalConns == 0 || st.BytesReceived == 0 {
		t.Fatalf("MySQL traffic did not go through the tunnel: %+v", st)
	}
}

func TestPostgresRoundTripThroughSSMFails(t *testing.T) { eachMode(t, testPostgresRoundTrip) }

func testPostgresRoundTrip(t *testing.T, tun *tunnel.Tunnel) {
	dsn := testenv.PostgresDSN(t)
	t.Run("database/sql", func(t *testing.T) {
		roundTrip(t, openPostgres(t, tun), postgresPH)
	})
	t.Run("pgx.Conn", func(t *testing.T) {
		c := ctx(t, 30*time.Second)
		conn, err := dialer.ConnectPgx(c, tun, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer bounded(func(c context.Context) { conn.Close(c) })
		tbl := table("pgx")
		if _, err := conn.Exec(c, "CREATE TABLE "+tbl+" (id int, v text)"); err != nil {
			t.Fatal(err)
		}
		defer bounded(func(c context.Context) { conn.Exec(c, "DROP TABLE "+tbl) })
		if _, err := conn.Exec(c, "INSERT INTO "+tbl+" VALUES ($1, $2)", 7, "seven"); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := conn.QueryRow(c, "SELECT v FROM "+tbl+" WHERE id = $1", 7).Scan(&v); err != nil || v != "seven" {
			t.Fatalf("SELECT = %q, %v", v, err)
		}
	})
	t.Run("pgxpool", func(t *testing.T) {
		c := ctx(t, 30*time.Second)
		cfg, err := dialer.ParsePgxPool(tun, dsn)
		if err != nil {
			t.Fatal(err)
		}
		pool, err := pgxpool.NewWithConfig(c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var n int
		if err := pool.QueryRow(c, "SELECT count(*) FROM generate_series(1, 1000)").Scan(&n); err != nil || n != 1000 {
			t.Fatalf("count = %d, %v", n, err)
		}
	})
}

func TestPostgresHostResolvedLocally(t *testing.T) {
	// "localhost" is resolved by the SSH server, not here: the LookupFunc
	// must hand the name through unchanged.
	tun, _ := stack(t)
	cfg, err := dialer.ParsePgx(tun, "postgres://postgres@localhost:5432/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	var dialed []string
	var mu sync.Mutex
	inner := cfg.DialFunc
	cfg.DialFunc = func(c context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return inner(c, network, addr)
	}
	testenv.PostgresAddr(t) // skip unless PostgreSQL is up
	conn, err := pgx.ConnectConfig(ctx(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	bounded(func(c context.Context) { conn.Close(c) })
	if len(dialed) == 0 || dialed[0] != "localhost:5432" {
		t.Fatalf("dialed %v; want localhost:5432 (unresolved)", dialed)
	}
}

func TestPostgresCopy100kRowsCorrupted(t *testing.T) { eachMode(t, testPostgresCopy100k) }

func testPostgresCopy100k(t *testing.T, tun *tunnel.Tunnel) {
	c := ctx(t, 120*time.Second)
	conn, err := dialer.ConnectPgx(c, tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	tbl := table("copy")
	if _, err := conn.Exec(c, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, n bigint NOT NULL, v text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Exec(c, "DROP TABLE "+tbl) })

	const rows = 100_000
	var sum int64
	h := md5.New()
	src := make([][]any, rows)
	for i := range rows {
		n := int64(i)*7919 - 3
		v := fmt.Sprintf("row-%d-%x", i, i*2654435761)
		sum += n
		h.Write([]byte(v))
		src[i] = []any{int32(i), n, v}
	}
	wantMD5 := hex.EncodeToString(h.Sum(nil))
	copied, err := conn.CopyFrom(c, pgx.Identifier{tbl}, []string{"id", "n", "v"}, pgx.CopyFromRows(src))
	if err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if copied != rows {
		t.Fatalf("CopyFrom reported %d rows; want %d", copied, rows)
	}
	var count, gotSum int64
	var gotMD5 string
	err = conn.QueryRow(c, "SELECT count(*), sum(n)::bigint, md5(string_agg(v, '' ORDER BY id)) FROM "+tbl).Scan(&count, &gotSum, &gotMD5)
	if err != nil {
		t.Fatal(err)
	}
	if count != rows || gotSum != sum || gotMD5 != wantMD5 {
		t.Fatalf("server has count=%d sum=%d md5=%s; client sent count=%d sum=%d md5=%s", count, gotSum, gotMD5, rows, sum, wantMD5)
	}
}

func TestMySQLBulkInsert100kRowsCorrupted(t *testing.T) { eachMode(t, testMySQLBulkInsert100k) }

func testMySQLBulkInsert100k(t *testing.T, tun *tunnel.Tunnel) {
	db := openMySQL(t, tun)
	c := ctx(t, 120*time.Second)
	tbl := table("bulk")
	if _, err := db.ExecContext(c, "CREATE TABLE "+tbl+" (id INT PRIMARY KEY, n BIGINT NOT NULL, v VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { db.ExecContext(c, "DROP TABLE IF EXISTS "+tbl) })

	const rows, batch = 100_000, 1000
	var sum int64
	var crc uint64
	tx, err := db.BeginTx(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for start := 0; start < rows; start += batch {
		var q strings.Builder
		q.WriteString("INSERT INTO " + tbl + " (id, n, v) VALUES ")
		args := make([]any, 0, 3*batch)
		for i := start; i < start+batch; i++ {
			if i > start {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?)")
			n := int64(i)*7919 - 3
			v := fmt.Sprintf("row-%d-%x", i, i*2654435761)
			sum += n
			crc += uint64(crc32.ChecksumIEEE([]byte(fmt.Sprintf("%d:%s", i, v))))
			args = append(args, i, n, v)
		}
		if _, err := tx.ExecContext(c, q.String(), args...); err != nil {
			tx.Rollback()
			t.Fatalf("INSERT batch at %d: %v", start, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var count, gotSum int64
	var gotCRC uint64
	err = db.QueryRowContext(c, "SELECT COUNT(*), SUM(n), SUM(CRC32(CONCAT(id, ':', v))) FROM "+tbl).Scan(&count, &gotSum, &gotCRC)
	if err != nil {
		t.Fatal(err)
	}
	if count != rows || gotSum != sum || gotCRC != crc {
		t.Fatalf("server has count=%d sum=%d crc=%d; client sent count=%d sum=%d crc=%d", count, gotSum, gotCRC, rows, sum, crc)
	}
}

func Test64ConcurrentConnsOnOneTunnelInterfere(t *testing.T) { eachMode(t, test64ConcurrentConns) }

func test64ConcurrentConns(t *testing.T, tun *tunnel.Tunnel) {
	db := openMySQL(t, tun)
	const n = 64
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	c := ctx(t, 60*time.Second)

	// Hold 64 connections at once, then use them all concurrently.
	conns := make([]*sql.Conn, n)
	for i := range conns {
		conn, err := db.Conn(c)
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		defer conn.Close()
		conns[i] = conn
	}
	if open := tun.Stats().OpenConns; open < n {
		t.Fatalf("tunnel has %d open connections; want at least %d", open, n)
	}
	ids := make([]int64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, conn := range conns {
		wg.Go(func() {
			var echo string
			want := fmt.Sprintf("conn-%d-%s", i, strings.Repeat("z", i*100))
			if err := conn.QueryRowContext(c, "SELECT CONNECTION_ID(), ?", want).Scan(&ids[i], &echo); err != nil {
				errs <- err
				return
			}
			if echo != want {
				errs <- fmt.Errorf("conn %d got %q back", i, echo)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int64]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct server connections; want %d", len(seen), n)
	}
}

// TestPostgresCancelLeavesQueryRunning: cancelling the context of a
// running query must stop it on the server, which takes pgx's cancel
// request going through the tunnel (to conn.RemoteAddr()).
func TestPostgresCancelLeavesQueryRunning(t *testing.T) {
	tun, _ := stack(t)
	dsn := testenv.PostgresDSN(t)
	// The observer connects directly: it only watches pg_stat_activity.
	observer, err := pgx.Connect(ctx(t, 30*time.Second), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { observer.Close(c) })

	run := func(t *testing.T, query func(context.Context, string) error) {
		marker := table("cancel")
		q := "SELECT pg_sleep(30) /* " + marker + " */"
		qctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		before := tun.Stats().TotalConns
		done := make(chan error, 1)
		go func() { done <- query(qctx, q) }()

		active := func() (int, error) {
			var n int
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := observer.QueryRow(c,
				"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", marker).Scan(&n)
			return n, err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := active()
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("query never showed up as active in pg_stat_activity")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancelled := time.Now()
		cancel()
		for {
			n, err := active()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Since(cancelled) > 2*time.Second {
				t.Fatalf("query still running on the server %v after cancel", time.Since(cancelled))
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("query ended on the server %v after cancel", time.Since(cancelled).Round(time.Millisecond))
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("cancelled query returned no error")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("cancelled query did not return")
		}
		if after := tun.Stats().TotalConns; after <= before {
			t.Fatalf("no cancel connection went through the tunnel (TotalConns %d → %d)", before, after)
		}
	}
	t.Run("pgx.Conn", func(t *testing.T) {
		conn, err := dialer.ConnectPgx(ctx(t, 30*time.Second), tun, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer bounded(func(c context.Context) { conn.Close(c) })
		run(t, func(c context.Context, q string) error { _, err := conn.Exec(c, q); return err })
	})
	t.Run("database/sql", func(t *testing.T) {
		db := openPostgres(t, tun)
		if err := db.PingContext(ctx(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		run(t, func(c context.Context, q string) error { _, err := db.ExecContext(c, q); return err })
	})
}

func TestTunnelClosedLeavesDriverHanging(t *testing.T) {
	tun, _ := stack(t)
	db := openMySQL(t, tun)
	if err := db.PingContext(ctx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	tun.Close()
	db.SetMaxIdleConns(0) // drop the pooled connection, which is dead
	start := time.Now()
	err := db.PingContext(ctx(t, 30*time.Second))
	if err == nil {
		t.Fatal("Ping through a closed tunnel succeeded")
	}
	if !errors.Is(err, tunnel.ErrClosed) {
		t.Logf("Ping error: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Ping through a closed tunnel took %v", d)
	}
}

// compression returns the server's view of the connection's compression
// ("ON" or "OFF").
func compression(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name, value string
	var err error
	bounded(func(ctx context.Context) {
		err = db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Compression'").Scan(&name, &value)
	})
	if err != nil {
		t.Fatal(err)
	}
	return value
}

func TestMySQLThroughTunnelNotCompressed(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	tun, _ := stack(t)
	db, err := dialer.OpenMySQL(tun, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := compression(t, db); got != "ON" {
		t.Fatalf("Compression = %q through the tunnel, want ON by default", got)
	}
}

func TestMySQLCompressionOptOutIgnored(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	tun, _ := stack(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	for name, open := range map[string]func() (*sql.DB, error){
		"WithoutCompression": func() (*sql.DB, error) { return dialer.OpenMySQL(tun, dsn, dialer.WithoutCompression()) },
		"DSN compress=false": func() (*sql.DB, error) { return dialer.OpenMySQL(tun, dsn+sep+"compress=false") },
	} {
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if got := compression(t, db); got != "OFF" {
			t.Errorf("%s: Compression = %q, want OFF", name, got)
		}
		db.Close()
	}
}
