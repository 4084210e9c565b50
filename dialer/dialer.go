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
package dialer

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// ContextDialer opens network connections; *tunnel.Tunnel implements it,
// as does *net.Dialer.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// MySQL makes cfg connect through d by setting cfg.DialFunc. The address in
// cfg.Addr (default "127.0.0.1:3306") is dialed as is, on the far side. No
// global registration is involved, so any number of tunnels can be used at
// once.
//
// MySQL servers speak first, so when a connection can report whether its
// far end is reached (it has a Ready(ctx) error method, as direct-mode
// tunnel connections do: their agent never confirms a connect), the dial
// waits for the server's first byte: a refused connect is then the dial's
// error (e.g. one matching link.ErrConnect), which the driver returns as
// is, instead of its generic invalid-connection error.
func MySQL(d ContextDialer, cfg *mysql.Config) {
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
}

// readier is a connection that can wait until its far end has spoken.
type readier interface {
	Ready(ctx context.Context) error
}

// MySQLConnector parses a go-sql-driver/mysql DSN
// ("user:pass@tcp(host:3306)/db?param=value") and returns a connector that
// dials through d, for sql.OpenDB.
func MySQLConnector(d ContextDialer, dsn string) (driver.Connector, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	MySQL(d, cfg)
	return mysql.NewConnector(cfg)
}

// OpenMySQL is sql.Open("mysql", dsn) through d. Like sql.Open it does not
// connect; the first query (or db.PingContext) does.
func OpenMySQL(d ContextDialer, dsn string) (*sql.DB, error) {
	c, err := MySQLConnector(d, dsn)
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
func OpenPostgres(d ContextDialer, dsn string) (*sql.DB, error) {
	cfg, err := ParsePgx(d, dsn)
	if err != nil {
		return nil, err
	}
	return stdlib.OpenDB(*cfg), nil
}
