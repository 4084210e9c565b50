package dialer_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/sshserver"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// Query MySQL through a tunnel with database/sql. The examples use the
// local test databases (scripts/test-env.sh) behind an in-process SSH
// server and the SSM emulator; against AWS only the tunnel.Config differs.
func ExampleOpenMySQL() {
	tun, stop := exampleTunnel()
	defer stop()

	db, err := dialer.OpenMySQL(tun, mysqlDSN())
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	var sum int
	if err := db.QueryRow("SELECT 40 + ?", 2).Scan(&sum); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum, tun.Stats().TotalConns)
	// Output: 42 1
}

// Set the dialer on a mysql.Config you build yourself, e.g. to keep
// settings such as ParseTime or timeouts.
func ExampleMySQL() {
	tun, stop := exampleTunnel()
	defer stop()

	cfg, err := mysql.ParseDSN(mysqlDSN())
	if err != nil {
		log.Fatal(err)
	}
	cfg.ParseTime = true
	dialer.MySQL(tun, cfg)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	var day time.Time
	if err := db.QueryRow("SELECT DATE('2026-03-14')").Scan(&day); err != nil {
		log.Fatal(err)
	}
	fmt.Println(day.Format(time.DateOnly))
	// Output: 2026-03-14
}

// database/sql through pgx's stdlib driver.
func ExampleOpenPostgres() {
	tun, stop := exampleTunnel()
	defer stop()

	db, err := dialer.OpenPostgres(tun, postgresDSN())
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM generate_series(1, $1::int)", 1000).Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
	// Output: 1000
}

// A pgx pool through the tunnel.
func ExampleParsePgxPool() {
	tun, stop := exampleTunnel()
	defer stop()

	ctx := context.Background()
	cfg, err := dialer.ParsePgxPool(tun, postgresDSN())
	if err != nil {
		log.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	var greeting string
	if err := pool.QueryRow(ctx, "SELECT 'hello ' || $1::text", "warehouse").Scan(&greeting); err != nil {
		log.Fatal(err)
	}
	fmt.Println(greeting)
	// Output: hello warehouse
}

func mysqlDSN() string {
	if dsn := os.Getenv(testenv.EnvMySQLDSN); dsn != "" {
		return dsn
	}
	return testenv.DefaultMySQLDSN
}

func postgresDSN() string {
	if dsn := os.Getenv(testenv.EnvPostgresDSN); dsn != "" {
		return dsn
	}
	return testenv.DefaultPostgresDSN
}

// exampleTunnel opens a tunnel through the SSM emulator to an in-process
// SSH server on this machine.
func exampleTunnel() (*tunnel.Tunnel, func()) {
	dir, err := os.MkdirTemp("", "dialer-example-")
	if err != nil {
		log.Fatal(err)
	}
	key, pemBytes, err := sshserver.NewKey(nil)
	if err != nil {
		log.Fatal(err)
	}
	sshd, err := sshserver.Start(sshserver.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	if err != nil {
		log.Fatal(err)
	}
	keyFile, knownHostsFile := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	os.WriteFile(keyFile, pemBytes, 0o600)
	os.WriteFile(knownHostsFile, []byte(knownhosts.Line([]string{target}, sshd.HostKey())+"\n"), 0o600)
	emu, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: emu.AWSConfig(), Target: target},
		SSH: sshx.Config{PrivateKeyFile: keyFile, KnownHostsFile: knownHostsFile},
	})
	if err != nil {
		log.Fatal(err)
	}
	return tun, func() {
		tun.Close()
		emu.Close()
		sshd.Close()
		os.RemoveAll(dir)
	}
}
