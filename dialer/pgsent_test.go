package dialer_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
)

// killDialer dials TCP and keeps the connections, so a test can cut them
// under the driver.
type killDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *killDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

func (d *killDialer) cutAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

// TestOpenPostgresRawBroken guards the documented way to reach pgx from a
// database/sql connection of OpenPostgres: (*dialer.PgConn).Conn.Conn().
func TestOpenPostgresRawBroken(t *testing.T) {
	db, err := dialer.OpenPostgres(&killDialer{}, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pid uint32
	if err := conn.Raw(func(dc any) error {
		pc, ok := dc.(*dialer.PgConn)
		if !ok {
			t.Fatalf("driver conn is %T; want *dialer.PgConn", dc)
		}
		pid = pc.Conn.Conn().PgConn().PID()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var got uint32
	if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&got); err != nil || got != pid {
		t.Fatalf("pg_backend_pid() = %d, %v; Raw's pgx conn has pid %d", got, err, pid)
	}
}

// TestOpenPostgresRetryOfUnsentStatementLost guards the other half of
// ErrStatementInDoubt: a statement whose connection was cut before a byte of
// it was written is still retried by database/sql on a new connection
// (driver.ErrBadConn is kept), so it runs exactly once and succeeds.
func TestOpenPostgresRetryOfUnsentStatementLost(t *testing.T) {
	d := &killDialer{}
	db, err := dialer.OpenPostgres(d, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	d.cutAll() // the pooled connection's writes now fail with 0 bytes written
	var one int
	err = db.QueryRow("SELECT 1").Scan(&one)
	if err != nil || one != 1 {
		t.Fatalf("query on a cut idle connection: %v; want database/sql to retry it on a new one", err)
	}
	if errors.Is(err, dialer.ErrStatementInDoubt) {
		t.Fatal("unsent statement reported in doubt")
	}
}

// BenchmarkOpenPostgresInDoubtGuard measures what the ErrStatementInDoubt
// guard (a byte counter on the net.Conn, a wrapper on the driver conn)
// costs per statement: stdlib.OpenDB and dialer.OpenPostgres over the same
// dialer, one "SELECT 1" round trip per op to the local PostgreSQL. Compare
// the two sub-benchmarks of one run.
func BenchmarkOpenPostgresInDoubtGuard(b *testing.B) {
	dsn := testenv.PostgresDSN(b)
	open := map[string]func() *sql.DB{
		"stdlib": func() *sql.DB {
			cfg, err := dialer.ParsePgx(&killDialer{}, dsn)
			if err != nil {
				b.Fatal(err)
			}
			return stdlib.OpenDB(*cfg)
		},
		"dialer": func() *sql.DB {
			db, err := dialer.OpenPostgres(&killDialer{}, dsn)
			if err != nil {
				b.Fatal(err)
			}
			return db
		},
	}
	for _, name := range []string{"stdlib", "dialer", "stdlib", "dialer"} {
		b.Run(name, func(b *testing.B) {
			db := open[name]()
			defer db.Close()
			db.SetMaxOpenConns(1)
			var one int
			for b.Loop() {
				if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
					b.Fatal(err)
				}
				if _, err := db.Exec("SELECT 1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
