// Command postgres runs one query on a PostgreSQL server in a private
// subnet, through an SSM session to an instance that can reach it, with a
// pgx pool:
//
//	go run ./examples/postgres -target i-0123456789abcdef0 -region eu-west-1 \
//	    -key ~/.ssh/id_ed25519 -known-hosts ~/.ssh/known_hosts \
//	    -dsn 'postgres://etl@warehouse.internal:5432/dw' \
//	    -query 'SELECT count(*) FROM facts'
//
// The DSN's host is resolved by the instance. Cancelling a query (Ctrl-C)
// sends PostgreSQL's cancel request through the tunnel too.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

func main() {
	target := flag.String("target", "", "managed instance id (i-... or mi-...)")
	region := flag.String("region", "", "AWS region (default: from the environment/profile)")
	profile := flag.String("profile", "", "AWS shared config profile (default: the default profile)")
	user := flag.String("user", "ec2-user", "SSH user on the instance")
	key := flag.String("key", os.ExpandEnv("$HOME/.ssh/id_ed25519"), "SSH private key file")
	knownHosts := flag.String("known-hosts", os.ExpandEnv("$HOME/.ssh/known_hosts"), "known_hosts file with an entry for the instance id")
	dsn := flag.String("dsn", "", "PostgreSQL URL or keyword/value DSN, host as seen from the instance")
	query := flag.String("query", "SELECT version()", "query whose rows are printed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(*region), config.WithSharedConfigProfile(*profile))
	if err != nil {
		log.Fatal(err)
	}
	// The wiring: open the tunnel, hand it to pgxpool.
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: awsCfg, Target: *target},
		SSH: sshx.Config{User: *user, PrivateKeyFile: *key, KnownHostsFile: *knownHosts},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()
	poolCfg, err := dialer.ParsePgxPool(tun, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	rows, err := pool.Query(ctx, *query)
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(vals...)
	}
	if err := rows.Err(); err != nil {
		log.Fatal(err)
	}
	st := tun.Stats()
	fmt.Fprintf(os.Stderr, "tunnel: session %v, %d bytes received\n", st.SessionIDs, st.BytesReceived)
}
