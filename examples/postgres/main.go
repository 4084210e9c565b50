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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/examples/internal/exampleflags"
	"github.com/jumpless/jumpless/tunnel"
)

func main() { exampleflags.Main("postgres", run) }

// run parses args, runs the query through a tunnel and prints its rows to
// stdout, one line each; the tunnel's statistics go to stderr.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var tf exampleflags.Tunnel
	fs := flag.NewFlagSet("postgres", flag.ContinueOnError)
	tf.Register(fs)
	dsn := fs.String("dsn", "", "PostgreSQL URL or keyword/value DSN, host as seen from the instance")
	query := fs.String("query", "SELECT version()", "query whose rows are printed")
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

	// The wiring: open the tunnel, hand it to pgxpool.
	tun, err := tunnel.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer tun.Close()
	poolCfg, err := dialer.ParsePgxPool(tun, *dsn)
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	rows, err := pool.Query(ctx, *query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
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
