// Command etl copies a table from MySQL to PostgreSQL, both in private
// subnets, through ONE tunnel (one SSM session, one SSH connection, one
// direct-tcpip channel per database connection), and checks the row counts
// at both ends:
//
//	go run ./examples/etl -target i-0123456789abcdef0 -region eu-west-1 \
//	    -key ~/.ssh/id_ed25519 -known-hosts ~/.ssh/known_hosts \
//	    -mysql-dsn 'etl:secret@tcp(orders.internal:3306)/orders' -src-table orders \
//	    -pg-dsn 'postgres://etl@warehouse.internal:5432/dw' -dst-table orders_raw
//
// Rows are streamed (MySQL rows → PostgreSQL COPY) without being held in
// memory. The destination table is created when missing (MySQL column types
// mapped to PostgreSQL ones) and must be empty, so that the counts prove
// the copy: source count = rows copied = destination count.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/examples/internal/exampleflags"
	"github.com/jumpless/jumpless/tunnel"
)

func main() { exampleflags.Main("etl", run) }

// run parses args, opens the tunnel and runs the copy, reporting the
// counts and the tunnel's statistics on stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var tf exampleflags.Tunnel
	var job copyJob
	fs := flag.NewFlagSet("etl", flag.ContinueOnError)
	tf.Register(fs)
	fs.StringVar(&job.MySQLDSN, "mysql-dsn", "", "source: go-sql-driver/mysql DSN, host as seen from the instance")
	fs.StringVar(&job.SrcTable, "src-table", "", "source table")
	fs.StringVar(&job.PgDSN, "pg-dsn", "", "destination: PostgreSQL DSN, host as seen from the instance")
	fs.StringVar(&job.DstTable, "dst-table", "", "destination table (created if missing; must be empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if job.MySQLDSN == "" || job.SrcTable == "" || job.PgDSN == "" || job.DstTable == "" {
		return errors.New("-mysql-dsn, -src-table, -pg-dsn and -dst-table are required")
	}
	cfg, err := tf.Config(ctx)
	if err != nil {
		return err
	}

	// The wiring: one tunnel; the job hands it to both drivers.
	tun, err := tunnel.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer tun.Close()

	// Fail fast if the tunnel dies mid-copy: cancel the job with the cause.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-tun.Done():
			cancel(tun.Err())
		case <-ctx.Done():
		}
	}()

	n, err := job.Run(ctx, tun, stdout)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w (tunnel: %v)", err, cause)
		}
		return err
	}
	st := tun.Stats()
	fmt.Fprintf(stdout, "copied %d rows through session %v: %d bytes in, %d bytes out\n", n, st.SessionIDs, st.BytesReceived, st.BytesSent)
	return nil
}

// copyJob copies SrcTable (MySQL) to DstTable (PostgreSQL).
type copyJob struct {
	MySQLDSN, SrcTable string
	PgDSN, DstTable    string
}

// Run copies the table through d and checks source count = rows copied =
// destination count. It returns the number of rows copied.
func (j copyJob) Run(ctx context.Context, d dialer.ContextDialer, out io.Writer) (int64, error) {
	// Source: MySQL through the tunnel. parseTime gives time.Time for
	// DATE/DATETIME columns, which PostgreSQL's COPY needs.
	mcfg, err := mysql.ParseDSN(j.MySQLDSN)
	if err != nil {
		return 0, err
	}
	mcfg.ParseTime = true
	dialer.MySQL(d, mcfg)
	connector, err := mysql.NewConnector(mcfg)
	if err != nil {
		return 0, err
	}
	src := sql.OpenDB(connector)
	defer src.Close()

	// Destination: PostgreSQL through the same tunnel.
	dst, err := dialer.ConnectPgx(ctx, d, j.PgDSN)
	if err != nil {
		return 0, err
	}
	defer dst.Close(context.Background())

	srcName := "`" + strings.ReplaceAll(j.SrcTable, "`", "``") + "`"
	dstName := pgx.Identifier{j.DstTable}.Sanitize()

	var srcCount int64
	if err := src.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+srcName).Scan(&srcCount); err != nil {
		return 0, fmt.Errorf("source count: %w", err)
	}
	fmt.Fprintf(out, "source %s: %d rows\n", j.SrcTable, srcCount)

	rows, err := src.QueryContext(ctx, "SELECT * FROM "+srcName)
	if err != nil {
		return 0, fmt.Errorf("source: %w", err)
	}
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return 0, err
	}
	names := make([]string, len(cols))
	defs := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name()
		defs[i] = pgx.Identifier{c.Name()}.Sanitize() + " " + pgType(c)
	}
	if _, err := dst.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+dstName+" ("+strings.Join(defs, ", ")+")"); err != nil {
		return 0, fmt.Errorf("destination: %w", err)
	}
	var before int64
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM "+dstName).Scan(&before); err != nil {
		return 0, fmt.Errorf("destination count: %w", err)
	}
	if before != 0 {
		return 0, fmt.Errorf("destination %s is not empty (%d rows): counts would prove nothing", j.DstTable, before)
	}

	dest := make([]any, len(cols))
	for i, c := range cols {
		dest[i] = reflect.New(c.ScanType()).Interface()
	}
	vals := make([]any, len(cols))
	copied, err := dst.CopyFrom(ctx, pgx.Identifier{j.DstTable}, names, pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		for i, p := range dest {
			v, err := plain(p, cols[i])
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", names[i], err)
			}
			vals[i] = v
		}
		return vals, nil
	}))
	if err != nil {
		return copied, fmt.Errorf("copy: %w", err)
	}
	var dstCount int64
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM "+dstName).Scan(&dstCount); err != nil {
		return copied, fmt.Errorf("destination count: %w", err)
	}
	fmt.Fprintf(out, "destination %s: %d rows (copied %d)\n", j.DstTable, dstCount, copied)
	if srcCount != copied || dstCount != copied {
		return copied, fmt.Errorf("row counts differ: source %d, copied %d, destination %d", srcCount, copied, dstCount)
	}
	return copied, nil
}

// plain turns a scanned value (pointer to the driver's scan type) into a
// value pgx can COPY: nil for SQL NULL, string for text and decimals.
func plain(p any, col *sql.ColumnType) (any, error) {
	v := reflect.ValueOf(p).Elem().Interface()
	if dv, ok := v.(driver.Valuer); ok {
		var err error
		if v, err = dv.Value(); err != nil {
			return nil, err
		}
	}
	if b, ok := v.(sql.RawBytes); ok {
		v = []byte(b)
	}
	if b, ok := v.([]byte); ok {
		if b == nil {
			return nil, nil
		}
		if pgType(col) != "bytea" {
			return string(b), nil
		}
		return append([]byte(nil), b...), nil
	}
	return v, nil
}

// pgType maps a MySQL column type to the PostgreSQL type of the copy.
func pgType(c *sql.ColumnType) string {
	switch t := c.DatabaseTypeName(); t {
	case "TINYINT", "SMALLINT", "UNSIGNED TINYINT", "YEAR":
		return "smallint"
	case "MEDIUMINT", "INT", "UNSIGNED SMALLINT", "UNSIGNED MEDIUMINT":
		return "integer"
	case "BIGINT", "UNSIGNED INT":
		return "bigint"
	case "UNSIGNED BIGINT":
		return "numeric(20)"
	case "DECIMAL":
		if p, s, ok := c.DecimalSize(); ok {
			return fmt.Sprintf("numeric(%d,%d)", p, s)
		}
		return "numeric"
	case "FLOAT":
		return "real"
	case "DOUBLE":
		return "double precision"
	case "DATE":
		return "date"
	case "DATETIME", "TIMESTAMP":
		return "timestamp"
	case "TIME":
		return "interval"
	case "JSON":
		return "jsonb"
	case "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY", "BIT", "GEOMETRY":
		return "bytea"
	default: // CHAR, VARCHAR, TEXT..., ENUM, SET
		return "text"
	}
}
