package testenv

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// Default DSNs of the databases started by scripts/test-env.sh.
const (
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// Environment variables overriding the default DSNs.
const (
	EnvMySQLDSN    = "JUMPLESS_MYSQL_DSN"
	EnvPostgresDSN = "JUMPLESS_PG_DSN"
)

// MySQLDSN returns the DSN (go-sql-driver/mysql format) of the test
// MariaDB/MySQL server: $JUMPLESS_MYSQL_DSN, else DefaultMySQLDSN. It skips
// the test (fails it in CI) when the server does not accept TCP connections.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn, _ := mysqlDB.lookup(t)
	return dsn
}

// MySQLAddr returns the host:port of the test MariaDB/MySQL server (taken
// from MySQLDSN), for tests that dial it through a tunnel. It skips the
// test (fails it in CI) when the server is not reachable.
func MySQLAddr(t testing.TB) string {
	t.Helper()
	_, addr := mysqlDB.lookup(t)
	return addr
}

// PostgresDSN returns the DSN (URL form) of the test PostgreSQL server:
// $JUMPLESS_PG_DSN, else DefaultPostgresDSN. It skips the test (fails it in
// CI) when the server does not accept TCP connections.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn, _ := postgresDB.lookup(t)
	return dsn
}

// PostgresAddr returns the host:port of the test PostgreSQL server (taken
// from PostgresDSN), for tests that dial it through a tunnel. It skips the
// test (fails it in CI) when the server is not reachable.
func PostgresAddr(t testing.TB) string {
	t.Helper()
	_, addr := postgresDB.lookup(t)
	return addr
}

// testDB describes one test database: how to find its DSN and address.
type testDB struct {
	name       string // for messages, e.g. "PostgreSQL"
	env        string // environment variable overriding defaultDSN
	defaultDSN string
	addr       func(dsn string) (string, error) // host:port from a DSN
}

var (
	mysqlDB    = testDB{"MySQL/MariaDB", EnvMySQLDSN, DefaultMySQLDSN, mysqlAddrFromDSN}
	postgresDB = testDB{"PostgreSQL", EnvPostgresDSN, DefaultPostgresDSN, postgresAddrFromDSN}
)

// lookup returns the DSN ($env, else defaultDSN) and host:port of db. It
// fails the test on an unusable DSN and skips it (fails it in CI) when the
// server does not accept TCP connections.
func (db testDB) lookup(t testing.TB) (dsn, addr string) {
	t.Helper()
	dsn = os.Getenv(db.env)
	if dsn == "" {
		dsn = db.defaultDSN
	}
	addr, err := db.addr(dsn)
	if err != nil {
		t.Fatalf("testenv: %s: %v", db.env, err)
	}
	checkReachable(t, db.name, addr, db.env)
	return dsn, addr
}

// mysqlAddrFromDSN extracts host:port from "user:pw@tcp(host:port)/db?...".
func mysqlAddrFromDSN(dsn string) (string, error) {
	i := strings.Index(dsn, "@tcp(")
	if i < 0 {
		return "", errorf("DSN must use the TCP protocol, like %q", DefaultMySQLDSN)
	}
	rest := dsn[i+len("@tcp("):]
	j := strings.IndexByte(rest, ')')
	if j < 0 {
		return "", errorf("DSN has an unterminated tcp( address")
	}
	addr := rest[:j]
	if addr == "" {
		addr = "127.0.0.1:3306"
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "3306")
	}
	return addr, nil
}

// postgresAddrFromDSN extracts host:port from a postgres:// URL or a
// keyword/value DSN ("host=... port=...").
func postgresAddrFromDSN(dsn string) (string, error) {
	host, port := "127.0.0.1", "5432"
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errorf("DSN is not a valid URL")
		}
		if h := u.Hostname(); h != "" {
			host = h
		}
		if p := u.Port(); p != "" {
			port = p
		}
		return net.JoinHostPort(host, port), nil
	}
	for _, f := range strings.Fields(dsn) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, "'")
		switch k {
		case "host":
			host = v
		case "port":
			port = v
		}
	}
	if strings.HasPrefix(host, "/") {
		return "", errorf("DSN uses a unix socket; tests need a TCP host")
	}
	return net.JoinHostPort(host, port), nil
}

func checkReachable(t testing.TB, what, addr, env string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		unavailable(t, "testenv: %s not reachable at %s (%v); set %s or", what, addr, err, env)
		return
	}
	c.Close()
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
