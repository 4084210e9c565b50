package dialer

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// ErrStatementInDoubt is matched by the error a database/sql statement of
// [OpenPostgres] returns when its connection failed after the statement's
// bytes had been written: the server may have run it (an INSERT may have
// committed), so it is reported as failed and not run again. The error
// also wraps what the connection failed with (through a tunnel with
// Config.Replace: tunnel.ErrSessionLost and the session's cause).
//
// Why it exists: pgx v5.12.0 reports a connection lost during a
// statement without arguments (simple protocol) as "conn closed", an error
// whose pgconn.SafeToRetry is true (MultiResultReader.NextResult drops the
// read error; the next receive fails the lock check, connLockError). pgx's
// stdlib driver turns that into driver.ErrBadConn and database/sql runs the
// statement again on a new connection: through a tunnel that replaces
// sessions, the new connection works, and the statement runs twice.
var ErrStatementInDoubt = errors.New("dialer: connection lost after the statement was sent; it may have executed, so it was not run again")

// inDoubtError is ErrStatementInDoubt wrapping the connection's failure.
type inDoubtError struct{ cause error }

func (e *inDoubtError) Error() string {
	if e.cause == nil {
		return ErrStatementInDoubt.Error()
	}
	return ErrStatementInDoubt.Error() + ": " + e.cause.Error()
}

func (e *inDoubtError) Unwrap() []error { return []error{ErrStatementInDoubt, e.cause} }

// sentConn counts the bytes a connection wrote and keeps its first
// failure that is not a deadline (pgx sets deadlines to interrupt reads).
type sentConn struct {
	net.Conn
	written atomic.Int64
	mu      sync.Mutex
	err     error
}

func (c *sentConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	c.note(err)
	return n, err
}

func (c *sentConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.note(err)
	return n, err
}

func (c *sentConn) note(err error) {
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *sentConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// sentKey carries a *sentSlot from pgConnector.Connect to the DialFunc.
type sentKey struct{}

type sentSlot struct {
	mu   sync.Mutex
	conn *sentConn
}

// sentDial wraps dial so that a connection dialed for pgConnector.Connect
// is counted; other dials (pgx's cancel requests) pass unchanged.
func sentDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		slot, _ := ctx.Value(sentKey{}).(*sentSlot)
		if err != nil || slot == nil {
			return c, err
		}
		sc := &sentConn{Conn: c}
		slot.mu.Lock()
		slot.conn = sc // the last dial of a Connect is the one pgx keeps
		slot.mu.Unlock()
		return sc, nil
	}
}

// pgConnector is pgx's stdlib connector whose connections never let
// database/sql re-run a statement whose bytes were sent (see
// ErrStatementInDoubt).
type pgConnector struct{ inner driver.Connector }

func (c pgConnector) Driver() driver.Driver { return c.inner.Driver() }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	slot := &sentSlot{}
	dc, err := c.inner.Connect(context.WithValue(ctx, sentKey{}, slot))
	if err != nil {
		return nil, err
	}
	slot.mu.Lock()
	nc := slot.conn
	slot.mu.Unlock()
	sc, ok := dc.(*stdlib.Conn)
	if !ok || nc == nil {
		return dc, nil
	}
	return &PgConn{Conn: sc, net: nc}, nil
}

// PgConn is the driver connection of [OpenPostgres]'s database/sql pool:
// pgx's *stdlib.Conn (embedded, so database/sql sees every interface it
// implements) whose ExecContext and QueryContext do not return
// driver.ErrBadConn once the statement's bytes were written (see
// [ErrStatementInDoubt]). In (*sql.Conn).Raw, reach pgx through it:
//
//	err := conn.Raw(func(dc any) error {
//		pc := dc.(*dialer.PgConn).Conn.Conn() // *pgx.Conn
//		...
//	})
type PgConn struct {
	*stdlib.Conn
	net *sentConn
}

// guard runs a statement and replaces driver.ErrBadConn by an
// ErrStatementInDoubt error when bytes were written meanwhile.
func (c *PgConn) guard(err error, before int64) error {
	if errors.Is(err, driver.ErrBadConn) && c.net.written.Load() != before {
		return &inDoubtError{cause: c.net.failure()}
	}
	return err
}

// ExecContext is stdlib's, without driver.ErrBadConn once the statement
// was sent.
func (c *PgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	before := c.net.written.Load()
	r, err := c.Conn.ExecContext(ctx, query, args)
	if err != nil {
		return nil, c.guard(err, before)
	}
	return r, nil
}

// QueryContext is stdlib's, without driver.ErrBadConn once the query was
// sent.
func (c *PgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	before := c.net.written.Load()
	r, err := c.Conn.QueryContext(ctx, query, args)
	if err != nil {
		return nil, c.guard(err, before)
	}
	return r, nil
}

// PrepareContext is stdlib's; the statement's Exec and Query get the same
// guard as the connection's.
func (c *PgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.Conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &pgStmt{Stmt: st.(*stdlib.Stmt), c: c}, nil
}

// Prepare is PrepareContext without a context.
func (c *PgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

type pgStmt struct {
	*stdlib.Stmt
	c *PgConn
}

func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	before := s.c.net.written.Load()
	r, err := s.Stmt.ExecContext(ctx, args)
	if err != nil {
		return nil, s.c.guard(err, before)
	}
	return r, nil
}

func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	before := s.c.net.written.Load()
	r, err := s.Stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, s.c.guard(err, before)
	}
	return r, nil
}

// pgSQLConnector is the connector OpenPostgres opens its *sql.DB with.
func pgSQLConnector(cfg *pgx.ConnConfig) driver.Connector {
	cfg.DialFunc = sentDial(cfg.DialFunc)
	return pgConnector{inner: stdlib.GetConnector(*cfg)}
}
