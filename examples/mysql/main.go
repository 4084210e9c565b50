// Command mysql runs one query on a MySQL/MariaDB server in a private
// subnet, through an SSM session to an instance that can reach it:
//
//	go run ./examples/mysql -target i-0123456789abcdef0 -region eu-west-1 \
//	    -key ~/.ssh/id_ed25519 -known-hosts ~/.ssh/known_hosts \
//	    -dsn 'etl:secret@tcp(orders.cluster-xyz.eu-west-1.rds.amazonaws.com:3306)/orders' \
//	    -query 'SELECT COUNT(*) FROM orders'
//
// The DSN's host is resolved by the instance, so private DNS names work.
// known_hosts must hold the instance's host key under its id (as for ssh
// with a ProxyCommand): "i-0123456789abcdef0 ssh-ed25519 AAAA...".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/aws/aws-sdk-go-v2/config"

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
	dsn := flag.String("dsn", "", "go-sql-driver/mysql DSN, host as seen from the instance")
	query := flag.String("query", "SELECT VERSION()", "query whose first column is printed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(*region), config.WithSharedConfigProfile(*profile))
	if err != nil {
		log.Fatal(err)
	}
	// The wiring: open the tunnel, hand it to the driver.
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: awsCfg, Target: *target},
		SSH: sshx.Config{User: *user, PrivateKeyFile: *key, KnownHostsFile: *knownHosts},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()
	db, err := dialer.OpenMySQL(tun, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	rows, err := db.QueryContext(ctx, *query)
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			log.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		fmt.Println(vals...)
	}
	if err := rows.Err(); err != nil {
		log.Fatal(err)
	}
	st := tun.Stats()
	fmt.Fprintf(os.Stderr, "tunnel: session %v, %d bytes received\n", st.SessionIDs, st.BytesReceived)
}
