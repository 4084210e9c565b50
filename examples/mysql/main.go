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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/examples/internal/exampleflags"
	"github.com/jumpless/jumpless/tunnel"
)

func main() { exampleflags.Main("mysql", run) }

// run parses args, runs the query through a tunnel and prints its rows to
// stdout, one line each; the tunnel's statistics go to stderr.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var tf exampleflags.Tunnel
	fs := flag.NewFlagSet("mysql", flag.ContinueOnError)
	tf.Register(fs)
	dsn := fs.String("dsn", "", "go-sql-driver/mysql DSN, host as seen from the instance")
	query := fs.String("query", "SELECT VERSION()", "query whose rows are printed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" {
		return errors.New("-dsn is required")
	}
	cfg, err := tf.Config(ctx)
	if err != nil {
		return err
	}

	// The wiring: open the tunnel, hand it to the driver.
	tun, err := tunnel.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer tun.Close()
	db, err := dialer.OpenMySQL(tun, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	rows, err := db.QueryContext(ctx, *query)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		fmt.Fprintln(stdout, vals...)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	st := tun.Stats()
	fmt.Fprintf(os.Stderr, "tunnel: session %v, %d bytes received\n", st.SessionIDs, st.BytesReceived)
	return nil
}
