package aliyun_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/tunnel"
)

// readmeTenLines is README's "Alibaba Cloud in ten lines": the lines
// between the README markers are the README block's lines after its first
// two (which set cfg and dsn), verbatim.
func readmeTenLines(ctx context.Context, cfg aliyun.Config, dsn string, use func(*sql.DB) error) error {
	// README begin
	tr, err := aliyun.NewTransport(cfg)
	if err != nil {
		return err
	}
	tun, err := tunnel.Open(ctx, tunnel.Config{Mode: tunnel.ModeDirect, Transport: tr.Link()}) // no SSH
	if err != nil {
		return err
	}
	defer tun.Close() // EndTerminalSession for every session
	db, err := dialer.OpenPostgres(tun, dsn)
	// README end
	if err != nil {
		return err
	}
	defer db.Close()
	return use(db)
}

// TestREADMEAlibabaTenLinesCompileAndRun guards README's Alibaba snippet:
// its block must be readmeTenLines' body (which compiles here) after a cfg
// and a dsn line, and that body must carry a query to the real PostgreSQL
// through the emulator, leaving no session open.
func TestREADMEAlibabaTenLinesCompileAndRun(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "<!-- aliyun-ten-lines:")
	if i < 0 {
		t.Fatal("README.md has no <!-- aliyun-ten-lines: --> marker")
	}
	block := readme[i:]
	start := strings.Index(block, "```go\n")
	end := strings.Index(block[start+6:], "\n```")
	if start < 0 || end < 0 {
		t.Fatal("no ```go block after the aliyun-ten-lines marker")
	}
	lines := strings.Split(block[start+6:start+6+end], "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "cfg := aliyun.Config{") || !strings.HasPrefix(lines[1], "dsn := ") {
		t.Fatalf("the README block must start with cfg := aliyun.Config{...} and dsn := ...; it is:\n%s", strings.Join(lines, "\n"))
	}
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)
	body = body[strings.Index(body, "// README begin\n")+len("// README begin\n"):]
	body = body[:strings.Index(body, "\t// README end")]
	var want []string
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		want = append(want, strings.TrimPrefix(l, "\t"))
	}
	if got := strings.Join(lines[2:], "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("README's Alibaba block differs from readmeTenLines:\n--- README\n%s\n--- readme_test.go\n%s", got, strings.Join(want, "\n"))
	}
	if n := len(lines); n > 14 {
		t.Errorf("the README block has %d lines; keep it near ten", n)
	}

	srv := newServer(t, fast())
	cfg := aliyun.Config{Region: srv.Region(), InstanceID: instance, Endpoint: srv.Endpoint(), Credential: srv.Credential()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var name string
	err = readmeTenLines(ctx, cfg, testenv.PostgresDSN(t), func(db *sql.DB) error {
		return db.QueryRowContext(ctx, "SELECT current_database()").Scan(&name)
	})
	if err != nil || name != "test" {
		t.Fatalf("readmeTenLines = %q, %v; want the database test", name, err)
	}
	waitNoSessions(t, srv)
}
