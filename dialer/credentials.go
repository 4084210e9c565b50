package dialer

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Login is a database user name and password for one new connection.
type Login struct {
	User     string
	Password string
	// Cleartext marks a password the server must see as is (an RDS IAM
	// token): MySQL logins then use TLS (unless the DSN says tls=false)
	// and allow the mysql_clear_password plugin over TLS only.
	Cleartext bool
}

// Credentials supply the login for each new database connection, e.g. an
// RDS IAM token (package dbauth's RDSIAM) or a Secrets Manager secret
// (dbauth's Secret). Implementations must be safe for concurrent use and
// must not put passwords in errors.
type Credentials interface {
	// Login returns the login for a new connection to addr, the
	// "host:port" the DSN names (as the database knows it, resolved on
	// the far side of the tunnel, not a local forward), for user, the
	// DSN's user name ("" when it has none).
	Login(ctx context.Context, addr, user string) (Login, error)
}

// Refreshable is implemented by Credentials that cache their login. After
// the database refused a login (wrong password), the connectors of this
// package call Invalidate with it; when it returns true they ask for the
// login again and retry the connection once, so that a password rotated
// during a job costs one re-fetch, not the job.
type Refreshable interface {
	Credentials
	Invalidate(failed Login) bool
}

// authFailed reports whether err is the database refusing a login (MySQL
// 1045 access denied, PostgreSQL 28P01 invalid password or 28000 invalid
// authorization).
func authFailed(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1045 || me.Number == 1698
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "28P01" || pe.Code == "28000"
	}
	return false
}

type loginSlotKey struct{}

// loginSlot records the login a BeforeConnect hook used for one Connect.
type loginSlot struct{ login Login }

func recordLogin(ctx context.Context, l Login) {
	if s, ok := ctx.Value(loginSlotKey{}).(*loginSlot); ok {
		s.login = l
	}
}

// retryConnector retries a connection once with a fresh login after the
// database refused a cached one.
type retryConnector struct {
	driver.Connector
	creds Credentials
}

func (c *retryConnector) Connect(ctx context.Context) (driver.Conn, error) {
	slot := &loginSlot{}
	conn, err := c.Connector.Connect(context.WithValue(ctx, loginSlotKey{}, slot))
	if err == nil || !authFailed(err) {
		return conn, err
	}
	r, ok := c.creds.(Refreshable)
	if !ok || !r.Invalidate(slot.login) {
		return nil, err
	}
	return c.Connector.Connect(ctx)
}

// MySQLCredentials makes cfg log in with creds: a go-sql-driver
// BeforeConnect hook asks creds for the login of every new connection
// (for cfg.Addr and cfg.User) and sets User and Passwd. For a Cleartext
// login (RDS IAM) it turns TLS on unless the DSN has tls=false (with
// ServerName the DSN's host) and allows cleartext passwords when TLS is
// on, as RDS requires.
func MySQLCredentials(cfg *mysql.Config, creds Credentials) error {
	addr, user := cfg.Addr, cfg.User
	if addr == "" {
		addr = "127.0.0.1:3306"
	}
	explicitNoTLS := cfg.TLSConfig == "false"
	return cfg.Apply(mysql.BeforeConnect(func(ctx context.Context, c *mysql.Config) error {
		l, err := creds.Login(ctx, addr, user)
		if err != nil {
			return fmt.Errorf("dialer: database login for %s: %w", addr, err)
		}
		recordLogin(ctx, l)
		c.User, c.Passwd = l.User, l.Password
		if l.Cleartext {
			if c.TLS == nil && !explicitNoTLS {
				host, _, _ := net.SplitHostPort(addr)
				c.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
			}
			c.AllowCleartextPasswords = c.TLS != nil
		}
		return nil
	}))
}

// OpenMySQLWithCredentials is OpenMySQL (compression included) with the
// login of every new connection from creds (see MySQLCredentials; the DSN's password is not
// used). A connection refused with a cached login is retried once after
// Invalidate (see Refreshable).
func OpenMySQLWithCredentials(d ContextDialer, dsn string, creds Credentials) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	var opts []Option
	if dsnSetsCompress(dsn) {
		opts = append(opts, WithoutCompression()) // the DSN's own value stands
	}
	MySQL(d, cfg, opts...)
	if err := MySQLCredentials(cfg, creds); err != nil {
		return nil, err
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(&retryConnector{Connector: c, creds: creds}), nil
}

// pgxBeforeConnect returns a BeforeConnect hook (pgxpool.Config,
// stdlib.OptionBeforeConnect) that sets User and Password of each new
// connection from creds, for the config's host and port.
func pgxBeforeConnect(creds Credentials) func(context.Context, *pgx.ConnConfig) error {
	return func(ctx context.Context, cc *pgx.ConnConfig) error {
		addr := net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
		l, err := creds.Login(ctx, addr, cc.User)
		if err != nil {
			return fmt.Errorf("dialer: database login for %s: %w", addr, err)
		}
		recordLogin(ctx, l)
		cc.User, cc.Password = l.User, l.Password
		return nil
	}
}

// PgxPoolCredentials makes every new connection of the pool log in with
// creds, through pgxpool's BeforeConnect hook (chained after one already
// set). pgxpool cannot retry a refused connection itself: after a password
// rotation the first new connection fails; prefer
// OpenPostgresWithCredentials, which retries, for Secrets Manager
// credentials. RDS IAM tokens are fresh for every connection and need no
// retry.
func PgxPoolCredentials(cfg *pgxpool.Config, creds Credentials) {
	prev := cfg.BeforeConnect
	hook := pgxBeforeConnect(creds)
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		if prev != nil {
			if err := prev(ctx, cc); err != nil {
				return err
			}
		}
		return hook(ctx, cc)
	}
}

// OpenPostgresWithCredentials is OpenPostgres with the login of every new
// connection from creds (pgx stdlib's BeforeConnect hook; the DSN's
// password is not used). A connection refused with a cached login is
// retried once after Invalidate (see Refreshable).
func OpenPostgresWithCredentials(d ContextDialer, dsn string, creds Credentials) (*sql.DB, error) {
	cfg, err := ParsePgx(d, dsn)
	if err != nil {
		return nil, err
	}
	c := stdlib.GetConnector(*cfg, stdlib.OptionBeforeConnect(pgxBeforeConnect(creds)))
	return sql.OpenDB(&retryConnector{Connector: c, creds: creds}), nil
}
