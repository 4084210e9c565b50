package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/examples/internal/exampletest"
	"github.com/jumpless/jumpless/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestPostgresExampleRowsWrongOrSessionLeft runs the example as a user
// would against AWS (AWS settings from the environment, known_hosts entry
// for the instance id), with the emulator, a real sshd and the real
// PostgreSQL, and compares the printed rows with the rows inserted.
func TestPostgresExampleRowsWrongOrSessionLeft(t *testing.T) {
	t.Run("ssh", func(t *testing.T) { testPostgresExample(t, exampletest.Start) })
	t.Run("direct", func(t *testing.T) { testPostgresExample(t, exampletest.StartDirect) })
}

func testPostgresExample(t *testing.T, start func(*testing.T) *exampletest.Stack) {
	dsn := testenv.PostgresDSN(t)
	st := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	direct, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	table := pgx.Identifier{fmt.Sprintf("jl_example_pg_%d", time.Now().UnixNano()%1e9)}.Sanitize()
	if _, err := direct.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, name text NOT NULL, total bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	defer direct.Exec(context.Background(), "DROP TABLE "+table)
	var want strings.Builder
	for i := 1; i <= 50; i++ {
		name := fmt.Sprintf("row %d", i*7)
		total := int64(i) * 1_000_000_007
		if _, err := direct.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2, $3)", i, name, total); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&want, i, name, total)
	}

	st.CheckQuery(ctx, t, run, dsn, "SELECT id, name, total FROM "+table+" ORDER BY id", want.String())
}

// TestPostgresExampleBadFlagsStartSession checks that missing flags are
// reported before any SSM session is started.
func TestPostgresExampleBadFlagsStartSession(t *testing.T) {
	exampletest.Start(t).CheckBadFlags(t, run, "postgres://127.0.0.1/test")
}
