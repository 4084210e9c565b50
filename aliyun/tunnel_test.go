package aliyun_test

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/tunnel"
)

var tableSeq atomic.Int64

func table(prefix string) string {
	return fmt.Sprintf("jl_ali_%s_%d_%d", prefix, time.Now().UnixNano()%1e9, tableSeq.Add(1))
}

func bounded(f func(context.Context)) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f(c)
}

func tctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// sshTunnelConfig is SSH mode: each tunnel session is one Cloud Assistant
// session to the instance's port 22 (here: a real sshd), SSH on top.
func sshTunnelConfig(srv *aliyuntest.Server, sshd *testenv.SSHD, sessions int) tunnel.Config {
	cfg := config(srv, sshd.Addr)
	return tunnel.Config{
		Sessions:    sessions,
		DialBastion: func(ctx context.Context) (net.Conn, error) { return aliyun.Dial(ctx, cfg) },
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
	}
}

// sshStack opens SSH mode over the emulator (unpaced) and checks at
// cleanup that Close left no session open at the emulator.
func sshStack(t *testing.T, sessions int) (*tunnel.Tunnel, *aliyuntest.Server) {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	srv := newServer(t, fast())
	tun, err := tunnel.Open(tctx(t, 30*time.Second), sshTunnelConfig(srv, sshd, sessions))
	if err != nil {
		t.Fatalf("tunnel.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("tunnel.Close: %v", err)
		}
		waitNoSessions(t, srv)
	})
	return tun, srv
}

func roundTrip(t *testing.T, db *sql.DB, ph func(int) string) {
	t.Helper()
	c := tctx(t, 60*time.Second)
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

func TestSSHModeMySQLRoundTrip(t *testing.T) {
	tun, _ := sshStack(t, 1)
	db, err := dialer.OpenMySQL(tun, testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	roundTrip(t, db, func(int) string { return "?" })
}

func TestSSHModePostgresRoundTripDatabaseSQLAndPgx(t *testing.T) {
	tun, _ := sshStack(t, 1)
	db, err := dialer.OpenPostgres(tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	roundTrip(t, db, func(i int) string { return fmt.Sprintf("$%d", i) })

	c := tctx(t, 30*time.Second)
	conn, err := dialer.ConnectPgx(c, tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	var s string
	if err := conn.QueryRow(c, "SELECT $1::text || 'through aliyun'", "pgx ").Scan(&s); err != nil || s != "pgx through aliyun" {
		t.Fatalf("pgx: %q %v", s, err)
	}
}

func TestSSHModePostgresCopy100kRows(t *testing.T) {
	tun, _ := sshStack(t, 1)
	c := tctx(t, 180*time.Second)
	conn, err := dialer.ConnectPgx(c, tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	copy100kRowsAndVerify(t, c, conn, "copy")
}

// copy100kRowsAndVerify copies 100 000 rows into a fresh table through conn
// and checks count, sum and md5 on the server.
func copy100kRowsAndVerify(t *testing.T, c context.Context, conn *pgx.Conn, prefix string) {
	t.Helper()
	tbl := table(prefix)
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
	copied, err := conn.CopyFrom(c, pgx.Identifier{tbl}, []string{"id", "n", "v"}, pgx.CopyFromRows(src))
	if err != nil || copied != rows {
		t.Fatalf("CopyFrom = %d, %v", copied, err)
	}
	var count, gotSum int64
	var gotMD5 string
	if err := conn.QueryRow(c, "SELECT count(*), sum(n)::bigint, md5(string_agg(v, '' ORDER BY id)) FROM "+tbl).Scan(&count, &gotSum, &gotMD5); err != nil {
		t.Fatal(err)
	}
	if count != rows || gotSum != sum || gotMD5 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("server has count=%d sum=%d md5=%s", count, gotSum, gotMD5)
	}
}

func TestSSHMode16ConcurrentConnections(t *testing.T) {
	tun, srv := sshStack(t, 4)
	db, err := dialer.OpenMySQL(tun, testenv.MySQLDSN(t))
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
			var got string
			want := strings.Repeat(fmt.Sprint(i), 1000)
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
	if st := tun.Stats(); st.TotalConns < 16 {
		t.Fatalf("tunnel opened %d conns", st.TotalConns)
	}
	if st := srv.Stats(); st.SessionsStarted != 4 {
		t.Fatalf("%d sessions started; want 4 (Sessions)", st.SessionsStarted)
	}
}

// TestSSHModeLeavesNoSessionAfterCancelOrFailedDial guards the cleanup
// paths: ctx cancelled while the tunnel opens, and an SSH handshake that
// fails (wrong host key), each leave no session at the emulator.
func TestSSHModeLeavesNoSessionAfterCancelOrFailedDial(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newServer(t, fast())
	cfg := sshTunnelConfig(srv, sshd, 2)
	for _, d := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		tun, err := tunnel.Open(ctx, cfg)
		cancel()
		if err == nil {
			tun.Close()
		}
	}
	waitNoSessions(t, srv)

	bad := cfg
	other := testenv.StartSSHD(t)
	bad.SSH.KnownHostsFile = other.WriteKnownHosts(true, instance)
	if _, err := tunnel.Open(tctx(t, 30*time.Second), bad); !errors.Is(err, sshx.ErrHostKeyMismatch) {
		t.Fatalf("wrong host key: %v", err)
	}
	waitNoSessions(t, srv)
	if srv.Stats().SessionsStarted == 0 {
		t.Fatal("no session was started: the test did not exercise the cleanup")
	}
}

func TestSSHModeSessionLimitIsTyped(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	cfg := fast()
	cfg.SessionLimit = 3
	srv := newServer(t, cfg)
	_, err := tunnel.Open(tctx(t, 30*time.Second), sshTunnelConfig(srv, sshd, 4))
	if !errors.Is(err, aliyun.ErrSessionLimit) {
		t.Fatalf("4 sessions with a limit of 3: %v", err)
	}
	waitNoSessions(t, srv)
}
