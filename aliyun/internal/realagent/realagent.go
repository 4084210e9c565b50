// Package realagent runs Alibaba's real Cloud Assistant agent
// (aliyun-service 2.2.3.578 from ../shared/peers/aliyun, built from the
// public source) for fidelity tests, pointed at an emulator's server side
// (aliyuntest.Config.RealAgent).
//
// The agent runs as root in a private mount and PID namespace (tmpfs over
// /var/tmp for its pid file; its tree in a temporary folder), with only
// PATH, HOME, TMPDIR, SSL_CERT_FILE and ALIYUN_ASSIST_SERVER_HOST in its
// environment, as ../shared/docs/aliyun-measured.md §2 describes. It
// shares the host's loopback so that it reaches the emulator, sshd and
// the databases. Tests skip when the binary or root is missing; when both
// are there (CI runs as root with ../shared beside the checkout) they run.
package realagent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
)

// Version of the agent build and the sha256 of its uncompressed binary
// (../shared/peers/aliyun/README.md).
const (
	Version = "2.2.3.578"
	SHA256  = "0b252e09384475fc41960dd60fa84172a6b22cc300188fff342580cf359bccd7"
)

// Find returns the path of aliyun-service.gz beside the repository
// (../shared/peers/aliyun), or "" if absent. JUMPLESS_SHARED overrides
// the shared folder.
func Find() string {
	var dirs []string
	if d := os.Getenv("JUMPLESS_SHARED"); d != "" {
		dirs = append(dirs, d)
	}
	wd, _ := os.Getwd()
	// Up to the repository root (the directory with go.work; aliyun has a
	// go.mod of its own), each parent's sibling "shared".
	for d := wd; ; d = filepath.Dir(d) {
		dirs = append(dirs, filepath.Join(d, "..", "shared"))
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "peers", "aliyun", "aliyun-service.gz")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Agent is a running agent.
type Agent struct {
	t    testing.TB
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
	once sync.Once
}

// Start unpacks and starts the agent with ALIYUN_ASSIST_SERVER_HOST=host
// and SSL_CERT_FILE holding caPEM. It skips t when the binary or root is
// missing. The agent is stopped in t.Cleanup.
func Start(t testing.TB, host string, caPEM []byte) *Agent {
	t.Helper()
	gz := Find()
	if gz == "" {
		t.Skip("realagent: ../shared/peers/aliyun/aliyun-service.gz not found (set JUMPLESS_SHARED)")
	}
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root (private mount and PID namespaces)"
	} else if _, err := exec.LookPath("unshare"); err != nil {
		missing = "unshare (util-linux) on PATH"
	}
	if fail, msg := verdict(missing, testenv.InCI()); fail {
		t.Fatal(msg)
	} else if msg != "" {
		t.Skip(msg)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root", Version)
	for _, d := range []string{root, filepath.Join(dir, "home"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(root, "aliyun-service")
	if err := unpack(gz, bin); err != nil {
		t.Fatalf("realagent: %v", err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	script := "mount -t tmpfs tmpfs /var/tmp && exec " + bin
	cmd := exec.Command("unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"SSL_CERT_FILE=" + ca,
		"ALIYUN_ASSIST_SERVER_HOST=" + host,
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("realagent: %v", err)
	}
	a := &Agent{t: t, cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("realagent output:\n%s\nagent log (tail):\n%s", out.String(), a.LogTail(60))
		}
	})
	return a
}

// verdict applies the skip rule once the binary is there: a missing
// prerequisite skips, except in CI, where it fails. msg is "" when the
// agent can run.
func verdict(missing string, ci bool) (fail bool, msg string) {
	switch {
	case missing == "":
		return false, ""
	case ci:
		return true, "realagent: ../shared/peers/aliyun is present but " + missing + " is missing; in CI (CI=true) the real-agent tests must run"
	}
	return false, "realagent: the real agent needs " + missing
}

func unpack(gz, bin string) error {
	f, err := os.Open(gz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	o, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(o, h), zr); err != nil {
		o.Close()
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != SHA256 {
		return &shaError{got: got}
	}
	return nil
}

type shaError struct{ got string }

func (e *shaError) Error() string {
	return "aliyun-service has sha256 " + e.got + ", want " + SHA256 + " (../shared/peers/aliyun/README.md)"
}

// Done is closed when the agent process has exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// LogTail returns the last n lines of the agent's main log.
func (a *Agent) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "root", Version, "log", "aliyun_assist_main.log"))
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop kills the agent's namespace and waits for it.
func (a *Agent) Stop() {
	a.once.Do(func() {
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case <-a.done:
		case <-ctx.Done():
			a.t.Errorf("realagent: the agent did not exit")
		}
	})
}
