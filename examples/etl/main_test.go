package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/examples/internal/exampleflags"
	"github.com/jumpless/jumpless/examples/internal/exampletest"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestETLCopyLosesRows copies a MariaDB table with NULLs, decimals, dates
// and text into PostgreSQL through one SSM session (emulator → real sshd)
// and compares the data on both servers.
func TestETLCopyLosesRows(t *testing.T) {
	mysqlDSN, pgDSN := testenv.MySQLDSN(t), testenv.PostgresDSN(t)
	sshd := testenv.StartSSHD(t)
	const target = "i-0123456789abcdef0"
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target},
		SSH: sshx.Config{User: sshd.User, PrivateKeyFile: sshd.ClientKeyPath, KnownHostsFile: sshd.WriteKnownHosts(false, target)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()

	name := fmt.Sprintf("jl_etl_%d", time.Now().UnixNano()%1e9)
	my, err := dialer.OpenMySQL(tun, mysqlDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer my.Close()
	if _, err := my.ExecContext(ctx, "CREATE TABLE "+name+" (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(10,2) NOT NULL, day DATE, at DATETIME)"); err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { my.ExecContext(c, "DROP TABLE "+name) })
	const rows = 5000
	var q strings.Builder
	q.WriteString("INSERT INTO " + name + " VALUES ")
	for i := range rows {
		if i > 0 {
			q.WriteString(",")
		}
		if i%10 == 0 {
			fmt.Fprintf(&q, "(%d, NULL, %d.%02d, NULL, NULL)", i, i, i%100)
		} else {
			fmt.Fprintf(&q, "(%d, 'name %d', %d.%02d, '2026-01-%02d', '2026-02-03 04:05:%02d')", i, i, i, i%100, i%28+1, i%60)
		}
	}
	if _, err := my.ExecContext(ctx, q.String()); err != nil {
		t.Fatal(err)
	}

	pg, err := dialer.ConnectPgx(ctx, tun, pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { pg.Close(c) })
	defer bounded(func(c context.Context) { pg.Exec(c, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()) })

	var out bytes.Buffer
	job := copyJob{MySQLDSN: mysqlDSN, SrcTable: name, PgDSN: pgDSN, DstTable: name}
	n, err := job.Run(ctx, tun, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if n != rows {
		t.Fatalf("copied %d rows; want %d", n, rows)
	}
	// Same content on both servers: an aggregate over a canonical text form.
	var mySum string
	var myNulls int
	if err := my.QueryRowContext(ctx, "SELECT CAST(SUM(amount) AS CHAR), SUM(name IS NULL) FROM "+name).Scan(&mySum, &myNulls); err != nil {
		t.Fatal(err)
	}
	var pgSum string
	var pgNulls int
	var pgDays sql.NullInt64
	if err := pg.QueryRow(ctx, "SELECT sum(amount)::text, count(*) FILTER (WHERE name IS NULL), count(DISTINCT day) FROM "+pgx.Identifier{name}.Sanitize()).Scan(&pgSum, &pgNulls, &pgDays); err != nil {
		t.Fatal(err)
	}
	if mySum != pgSum || myNulls != pgNulls || pgDays.Int64 != 28 {
		t.Fatalf("MySQL sum=%s nulls=%d; PostgreSQL sum=%s nulls=%d distinct days=%d", mySum, myNulls, pgSum, pgNulls, pgDays.Int64)
	}
	if st := tun.Stats(); len(st.SessionIDs) != 1 {
		t.Fatalf("used %d sessions; want ONE tunnel session", len(st.SessionIDs))
	}
	// A second run must refuse the non-empty destination.
	if _, err := job.Run(ctx, tun, &out); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second Run = %v; want a refusal to copy into a non-empty table", err)
	}
}

// bounded runs f with a fresh 30s context, so that cleanup over a stalled
// tunnel fails instead of hanging the test binary.
func bounded(f func(context.Context)) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f(c)
}

// TestETLExampleCommandFails runs the command as a user would against AWS
// (AWS settings from the environment, known_hosts entry for the instance
// id): flags → tunnel → copy, and checks the report and the destination.
func TestETLExampleCommandFails(t *testing.T) {
	mysqlDSN, pgDSN := testenv.MySQLDSN(t), testenv.PostgresDSN(t)
	st := exampletest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	my, err := sql.Open("mysql", mysqlDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer my.Close()
	name := fmt.Sprintf("jl_etl_cmd_%d", time.Now().UnixNano()%1e9)
	if _, err := my.ExecContext(ctx, "CREATE TABLE "+name+" (id INT PRIMARY KEY, v VARCHAR(20))"); err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { my.ExecContext(c, "DROP TABLE "+name) })
	const rows = 321
	for i := range rows {
		if _, err := my.ExecContext(ctx, "INSERT INTO "+name+" VALUES (?, ?)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	pg, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { pg.Close(c) })
	defer bounded(func(c context.Context) { pg.Exec(c, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()) })

	var out bytes.Buffer
	args := append(st.TunnelArgs(), "-mysql-dsn", mysqlDSN, "-src-table", name, "-pg-dsn", pgDSN, "-dst-table", name)
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		fmt.Sprintf("source %s: %d rows\n", name, rows),
		fmt.Sprintf("destination %s: %d rows (copied %d)\n", name, rows, rows),
		fmt.Sprintf("copied %d rows through session [ssmtest-", rows),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	var n, sum int64
	if err := pg.QueryRow(ctx, "SELECT count(DISTINCT v), sum(id) FROM "+pgx.Identifier{name}.Sanitize()).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != rows || sum != rows*(rows-1)/2 {
		t.Fatalf("destination: %d distinct values, id sum %d; want %d, %d", n, sum, rows, rows*(rows-1)/2)
	}
	if s := st.SSM.Stats(); s.SessionsStarted != 1 || s.SessionsOpen != 0 {
		t.Fatalf("emulator: %d sessions started, %d open; want 1 started and none left open", s.SessionsStarted, s.SessionsOpen)
	}
	if err := run(ctx, args[2:], io.Discard); !errors.Is(err, exampleflags.ErrNoTarget) {
		t.Fatalf("without -target: %v; want ErrNoTarget", err)
	}
}
