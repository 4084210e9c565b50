package dbauth_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/dbauth"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const target = "i-0123456789abcdef0"

func randSuffix() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// stack is the emulator (with secrets) and a tunnel through it to a real
// sshd.
func stack(t *testing.T, secrets map[string]string) (*ssmtest.Server, *tunnel.Tunnel) {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr}, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target},
		SSH: sshx.Config{User: sshd.User, PrivateKeyFile: sshd.ClientKeyPath, HostKey: sshd.HostKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return srv, tun
}

// dbUser is a database login created for one test, with a password the
// real server checks.
type dbUser struct {
	kind  string // "mysql" or "postgres"
	name  string
	admin *sql.DB
	table string
}

func newDBUser(t *testing.T, kind, password string) *dbUser {
	t.Helper()
	u := &dbUser{kind: kind, name: "jl_" + randSuffix(), table: "jl_creds_" + randSuffix()}
	var err error
	switch kind {
	case "mysql":
		u.admin, err = sql.Open("mysql", testenv.MySQLDSN(t))
		if err == nil {
			_, err = u.admin.Exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", u.name, password))
		}
		if err == nil {
			_, err = u.admin.Exec(fmt.Sprintf("GRANT ALL ON test.* TO '%s'@'%%'", u.name))
		}
	case "postgres":
		u.admin, err = sql.Open("pgx", testenv.PostgresDSN(t))
		if err == nil {
			requirePasswordAuth(t, u.admin)
			_, err = u.admin.Exec(fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE jumpless_pw", u.name, password))
		}
		if err == nil {
			_, err = u.admin.Exec(fmt.Sprintf("GRANT ALL ON SCHEMA public TO %s", u.name))
		}
	}
	if err != nil {
		t.Fatalf("create %s user: %v", kind, err)
	}
	t.Cleanup(func() {
		u.admin.Exec("DROP TABLE IF EXISTS " + u.table)
		if kind == "mysql" {
			u.admin.Exec(fmt.Sprintf("DROP USER '%s'@'%%'", u.name))
		} else {
			u.admin.Exec(fmt.Sprintf("DROP OWNED BY %s", u.name))
			u.admin.Exec("DROP ROLE " + u.name)
		}
		u.admin.Close()
	})
	return u
}

// requirePasswordAuth makes sure members of role jumpless_pw must give
// their password on 127.0.0.1 (scripts/test-env.sh adds the pg_hba line);
// without it PostgreSQL's trust auth would accept any password and the
// test could not fail.
func requirePasswordAuth(t *testing.T, admin *sql.DB) {
	t.Helper()
	var n int
	err := admin.QueryRow(`SELECT count(*) FROM pg_hba_file_rules WHERE '+jumpless_pw' = ANY(user_name) AND auth_method IN ('scram-sha-256','md5') AND line_number < (SELECT min(line_number) FROM pg_hba_file_rules WHERE auth_method = 'trust' AND type = 'host')`).Scan(&n)
	if err != nil || n == 0 {
		msg := fmt.Sprintf("PostgreSQL does not check passwords for role jumpless_pw on 127.0.0.1 (%v): run scripts/test-env.sh", err)
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := admin.Exec("CREATE ROLE jumpless_pw NOLOGIN"); err != nil && !strings.Contains(err.Error(), "already exists") && !strings.Contains(err.Error(), "duplicate key") {
		t.Fatal(err)
	}
}

func (u *dbUser) setPassword(t *testing.T, password string) {
	t.Helper()
	var err error
	if u.kind == "mysql" {
		_, err = u.admin.Exec(fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s'", u.name, password))
	} else {
		_, err = u.admin.Exec(fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", u.name, password))
	}
	if err != nil {
		t.Fatalf("set password: %v", err)
	}
}

// open opens the user's database through the tunnel with creds; every
// operation gets a new connection (no idle connections are kept).
func (u *dbUser) open(t *testing.T, tun *tunnel.Tunnel, creds dialer.Credentials) (*sql.DB, string) {
	t.Helper()
	var db *sql.DB
	var addr string
	var err error
	if u.kind == "mysql" {
		addr = testenv.MySQLAddr(t)
		db, err = dialer.OpenMySQLWithCredentials(tun, u.name+":not-this@tcp("+addr+")/test?tls=false", creds)
	} else {
		addr = testenv.PostgresAddr(t)
		db, err = dialer.OpenPostgresWithCredentials(tun, "postgres://"+u.name+":not-this@"+addr+"/test?sslmode=disable", creds)
	}
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxIdleConns(0)
	t.Cleanup(func() { db.Close() })
	return db, addr
}

// TestRDSIAMTokenVerifiesOnlyForItsHostPortUserRegion: the token the RDS
// IAM path makes is a presigned connect URL the emulator verifies with its
// keys, for exactly that host, port, user and region.
func TestRDSIAMTokenVerifiesOnlyForItsHostPortUserRegion(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	src := &dbauth.RDSIAM{AWS: srv.AWSConfig()}
	l, err := src.Login(ctx, "db.abc.eu-west-1.rds.amazonaws.com:5432", "etl")
	if err != nil {
		t.Fatal(err)
	}
	if l.User != "etl" || !l.Cleartext || !strings.HasPrefix(l.Password, "db.abc.eu-west-1.rds.amazonaws.com:5432") {
		t.Fatalf("login %+v", l.User)
	}
	if err := srv.VerifyRDSAuthToken(l.Password, "db.abc.eu-west-1.rds.amazonaws.com", 5432, "etl"); err != nil {
		t.Fatalf("right host, port, user, region: %v", err)
	}
	for _, tc := range []struct {
		host string
		port int
		user string
	}{{"db.other.eu-west-1.rds.amazonaws.com", 5432, "etl"}, {"db.abc.eu-west-1.rds.amazonaws.com", 3306, "etl"}, {"db.abc.eu-west-1.rds.amazonaws.com", 5432, "admin"}} {
		if err := srv.VerifyRDSAuthToken(l.Password, tc.host, tc.port, tc.user); !errors.Is(err, ssmtest.ErrRDSAuthToken) {
			t.Errorf("%s:%d %s: got %v", tc.host, tc.port, tc.user, err)
		}
	}
	// Another region, and another secret key with the same key id.
	wrongRegion := &dbauth.RDSIAM{AWS: srv.AWSConfig(), Region: "us-east-1"}
	l2, _ := wrongRegion.Login(ctx, "db.abc.eu-west-1.rds.amazonaws.com:5432", "etl")
	if err := srv.VerifyRDSAuthToken(l2.Password, "db.abc.eu-west-1.rds.amazonaws.com", 5432, "etl"); !errors.Is(err, ssmtest.ErrRDSAuthToken) || !strings.Contains(err.Error(), "region") {
		t.Errorf("wrong region: %v", err)
	}
	akid, _ := srv.Credentials()
	forged := srv.AWSConfig()
	forged.Credentials = credentials.NewStaticCredentialsProvider(akid, "not-the-secret", "")
	l3, _ := (&dbauth.RDSIAM{AWS: forged}).Login(ctx, "db.abc.eu-west-1.rds.amazonaws.com:5432", "etl")
	if err := srv.VerifyRDSAuthToken(l3.Password, "db.abc.eu-west-1.rds.amazonaws.com", 5432, "etl"); !errors.Is(err, ssmtest.ErrRDSAuthToken) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("wrong secret key: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), l3.Password) {
		t.Error("error quotes the token")
	}
}

// verifiedTokens is the RDS IAM path as a database would see it: each token
// is first verified by the emulator (signature, host, port, user, region),
// then made the user's password on the real database, which checks it.
// Only the second step stands in for RDS (which checks the signature
// itself).
type verifiedTokens struct {
	t      *testing.T
	rds    *dbauth.RDSIAM
	srv    *ssmtest.Server
	user   *dbUser
	tokens atomic.Int64
}

func (v *verifiedTokens) Login(ctx context.Context, addr, user string) (dialer.Login, error) {
	l, err := v.rds.Login(ctx, addr, user)
	if err != nil {
		return l, err
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	if err := v.srv.VerifyRDSAuthToken(l.Password, host, p, user); err != nil {
		return dialer.Login{}, err
	}
	v.user.setPassword(v.t, l.Password)
	v.tokens.Add(1)
	return l, nil
}

func TestRDSIAMTokenLogins(t *testing.T) {
	for _, kind := range []string{"mysql", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			srv, tun := stack(t, nil)
			u := newDBUser(t, kind, "initial-"+randSuffix())
			src := &verifiedTokens{t: t, rds: &dbauth.RDSIAM{AWS: srv.AWSConfig()}, srv: srv, user: u}
			db, _ := u.open(t, tun, src)
			for i := range 3 {
				var got int
				if err := db.QueryRow("SELECT 40 + " + strconv.Itoa(i)).Scan(&got); err != nil || got != 40+i {
					t.Fatalf("query %d: %d %v", i, got, err)
				}
			}
			if n := src.tokens.Load(); n != 3 {
				t.Fatalf("%d tokens for 3 connections", n)
			}
			// A token for another user is refused by the emulator before
			// the database sees it.
			other := &verifiedTokens{t: t, rds: &dbauth.RDSIAM{AWS: srv.AWSConfig(), User: "someone_else"}, srv: srv, user: u}
			db2, _ := u.open(t, tun, other)
			if err := db2.Ping(); !errors.Is(err, ssmtest.ErrRDSAuthToken) {
				t.Fatalf("token for another user: %v", err)
			}
		})
	}
}

// TestSecretRotationMidJobCostsOneRefetch: a job loads rows over many
// connections; midway the database password and the secret are rotated.
// The next connection is refused with the cached password, fetches the
// secret exactly once more, succeeds, and every row arrives.
func TestSecretRotationMidJobCostsOneRefetch(t *testing.T) {
	for _, kind := range []string{"mysql", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			pw1, pw2 := "pw1-"+randSuffix(), "pw2-"+randSuffix()
			u := newDBUser(t, kind, pw1)
			secretJSON := func(pw string) string {
				b, _ := json.Marshal(map[string]any{"username": u.name, "password": pw, "engine": kind, "host": "db.internal", "port": 3306, "dbname": "test"})
				return string(b)
			}
			name := "prod/etl/" + kind
			srv, tun := stack(t, map[string]string{name: secretJSON(pw1)})
			secret := &dbauth.Secret{AWS: srv.AWSConfig(), SecretID: name}
			db, _ := u.open(t, tun, secret)
			if _, err := db.Exec("CREATE TABLE " + u.table + " (id INT PRIMARY KEY, v INT)"); err != nil {
				t.Fatal(err)
			}
			const batches, per = 10, 50
			for b := range batches {
				if b == batches/2 {
					u.setPassword(t, pw2)
					srv.SetSecret(name, secretJSON(pw2))
				}
				var q strings.Builder
				q.WriteString("INSERT INTO " + u.table + " (id, v) VALUES ")
				for i := range per {
					if i > 0 {
						q.WriteString(",")
					}
					id := b*per + i
					fmt.Fprintf(&q, "(%d, %d)", id, id*7)
				}
				if _, err := db.Exec(q.String()); err != nil {
					t.Fatalf("batch %d: %v", b, err)
				}
			}
			var n, sum int64
			if err := db.QueryRow("SELECT COUNT(*), SUM(v) FROM "+u.table).Scan(&n, &sum); err != nil {
				t.Fatal(err)
			}
			const rows = batches * per
			if n != rows || sum != 7*rows*(rows-1)/2 {
				t.Fatalf("%d rows, sum %d: the job's data is incomplete", n, sum)
			}
			if f := srv.SecretFetches(name); f != 2 || secret.Fetches() != 2 {
				t.Fatalf("secret fetched %d times (client counted %d), want 2: once at start, once after the rotation", f, secret.Fetches())
			}
		})
	}
}

func TestParseSecretNeverQuotesTheSecret(t *testing.T) {
	for _, s := range []string{`{"username":"u","password":"hunter2-secret","port":"x"}`, `{"username":"u"}`, `hunter2-secret`, `{"username":"u","password":5}`} {
		_, err := dbauth.ParseSecret(s)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", s, err)
		}
	}
	v, err := dbauth.ParseSecret(`{"username":"etl","password":"hunter2-secret","engine":"postgres","host":"db.internal","port":"5432","dbname":"dw"}`)
	if err != nil || v.Port != 5432 || v.Host != "db.internal" || strings.Contains(v.String(), "hunter2") {
		t.Fatalf("%v %v", v, err)
	}
}

// recordingTokens records every token it hands out.
type recordingTokens struct {
	inner  dialer.Credentials
	tokens []string
}

func (r *recordingTokens) Login(ctx context.Context, addr, user string) (dialer.Login, error) {
	l, err := r.inner.Login(ctx, addr, user)
	r.tokens = append(r.tokens, l.Password)
	return l, err
}

// TestNoSecretInDebugLogsOrErrors runs the credential paths with debug
// logging everywhere (tunnel with EC2 Instance Connect, SSM, SSH, secret
// fetches and re-fetches, RDS IAM tokens) and failures (refused password
// after the retry, a refused token, a malformed secret) and checks that no
// log line or error text holds a password, token, AWS secret key or
// private key.
func TestNoSecretInDebugLogsOrErrors(t *testing.T) {
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sshd := testenv.StartSSHD(t)
	pw1, pw2, pwWrong := "pw1-"+randSuffix(), "pw2-"+randSuffix(), "wrong-"+randSuffix()
	u := newDBUser(t, "mysql", pw1)
	secret := func(pw string) string { return `{"username":"` + u.name + `","password":"` + pw + `"}` }
	srv, err := ssmtest.NewServer(ssmtest.Config{
		Targets:         map[string]string{target: sshd.Addr},
		InstanceConnect: map[string]string{target: sshd.InstanceConnectKeysPath},
		Secrets:         map[string]string{"s": secret(pw1), "bad": `{"username":"x","password":"` + pwWrong + `"`},
		Logger:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM:             ssm.Config{AWS: srv.AWSConfig(), Target: target},
		SSH:             sshx.Config{User: sshd.User, HostKey: sshd.HostKey},
		InstanceConnect: &instanceconnect.Config{},
		Logger:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	var errs []error
	sec := &dbauth.Secret{AWS: srv.AWSConfig(), SecretID: "s", Logger: log}
	db, _ := u.open(t, tun, sec)
	errs = append(errs, db.Ping())
	u.setPassword(t, pw2)
	srv.SetSecret("s", secret(pw2))
	errs = append(errs, db.Ping()) // refused, re-fetched, retried: ok
	u.setPassword(t, pwWrong)
	errs = append(errs, db.Ping()) // refused even after the re-fetch
	bad := &dbauth.Secret{AWS: srv.AWSConfig(), SecretID: "bad", Logger: log}
	db2, _ := u.open(t, tun, bad)
	errs = append(errs, db2.Ping())
	rec := &recordingTokens{inner: &dbauth.RDSIAM{AWS: srv.AWSConfig()}}
	db3, _ := u.open(t, tun, rec)
	errs = append(errs, db3.Ping())
	for _, tok := range rec.tokens {
		errs = append(errs, srv.VerifyRDSAuthToken(tok, "elsewhere", 1, "x"))
	}
	if errs[0] != nil || errs[1] != nil || errs[2] == nil || errs[3] == nil || errs[4] == nil || len(rec.tokens) == 0 {
		t.Fatalf("errors %v, %d tokens", errs, len(rec.tokens))
	}
	_, sk := srv.Credentials()
	text := logs.String()
	for _, e := range errs {
		if e != nil {
			text += "\n" + e.Error()
		}
	}
	if !strings.Contains(text, "key pushed") || !strings.Contains(text, "fetching it again") {
		t.Fatalf("debug logs lack the events this test is about:\n%s", text)
	}
	secrets := append([]string{pw1, pw2, pwWrong, sk, "PRIVATE KEY", "X-Amz-Signature"}, rec.tokens...)
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("a log line or error contains a secret (%.8s...)", s)
		}
	}
}

// TestRDSIAMPgxPoolTokenPerConnection: pgxpool's BeforeConnect gets a fresh,
// verified token for every new connection of the pool.
func TestRDSIAMPgxPoolTokenPerConnection(t *testing.T) {
	srv, tun := stack(t, nil)
	u := newDBUser(t, "postgres", "initial-"+randSuffix())
	src := &verifiedTokens{t: t, rds: &dbauth.RDSIAM{AWS: srv.AWSConfig()}, srv: srv, user: u}
	cfg, err := dialer.ParsePgxPool(tun, "postgres://"+u.name+"@"+testenv.PostgresAddr(t)+"/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	dialer.PgxPoolCredentials(cfg, src)
	cfg.MaxConns = 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		var user string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != u.name {
			t.Fatalf("%q %v", user, err)
		}
		c.Release()
	}
	if n := src.tokens.Load(); n != 3 {
		t.Fatalf("%d tokens for 3 pool connections", n)
	}
}

// TestRDSIAMMySQLInsistsOnTLS: without tls=false in the DSN, an RDS IAM
// login is only sent over TLS; the local MariaDB has no TLS, so the
// connection fails before any password is sent.
func TestRDSIAMMySQLInsistsOnTLS(t *testing.T) {
	srv, tun := stack(t, nil)
	src := &recordingTokens{inner: &dbauth.RDSIAM{AWS: srv.AWSConfig()}}
	db, err := dialer.OpenMySQLWithCredentials(tun, "etl@tcp("+testenv.MySQLAddr(t)+")/test", src)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Ping()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "tls") || len(src.tokens) == 0 {
		t.Fatalf("got %v (%d tokens)", err, len(src.tokens))
	}
}
