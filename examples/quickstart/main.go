// Command quickstart runs the whole jumpless path on one machine that has
// only Go:
//
//	go run ./examples/quickstart
//
// It starts the SSM emulator (package ssmtest: SSM API, gateway and agent
// over real websockets on loopback), an in-process SSH server that allows
// direct-tcpip, and an embedded MySQL-compatible database; then it opens a
// tunnel exactly as a job would against AWS (tunnel.Open with an SSM
// target, SSH key and known_hosts entry for the instance id), runs queries
// through the MySQL driver over the tunnel, prints the results and the
// tunnel's statistics, closes the tunnel and shows that the emulator saw
// the session terminated.
//
// Flags swap the in-process parts for real ones:
//
//	-mysql-dsn 'root@tcp(127.0.0.1:3306)/test'    a real MySQL/MariaDB (as seen from the SSH server)
//	-pg-dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'   also query PostgreSQL
//	-sshd 127.0.0.1:22 -ssh-user me -ssh-key ~/.ssh/id_ed25519 -known-hosts ~/.ssh/known_hosts
//	                                                a real sshd (known_hosts looked up under -target)
//	-cloud aliyun                                   Alibaba Cloud Assistant Session Manager (package
//	                                                aliyuntest) instead of AWS Session Manager
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/sshserver"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type options struct {
	mysqlDSN, pgDSN                  string
	sshd, sshUser, sshKey, knownHost string
	target                           string
	cloud                            string
	sessions                         int
	realistic                        bool
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.StringVar(&o.mysqlDSN, "mysql-dsn", "", "MySQL DSN as seen from the SSH server (default: an embedded in-memory database)")
	fs.StringVar(&o.pgDSN, "pg-dsn", "", "PostgreSQL DSN as seen from the SSH server (default: PostgreSQL is skipped)")
	fs.StringVar(&o.sshd, "sshd", "", "address of a real sshd (default: an in-process SSH server)")
	fs.StringVar(&o.sshUser, "ssh-user", "", "SSH user for -sshd (default: the current user)")
	fs.StringVar(&o.sshKey, "ssh-key", "", "private key file for -sshd")
	fs.StringVar(&o.knownHost, "known-hosts", "", "known_hosts file for -sshd, with an entry for -target")
	fs.StringVar(&o.target, "target", "i-0123456789abcdef0", "instance id the emulator maps to the SSH server")
	fs.StringVar(&o.cloud, "cloud", "aws", "session manager to emulate: aws or aliyun")
	fs.IntVar(&o.sessions, "sessions", 1, "parallel SSM sessions")
	fs.BoolVar(&o.realistic, "realistic", true, "pace the emulated agent like the real one (~0.7 MiB/s per session)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.cloud != "aws" && o.cloud != "aliyun" {
		return o, fmt.Errorf("-cloud %q: want aws or aliyun", o.cloud)
	}
	if o.sshd != "" && (o.sshKey == "" || o.knownHost == "") {
		return o, errors.New("-sshd needs -ssh-key and -known-hosts")
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// 1. The database: embedded unless -mysql-dsn is given.
	mysqlDSN := o.mysqlDSN
	if mysqlDSN == "" {
		db, err := startEmbeddedMySQL("quickstart")
		if err != nil {
			return err
		}
		defer db.Close()
		mysqlDSN = "root@tcp(" + db.addr + ")/quickstart"
		fmt.Fprintf(out, "database:  embedded MySQL-compatible engine at %s\n", db.addr)
	}

	// 2. The SSH server on the "instance": in-process unless -sshd is given.
	sshCfg := sshx.Config{User: o.sshUser, KnownHostsFile: o.knownHost, PrivateKeyFile: o.sshKey}
	sshAddr := o.sshd
	if sshAddr == "" {
		clientKey, clientPEM, err := sshserver.NewKey(nil)
		if err != nil {
			return err
		}
		srv, err := sshserver.Start(sshserver.Config{AuthorizedKeys: []ssh.PublicKey{clientKey.PublicKey()}})
		if err != nil {
			return err
		}
		defer srv.Close()
		sshAddr = srv.Addr()
		// What a user has on disk: a key and a known_hosts line for the
		// instance id (ssh-keyscan through the tunnel, or from the console).
		dir, err := os.MkdirTemp("", "jumpless-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		sshCfg.PrivateKeyFile = filepath.Join(dir, "id_ed25519")
		sshCfg.KnownHostsFile = filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(sshCfg.PrivateKeyFile, clientPEM, 0o600); err != nil {
			return err
		}
		line := knownhosts.Line([]string{o.target}, srv.HostKey()) + "\n"
		if err := os.WriteFile(sshCfg.KnownHostsFile, []byte(line), 0o600); err != nil {
			return err
		}
		sshCfg.User = "ec2-user"
		fmt.Fprintf(out, "ssh:       in-process SSH server at %s, host key %s\n", sshAddr, ssh.FingerprintSHA256(srv.HostKey()))
	} else {
		fmt.Fprintf(out, "ssh:       sshd at %s\n", sshAddr)
	}

	// 3. The session manager and its agent, emulated on loopback; 4. the
	// job opens the tunnel.
	var tun *tunnel.Tunnel
	var report func() (started, ended, open int64)
	var closeEmu func() error
	if o.cloud == "aliyun" {
		tun, report, closeEmu, err = openAliyun(ctx, o, sshAddr, sshCfg, out)
	} else {
		tun, report, closeEmu, err = openAWS(ctx, o, sshAddr, sshCfg, out)
	}
	if err != nil {
		return err
	}
	defer closeEmu()
	defer tun.Close()

	if err := queryMySQL(ctx, tun, mysqlDSN, out); err != nil {
		return err
	}
	if o.pgDSN != "" {
		if err := queryPostgres(ctx, tun, o.pgDSN, out); err != nil {
			return err
		}
	}

	st := tun.Stats()
	fmt.Fprintf(out, "stats:     %d connections, %d bytes sent, %d bytes received, up %v\n",
		st.TotalConns, st.BytesSent, st.BytesReceived, st.Uptime.Round(time.Millisecond))
	if err := tun.Close(); err != nil {
		return err
	}
	started, ended, open := report()
	fmt.Fprintf(out, "closed:    emulator reports %d sessions started, %d terminated, %d open\n", started, ended, open)
	if open != 0 {
		return fmt.Errorf("%d sessions still open after Close", open)
	}
	return nil
}

// openAWS opens the tunnel through the AWS Session Manager emulator.
func openAWS(ctx context.Context, o options, sshAddr string, sshCfg sshx.Config, out io.Writer) (*tunnel.Tunnel, func() (int64, int64, int64), func() error, error) {
	pacing := ssmtest.Unpaced
	if o.realistic {
		pacing = ssmtest.Realistic
	}
	emu, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{o.target: sshAddr}, Pacing: pacing})
	if err != nil {
		return nil, nil, nil, err
	}
	fmt.Fprintf(out, "ssm:       emulator at %s, %s -> %s (%s)\n", emu.URL(), o.target, sshAddr, pacing)
	// Against AWS, SSM.AWS comes from config.LoadDefaultConfig(ctx) and
	// nothing else changes.
	start := time.Now()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM:      ssm.Config{AWS: emu.AWSConfig(), Target: o.target},
		SSH:      sshCfg,
		Sessions: o.sessions,
	})
	if err != nil {
		emu.Close()
		return nil, nil, nil, err
	}
	fmt.Fprintf(out, "tunnel:    open in %v, sessions %v\n", time.Since(start).Round(time.Millisecond), tun.Stats().SessionIDs)
	return tun, func() (int64, int64, int64) {
		es := emu.Stats()
		return es.SessionsStarted, es.SessionsTerminated, int64(es.SessionsOpen)
	}, emu.Close, nil
}

// openAliyun opens the tunnel through the Alibaba Cloud Assistant
// emulator with the same tunnel.Open as openAWS: the Alibaba transport
// (aliyun.Transport.Link) in place of AWS's, each tunnel session one
// StartTerminalSession to the instance's sshd port (tunnel.Config.SSHPort),
// SSH on top.
func openAliyun(ctx context.Context, o options, sshAddr string, sshCfg sshx.Config, out io.Writer) (*tunnel.Tunnel, func() (int64, int64, int64), func() error, error) {
	host, portStr, err := net.SplitHostPort(sshAddr)
	if err != nil {
		return nil, nil, nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, nil, err
	}
	ecfg := aliyuntest.Config{Instances: map[string]string{o.target: host}}
	pacing := "realistic"
	if !o.realistic {
		ecfg.FlowLimit, ecfg.DialDelay = aliyuntest.UnpacedRate, -1
		pacing = "unpaced"
	}
	emu, err := aliyuntest.NewServer(ecfg)
	if err != nil {
		return nil, nil, nil, err
	}
	fmt.Fprintf(out, "aliyun:    Cloud Assistant emulator at %s, %s -> %s (%s)\n", emu.Endpoint(), o.target, sshAddr, pacing)
	// Against Alibaba Cloud: Region and InstanceID, Credential nil (the
	// credentials library's chain: environment, profile, RAM role) and no
	// Endpoint; nothing else changes.
	tr, err := aliyun.NewTransport(aliyun.Config{
		Region: emu.Region(), InstanceID: o.target,
		Endpoint: emu.Endpoint(), Credential: emu.Credential(),
	})
	if err != nil {
		emu.Close()
		return nil, nil, nil, err
	}
	if sshCfg.HostKeyAlias == "" {
		sshCfg.HostKeyAlias = o.target // known_hosts entries under the instance id, as for AWS
	}
	start := time.Now()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		Transport: tr.Link(),
		SSHPort:   port,
		SSH:       sshCfg,
		Sessions:  o.sessions,
	})
	if err != nil {
		emu.Close()
		return nil, nil, nil, err
	}
	fmt.Fprintf(out, "tunnel:    open in %v, sessions %v\n", time.Since(start).Round(time.Millisecond), tun.Stats().SessionIDs)
	return tun, func() (int64, int64, int64) {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		emu.WaitNoSessions(wctx)
		es := emu.Stats()
		return es.SessionsStarted, es.SessionsEnded, int64(es.SessionsOpen)
	}, emu.Close, nil
}

// queryMySQL is what a job does with the tunnel: one line to wire the
// driver, then plain database/sql.
func queryMySQL(ctx context.Context, tun *tunnel.Tunnel, dsn string, out io.Writer) error {
	db, err := dialer.OpenMySQL(tun, dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	fmt.Fprintf(out, "mysql:     connected through the tunnel, server version %s\n", version)

	table := fmt.Sprintf("jumpless_quickstart_%d", time.Now().UnixNano()%1e9)
	stmts := []string{
		"CREATE TABLE " + table + " (id INT PRIMARY KEY, city VARCHAR(64) NOT NULL, rides INT NOT NULL)",
		"INSERT INTO " + table + " VALUES (1, 'Lisbon', 120), (2, 'Osaka', 340), (3, 'Quito', 75)",
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
	}
	defer db.ExecContext(context.Background(), "DROP TABLE "+table)
	rows, err := db.QueryContext(ctx, "SELECT id, city, rides FROM "+table+" ORDER BY rides DESC")
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, rides int
		var city string
		if err := rows.Scan(&id, &city, &rides); err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%d %-8s %4d", id, city, rides))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fmt.Fprintf(out, "mysql:     SELECT id, city, rides ORDER BY rides DESC\n           %s\n", strings.Join(lines, "\n           "))
	return nil
}

func queryPostgres(ctx context.Context, tun *tunnel.Tunnel, dsn string, out io.Writer) error {
	db, err := dialer.OpenPostgres(tun, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var version string
	var n sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version'), (SELECT count(*) FROM generate_series(1, 1000))").Scan(&version, &n); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	fmt.Fprintf(out, "postgres:  connected through the tunnel, server version %s, generate_series counted %d rows\n", version, n.Int64)
	return nil
}
