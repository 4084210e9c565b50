package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
)

// readmeWalkthrough returns the shell block that follows the walkthrough
// marker in the repository's README.md.
func readmeWalkthrough(t *testing.T) (script, repoRoot string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "<!-- walkthrough:")
	if i < 0 {
		t.Fatal("README.md has no <!-- walkthrough: --> marker")
	}
	rest := readme[i:]
	start := strings.Index(rest, "```sh\n")
	if start < 0 {
		t.Fatal("no ```sh block after the walkthrough marker")
	}
	rest = rest[start+len("```sh\n"):]
	end := strings.Index(rest, "\n```")
	if end < 0 {
		t.Fatal("walkthrough block not closed")
	}
	return rest[:end], root
}

// TestREADMEWalkthroughRunsAsWritten runs the README's CLI walkthrough, the
// block as it is written, in bash: go install, a throwaway key authorized for
// a real sshd, "jumpless emulator" in front of it, "jumpless check" with the
// local default SSH user, "jumpless forward" to the real PostgreSQL and psql
// through it. The only differences from a reader's run are the stand-ins the
// block's first line names (this test's sshd, its authorized_keys file and a
// free local port), a temporary GOPATH for go install and a temporary HOME.
func TestREADMEWalkthroughRunsAsWritten(t *testing.T) {
	script, root := readmeWalkthrough(t)
	psqlPath(t)
	for _, tool := range []string{"ssh-keygen", "ssh-keyscan", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testenv.InCI() {
				t.Fatalf("%s not installed; %s", tool, testenv.Hint)
			}
			t.Skipf("%s not installed; %s", tool, testenv.Hint)
		}
	}
	sshd := testenv.StartSSHD(t)
	pg := testenv.PostgresAddr(t)
	goEnv := func(k string) string {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", k, err)
		}
		return strings.TrimSpace(string(out))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	localPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	gopath := t.TempDir()
	env := append(baseEnv(t),
		"SSHD="+sshd.Addr,
		"PG="+pg,
		fmt.Sprintf("LOCAL_PORT=%d", localPort),
		"AUTHORIZED_KEYS="+filepath.Join(sshd.Dir, "authorized_keys"),
		"GOPATH="+gopath,
		"GOMODCACHE="+goEnv("GOMODCACHE"),
		"GOCACHE="+goEnv("GOCACHE"),
		"GOFLAGS="+goEnv("GOFLAGS"),
		"GOPROXY="+goEnv("GOPROXY"),
		"GOTOOLCHAIN=local",
		"TMPDIR="+t.TempDir(),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = root
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README walkthrough failed: %v\n--- script\n%s\n--- output\n%s", err, script, out)
	}
	for _, want := range []string{
		"[ OK ] SSH authentication   logged in as " + sshd.User,
		"[ OK ] database address " + pg,
		"All 9 checks passed",
		"PostgreSQL", // psql's answer through the forwarded port
		"tunnel closed:",
		"emulator stopped: 2 sessions started, 2 terminated", // check's and forward's
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "jumpless: ") {
		t.Errorf("a jumpless command reported an error:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(gopath, "bin", "jumpless")); err != nil {
		t.Errorf("go install did not put jumpless in $(go env GOPATH)/bin: %v", err)
	}
	t.Logf("walkthrough output:\n%s", out)
}
