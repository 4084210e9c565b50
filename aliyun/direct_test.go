package aliyun_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
)

// directTransport is direct mode: one Cloud Assistant session per
// database connection, to the database port, no SSH.
func directTransport(t *testing.T) (*aliyun.Transport, *aliyuntest.Server) {
	t.Helper()
	srv := newServer(t, fast())
	cfg := config(srv, "127.0.0.1:1")
	tr, err := aliyun.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitNoSessions(t, srv) })
	return tr, srv
}

func TestDirectModeMySQLRoundTrip(t *testing.T) {
	tr, _ := directTransport(t)
	db, err := dialer.OpenMySQL(tr, testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	roundTrip(t, db, func(int) string { return "?" })
}

func TestDirectModePostgresRoundTripDatabaseSQLAndPgx(t *testing.T) {
	tr, _ := directTransport(t)
	db, err := dialer.OpenPostgres(tr, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	roundTrip(t, db, func(i int) string { return fmt.Sprintf("$%d", i) })
	c := tctx(t, 30*time.Second)
	conn, err := dialer.ConnectPgx(c, tr, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	var n int
	if err := conn.QueryRow(c, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("pgx: %d %v", n, err)
	}
}

func TestDirectModePostgresCopy100kRows(t *testing.T) {
	tr, _ := directTransport(t)
	c := tctx(t, 180*time.Second)
	conn, err := dialer.ConnectPgx(c, tr, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	copy100kRowsAndVerify(t, c, conn, "dcopy")
}

func TestDirectMode16ConcurrentConnections(t *testing.T) {
	tr, srv := directTransport(t)
	db, err := dialer.OpenMySQL(tr, testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	c := tctx(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := db.Conn(c)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			want := strings.Repeat(fmt.Sprint(i), 1000)
			var got string
			if err := conn.QueryRowContext(c, "SELECT CONCAT(?, SLEEP(0.2))", want).Scan(&got); err != nil {
				errs <- err
				return
			}
			if got != want+"0" {
				errs <- fmt.Errorf("conn %d got %d bytes back", i, len(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := srv.Stats(); st.SessionsStarted < 16 {
		t.Fatalf("%d sessions started; want one per connection (≥ 16)", st.SessionsStarted)
	}
	db.Close()
}

// TestDirectModeTargetServerNamesResolveOnTheInstance: a DSN host other
// than localhost becomes TargetServer, resolved on the instance's side
// (the emulator's Hosts), so VPC-private names work.
func TestDirectModeTargetServerNamesResolveOnTheInstance(t *testing.T) {
	ecfg := fast()
	ecfg.Instances = map[string]string{instance: "192.0.2.1"} // the instance's own ports: unreachable
	ecfg.Hosts = map[string]string{"orders.db.internal": "127.0.0.1"}
	srv := newServer(t, ecfg)
	tr, err := aliyun.NewTransport(config(srv, "127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer waitNoSessions(t, srv)
	_, port, _ := strings.Cut(testenv.MySQLAddr(t), ":")
	dsn := strings.Replace(testenv.MySQLDSN(t), testenv.MySQLAddr(t), "orders.db.internal:"+port, 1)
	db, err := dialer.OpenMySQL(tr, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRowContext(tctx(t, 30*time.Second), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 through TargetServer: %d %v", one, err)
	}
	db.Close()
}

// TestDirectModeClosedPortIsTypedAndLeavesNoSession: a database port
// nobody listens on gives the driver an error carrying the agent's reason
// (a *StatusError), and the session is ended.
func TestDirectModeClosedPortIsTypedAndLeavesNoSession(t *testing.T) {
	tr, srv := directTransport(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	// pgx keeps the cause (go-sql-driver/mysql logs it and returns
	// "invalid connection").
	_, err = dialer.ConnectPgx(tctx(t, 30*time.Second), tr, "postgres://postgres@127.0.0.1:"+port+"/test?sslmode=disable&connect_timeout=10")
	var se *aliyun.StatusError
	if !errors.As(err, &se) || se.Reason != "OpenPortFailed" {
		t.Fatalf("connect to a closed port: %v", err)
	}
	waitNoSessions(t, srv)
	if srv.Stats().SessionsStarted == 0 {
		t.Fatal("no session was started")
	}
}
