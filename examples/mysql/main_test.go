package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/examples/internal/exampletest"
	"github.com/jumpless/jumpless/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestMySQLExampleRowsWrongOrSessionLeft runs the example as a user would
// against AWS (AWS settings from the environment, known_hosts entry for
// the instance id), with the emulator, a real sshd and the real MariaDB,
// and compares the printed rows with the rows inserted.
func TestMySQLExampleRowsWrongOrSessionLeft(t *testing.T) {
	t.Run("ssh", func(t *testing.T) { testMySQLExample(t, exampletest.Start) })
	t.Run("direct", func(t *testing.T) { testMySQLExample(t, exampletest.StartDirect) })
}

func testMySQLExample(t *testing.T, start func(*testing.T) *exampletest.Stack) {
	dsn := testenv.MySQLDSN(t)
	st := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	direct, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	table := fmt.Sprintf("jl_example_mysql_%d", time.Now().UnixNano()%1e9)
	if _, err := direct.ExecContext(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(10,2) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.ExecContext(context.Background(), "DROP TABLE "+table) })
	var want strings.Builder
	for i := 1; i <= 50; i++ {
		name := fmt.Sprintf("row %d", i*7)
		amount := fmt.Sprintf("%d.%02d", i*3, i%100)
		if _, err := direct.ExecContext(ctx, "INSERT INTO "+table+" VALUES (?, ?, ?)", i, name, amount); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&want, i, name, amount)
	}

	st.CheckQuery(ctx, t, run, dsn, "SELECT id, name, amount FROM "+table+" ORDER BY id", want.String())
}

// TestMySQLExampleBadFlagsStartSession checks that missing flags are
// reported before any SSM session is started.
func TestMySQLExampleBadFlagsStartSession(t *testing.T) {
	exampletest.Start(t).CheckBadFlags(t, run, "root@tcp(127.0.0.1:3306)/test")
}
