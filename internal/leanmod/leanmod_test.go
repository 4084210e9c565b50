package leanmod

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// heavy are module path fragments a consumer of the library must never get:
// the quickstart's embedded MySQL engine and its logging and RPC stacks,
// Alibaba Cloud's SDK and credentials library (and the jumpless modules that
// bring them: the Alibaba transport and the command).
var heavy = []string{
	"dolthub", "google.golang.org/grpc", "sirupsen/logrus", "google.golang.org/genproto",
	"alibabacloud-go/", "aliyun/credentials-go", "tjfoc/gmsm", "clbanning/mxj",
	"github.com/jumpless/jumpless/aliyun", "github.com/jumpless/jumpless/cmd/jumpless",
}

// TestConsumerModuleGraphHasNoExampleDependencies builds a consumer module
// that imports tunnel and dialer (the README's "Use it" program), points it at
// this repository with a replace directive, and checks `go list -m all`: a
// program importing jumpless must not get the examples' dependencies, nor
// Alibaba's SDK (the command's), in its module graph.
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

// TestLibraryModuleRequiresNoAlibabaSDK guards the library's own go.mod: its
// module graph (`go list -m all` in the repository root, without go.work)
// must hold none of the heavy modules. The CLI links Alibaba's SDK for
// --cloud aliyun; it lives in cmd/jumpless/go.mod so that this stays true.
func TestLibraryModuleRequiresNoAlibabaSDK(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "list", "-m", "-f", "{{.Path}}", "all")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -m all: %v\n%s", err, out)
	}
	mods := strings.Fields(string(out))
	if len(mods) == 0 || mods[0] != "github.com/jumpless/jumpless" {
		t.Fatalf("go list -m all in %s did not list the library module first: %q", root, out)
	}
	for _, m := range mods {
		for _, h := range heavy {
			if strings.Contains(m, h) {
				t.Errorf("the library module's graph has %s (only the aliyun, cmd/jumpless or examples modules may)", m)
			}
		}
	}
}
