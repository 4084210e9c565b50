package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/tunnel"
)

// benchRows is the row count of the database rows (the figure is
// for 1 M rows; 100 k keep one realistic run under a minute: the rate is
// the same).
const benchRows = 100_000

// countingDialer counts the bytes read from the connections it dials.
type countingDialer struct {
	d    dialer.ContextDialer
	read atomic.Int64
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, n: &c.read}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

type dbRow struct {
	name    string
	seconds float64
	rowsPS  float64
	wireMiB float64 // bytes read by the driver
	wireBPS float64 // wire bytes per second, for the share of the cap
}

// mysqlTable creates a table of benchRows ETL-like rows directly (not
// through the tunnel) and returns its name and a drop function.
func mysqlTable(tb testing.TB) (dsn, name string, drop func()) {
	dsn = testenv.MySQLDSN(tb)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	name = fmt.Sprintf("jl_bench_%d", time.Now().UnixNano()%1e9)
	ctx := context.Background()
	for _, q := range []string{
		"CREATE TABLE " + name + " (id INT PRIMARY KEY, email VARCHAR(64), amount DECIMAL(12,2), created DATETIME, status VARCHAR(16))",
		"SET SESSION max_recursive_iterations = 10000000",
		fmt.Sprintf(`INSERT INTO %s WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM s WHERE n < %d)
			SELECT n, CONCAT('customer', n, '@example.com'), (n * 7919) %% 100000 / 100, '2026-01-01' + INTERVAL n MINUTE,
			ELT(1 + n %% 3, 'paid', 'open', 'refunded') FROM s`, name, benchRows),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			tb.Fatal(err)
		}
	}
	return dsn, name, func() {
		db, err := sql.Open("mysql", dsn)
		if err == nil {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + name)
			db.Close()
		}
	}
}

// mysqlScan reads every row of table through d.
func mysqlScan(tb testing.TB, d dialer.ContextDialer, dsn, table string, opts ...dialer.Option) dbRow {
	cd := &countingDialer{d: d}
	db, err := dialer.OpenMySQL(cd, dsn, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err != nil {
		tb.Fatal(err)
	}
	r0, t0 := cd.read.Load(), time.Now()
	rows, err := db.Query("SELECT id, email, amount, created, status FROM " + table)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	var id int
	var email, amount, created, status []byte
	for rows.Next() {
		if err := rows.Scan(&id, &email, &amount, &created, &status); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	el := time.Since(t0).Seconds()
	if n != benchRows {
		tb.Fatalf("read %d rows, want %d", n, benchRows)
	}
	wire := float64(cd.read.Load() - r0)
	return dbRow{seconds: el, rowsPS: float64(n) / el, wireMiB: wire / mib, wireBPS: wire / el}
}

// pgCopy runs COPY (ETL-like rows) TO STDOUT through d.
func pgCopy(tb testing.TB, d dialer.ContextDialer) dbRow {
	cd := &countingDialer{d: d}
	ctx := context.Background()
	conn, err := dialer.ConnectPgx(ctx, cd, testenv.PostgresDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	r0, t0 := cd.read.Load(), time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, fmt.Sprintf(`COPY (SELECT n, 'customer' || n || '@example.com', ((n * 7919) %% 100000) / 100.0,
		timestamp '2026-01-01' + n * interval '1 minute', (ARRAY['paid','open','refunded'])[1 + n %% 3]
		FROM generate_series(1, %d) n) TO STDOUT`, benchRows))
	if err != nil {
		tb.Fatal(err)
	}
	el := time.Since(t0).Seconds()
	if tag.RowsAffected() != benchRows {
		tb.Fatalf("COPY moved %d rows, want %d", tag.RowsAffected(), benchRows)
	}
	wire := float64(cd.read.Load() - r0)
	return dbRow{seconds: el, rowsPS: benchRows / el, wireMiB: wire / mib, wireBPS: wire / el}
}

// idleHeap opens n idle pgx connections through d and reports the heap
// and goroutines each costs (after GC), then closes them.
func idleHeap(tb testing.TB, d dialer.ContextDialer, n int) (heapKiB, goroutines float64) {
	ctx := context.Background()
	dsn := testenv.PostgresDSN(tb)
	h0, g0 := heapNow()
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := dialer.ConnectPgx(ctx, d, dsn)
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.Ping(ctx); err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
	}
	h1, g1 := heapNow()
	for _, c := range conns {
		c.Close(ctx)
	}
	return float64(h1-h0) / 1024 / float64(n), float64(g1-g0) / float64(n)
}

func heapNow() (heap uint64, goroutines int) {
	time.Sleep(50 * time.Millisecond) // let pumps settle
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

// openToFirstQuery times tunnel.Open + pgx connect + SELECT 1.
func openToFirstQuery(tb testing.TB, cfg tunnel.Config, dsn string) time.Duration {
	ctx := context.Background()
	t0 := time.Now()
	tun, err := tunnel.Open(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	defer tun.Close()
	conn, err := dialer.ConnectPgx(ctx, tun, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		tb.Fatal(err)
	}
	return time.Since(t0)
}
