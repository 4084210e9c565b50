// Package dialer wires a tunnel (anything with a DialContext method, such
// as *tunnel.Tunnel) into the database drivers ETL jobs use:
// github.com/go-sql-driver/mysql and github.com/jackc/pgx/v5 (pgx.Connect,
// pgxpool and database/sql through pgx's stdlib).
//
// Host names in DSNs are resolved on the far side of the tunnel, so private
// DNS names such as "db.internal" or RDS endpoints work as they would on the
// instance.
//
// Wiring a tunnel into an existing job takes a line or two per database:
//
//	mydb, err := dialer.OpenMySQL(tun, "etl:secret@tcp(orders.internal:3306)/orders")
//	pgdb, err := dialer.OpenPostgres(tun, "postgres://etl@warehouse.internal:5432/dw")
//
//	cfg, err := dialer.ParsePgxPool(tun, "postgres://etl@warehouse.internal:5432/dw")
//	pool, err := pgxpool.NewWithConfig(ctx, cfg)
//
// PostgreSQL query cancellation (cancelling a query's context) works
// through the tunnel: pgx dials the cancel request with the same DialFunc.
//
// A statement whose connection is lost after it was sent (a tunnel session
// that ends, see tunnel's Config.Replace) may have run on the server; it is
// reported as failed and never run again by a driver retry: [OpenPostgres]
// returns [ErrStatementInDoubt] where pgx's stdlib alone would make
// database/sql re-run a statement without arguments. With pgx or pgxpool
// directly, such a statement fails with "conn closed" (pgconn.ErrConnClosed)
// and pgconn.SafeToRetry reports true: do not retry non-idempotent
// statements on that basis. go-sql-driver/mysql retries only when nothing
// was written; it reports a connection lost later as mysql.ErrInvalidConn
// ("invalid connection", the cause goes to its logger), which may also
// have run.
//
// MySQL connections use the protocol's compression by default (see [MySQL]
// for why, and [WithoutCompression] to turn it off).
package dialer

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ContextDialer opens network connections; *tunnel.Tunnel implements it,
// as does *net.Dialer.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Option changes how a function of this package configures a driver.
type Option func(*options)

type options struct {
	noCompression bool
}

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithoutCompression keeps MySQL protocol compression off. Use it when the
// tunnel is not byte-limited (a direct path, or a fast unpaced one) and the
// database server's CPU matters more than the bytes; the result sets are
// the same either way.
func WithoutCompression() Option { return func(o *options) { o.noCompression = true } }

// MySQL makes cfg connect through d by setting cfg.DialFunc. The address in
// cfg.Addr (default "127.0.0.1:3306") is dialed as is, on the far side. No
// global registration is involved, so any number of tunnels can be used at
// once.
//
// It also turns on the MySQL protocol's compression (zlib, the DSN's
// compress=true), unless opts contain [WithoutCompression]. Through a Session
// Manager tunnel the bytes, not the CPU, are the limit: AWS's agent sends at
// most 1 KiB per message and sleeps 1 ms after each (about 0.7 MiB/s per
// session), so a result set that compresses 3:1 arrives about 3 times
// sooner; zlib costs far less CPU than that time. Servers without
// compression support simply do not enable it.
//
// MySQL servers speak first, so when a connection can report whether its
// far end is reached (it has a Ready(ctx) error method, as direct-mode
// tunnel connections do: their agent never confirms a connect), the dial
// waits for the server's first byte: a refused connect is then the dial's
// error (e.g. one matching link.ErrConnect), which the driver returns as
// is, instead of its generic invalid-connection error.
func MySQL(d ContextDialer, cfg *mysql.Config, opts ...Option) {
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if r, ok := c.(readier); ok {
			if err := r.Ready(ctx); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
	if !collect(opts).noCompression {
		_ = cfg.Apply(mysql.EnableCompression(true))
	}
}

// readier is a connection that can wait until its far end has spoken.
type readier interface {
	Ready(ctx context.Context) error
}

// MySQLConnector parses a go-sql-driver/mysql DSN
// ("user:pass@tcp(host:3306)/db?param=value") and returns a connector that
// dials through d, for sql.OpenDB. Compression is on as with [MySQL],
// unless the DSN sets compress explicitly (compress=false keeps it off) or
// opts contain [WithoutCompression].
func MySQLConnector(d ContextDialer, dsn string, opts ...Option) (driver.Connector, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if dsnSetsCompress(dsn) {
		opts = append(opts[:len(opts):len(opts)], WithoutCompression()) // the DSN's own value stands
	}
	MySQL(d, cfg, opts...)
	return mysql.NewConnector(cfg)
}

// dsnSetsCompress reports whether a go-sql-driver/mysql DSN has a compress
// parameter.
func dsnSetsCompress(dsn string) bool {
	i := strings.LastIndexByte(dsn, '?')
	if i < 0 || strings.LastIndexByte(dsn, '/') > i {
		return false
	}
	for _, kv := range strings.Split(dsn[i+1:], "&") {
		if k, _, _ := strings.Cut(kv, "="); k == "compress" {
			return true
		}
	}
	return false
}

// OpenMySQL is sql.Open("mysql", dsn) through d, with compression as for
// [MySQLConnector]. Like sql.Open it does not connect; the first query (or
// db.PingContext) does.
func OpenMySQL(d ContextDialer, dsn string, opts ...Option) (*sql.DB, error) {
	c, err := MySQLConnector(d, dsn, opts...)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Pgconn makes cfg connect through d: it sets DialFunc to d.DialContext and
// LookupFunc to one that returns the host unchanged, so that names are
// resolved on the far side of the tunnel. Fallback hosts get the same
// treatment (they share LookupFunc and DialFunc). pgx sends cancel requests
// by calling DialFunc with the connection's RemoteAddr, so query
// cancellation (context cancel) also goes through the tunnel.
//
// Note that pgx picks a default host on the local machine when the DSN has
// none; give the host explicitly.
func Pgconn(d ContextDialer, cfg *pgconn.Config) {
	cfg.DialFunc = d.DialContext
	cfg.LookupFunc = lookupFarSide
}

// lookupFarSide leaves name resolution to the far side of the tunnel.
func lookupFarSide(_ context.Context, host string) ([]string, error) {
	return []string{host}, nil
}

// ParsePgx is pgx.ParseConfig(dsn) with [Pgconn] applied, for pgx.ConnectConfig.
func ParsePgx(d ContextDialer, dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	Pgconn(d, &cfg.Config)
	return cfg, nil
}

// ConnectPgx is pgx.Connect through d.
func ConnectPgx(ctx context.Context, d ContextDialer, dsn string) (*pgx.Conn, error) {
	cfg, err := ParsePgx(d, dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// ParsePgxPool is pgxpool.ParseConfig(dsn) with [Pgconn] applied, for
// pgxpool.NewWithConfig.
func ParsePgxPool(d ContextDialer, dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	Pgconn(d, &cfg.ConnConfig.Config)
	return cfg, nil
}

// OpenPostgres is database/sql through pgx's stdlib driver, connecting
// through d. Like sql.Open it does not connect; the first query does.
//
// A statement whose connection fails after it was sent is never run
// again: it fails with an error matching [ErrStatementInDoubt] (and the
// connection's error, e.g. tunnel.ErrSessionLost), where pgx's stdlib
// alone would make database/sql re-run a statement without arguments on a
// new connection. Connections are [*PgConn].
func OpenPostgres(d ContextDialer, dsn string) (*sql.DB, error) {
	cfg, err := ParsePgx(d, dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(pgSQLConnector(cfg)), nil
}
