package leanmod

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// heavy are module path fragments a consumer of the library must never get:
// the quickstart's embedded MySQL engine and its logging and RPC stacks.
var heavy = []string{"dolthub", "google.golang.org/grpc", "sirupsen/logrus", "google.golang.org/genproto"}

// TestConsumerModuleGraphHasNoExampleDependencies builds a consumer module
// that imports tunnel and dialer (the README's "Use it" program), points it at
// this repository with a replace directive, and checks `go list -m all`: a
// program importing jumpless must not get the examples' dependencies in its
// module graph.
func TestConsumerModuleGraphHasNoExampleDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/consumer\n\ngo 1.26\n\nrequire github.com/jumpless/jumpless v0.0.0\n\nreplace github.com/jumpless/jumpless => "+root+"\n")
	write("main.go", `package main

import (
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/tunnel"
)

var (
	_ = tunnel.Open
	_ = dialer.OpenMySQL
)

func main() {}
`)
	run := func(args ...string) string {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("mod", "tidy")
	mods := strings.Fields(strings.TrimSpace(run("list", "-m", "-f", "{{.Path}}", "all")))
	for _, m := range mods {
		for _, h := range heavy {
			if strings.Contains(m, h) {
				t.Errorf("consumer module graph has %s (a dependency of the examples, not of the library)", m)
			}
		}
	}
	run("build", "-o", os.DevNull, ".")
	t.Logf("a consumer importing tunnel and dialer: %d modules in `go list -m all`", len(mods))
}
