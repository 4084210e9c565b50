// Package realagent runs AWS's real amazon-ssm-agent (and finds AWS's real
// session-manager-plugin) for tests, from the builds in ../shared/peers/aws
// beside the repository (see its README; JUMPLESS_AWS_PEERS overrides the
// folder).
//
// Start unpacks the agent into a temporary folder and runs it inside a
// private network, mount and PID namespace (unshare), with a tmpfs over its
// hard-coded /var/lib/amazon and /var/log/amazon, in container mode, with a
// custom identity, dummy credentials (the emulator's), every endpoint at an
// ssmtest.Server in gateway mode and the server's CA trusted through
// SSL_CERT_FILE. The agent's namespace has its own loopback: the emulator and
// every target a test names (Agent.Forward) are made reachable at the same
// 127.0.0.1 address inside it by listeners the test process opens in that
// namespace (setns), relaying to the host's loopback. Anything else — a port
// no test forwarded — refuses the agent's connection.
//
// Stop (also run by t.Cleanup) kills the namespace's PID 1, which takes
// every process of the namespace with it, waits until none is left, and
// closes the relays, so the namespaces, the mounts and the processes all go
// away; files exist only in the test's temporary folders.
//
// Prerequisites: the binaries, root, unshare. Without the binaries a test
// is skipped; with them but without root or unshare the test is skipped on
// a developer's machine and fails in CI (CI=true), where it must run.
package realagent

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"golang.org/x/sys/unix"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// InstanceID is the instance id the agent registers as (its custom
// identity); StartSession targets it.
const InstanceID = "i-0fa4e000000000001"

// Binaries in the peers folder (gzip).
const (
	agentBin         = "amazon-ssm-agent"
	agentWorkerBin   = "ssm-agent-worker"
	sessionWorkerBin = "ssm-session-worker"
	pluginBin        = "session-manager-plugin"
)

// PeersDir returns the folder holding AWS's peer builds: JUMPLESS_AWS_PEERS,
// or ../shared/peers/aws beside the module root. ok is false when the
// folder does not hold the agent's binaries.
func PeersDir() (dir string, ok bool) {
	dir = os.Getenv("JUMPLESS_AWS_PEERS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", false
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(filepath.Dir(d), "shared", "peers", "aws")
				break
			}
			if filepath.Dir(d) == d {
				return "", false
			}
		}
	}
	for _, b := range []string{agentBin, agentWorkerBin, sessionWorkerBin} {
		if _, err := os.Stat(filepath.Join(dir, b+".gz")); err != nil {
			return dir, false
		}
	}
	return dir, true
}

// require skips t unless the agent can run here: the binaries (skip
// always), root and unshare (skip, but fail in CI).
func require(t testing.TB, bins ...string) string {
	t.Helper()
	dir, _ := PeersDir()
	missingBin := ""
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(dir, b+".gz")); err != nil {
			missingBin = b
			break
		}
	}
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root (the agent and its namespaces need it)"
	} else if _, err := exec.LookPath("unshare"); err != nil {
		missing = "unshare (util-linux) on PATH"
	}
	switch fail, msg := verdict(dir, missingBin, missing, testenv.InCI()); {
	case msg == "":
	case fail:
		t.Fatal(msg)
	default:
		t.Skip(msg)
	}
	return dir
}

// verdict applies the skip rule: without the binaries a test skips (a
// checkout without ../shared); with them, a missing prerequisite skips on a
// developer's machine and fails in CI. msg is "" when the test can run.
func verdict(dir, missingBin, missing string, ci bool) (fail bool, msg string) {
	switch {
	case missingBin != "":
		return false, fmt.Sprintf("realagent: no %s.gz in %q (AWS's peer builds, ../shared/peers/aws; JUMPLESS_AWS_PEERS overrides)", missingBin, dir)
	case missing == "":
		return false, ""
	case ci:
		return true, "realagent: the peer binaries are present but " + missing + " is missing; in CI (CI=true) the real-peer tests must run"
	default:
		return false, "realagent: needs " + missing
	}
}

// Require skips (or, in CI with the binaries present, fails) t unless the
// real agent can run here.
func Require(t testing.TB) { require(t, agentBin, agentWorkerBin, sessionWorkerBin) }

// unpack gunzips dir/name.gz into dst/name, executable.
func unpack(dir, name, dst string) (string, error) {
	in, err := os.Open(filepath.Join(dir, name+".gz"))
	if err != nil {
		return "", err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return "", fmt.Errorf("realagent: %s.gz: %w", name, err)
	}
	p := filepath.Join(dst, name)
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return "", fmt.Errorf("realagent: unpack %s: %w", name, err)
	}
	return p, out.Close()
}

// Plugin unpacks AWS's session-manager-plugin into a temporary folder and
// returns its path; t is skipped without it (the plugin needs no root).
func Plugin(t testing.TB) string {
	t.Helper()
	dir, _ := PeersDir()
	if _, err := os.Stat(filepath.Join(dir, pluginBin+".gz")); err != nil {
		t.Skipf("realagent: no %s.gz in %q", pluginBin, dir)
	}
	p, err := unpack(dir, pluginBin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// PluginCommand returns the command that runs AWS's session-manager-plugin
// bin for the StartSession answer out, the way the AWS CLI does (argv
// layout, reference §2.2; ssm-real-peers.md §1.2): the answer and the
// request req as JSON, srv's region and endpoint. The environment is clean
// (no instance metadata, no AWS config files) with srv's credentials and,
// when srv serves TLS, its CA trusted through SSL_CERT_FILE and
// AWS_CA_BUNDLE; HOME and the working folder are a temporary folder of t.
// ctx bounds the run.
func PluginCommand(t testing.TB, ctx context.Context, bin string, srv *ssmtest.Server, out *ssmsdk.StartSessionOutput, req map[string]any) *exec.Cmd {
	t.Helper()
	resp, err := json.Marshal(map[string]string{"SessionId": aws.ToString(out.SessionId), "TokenValue": aws.ToString(out.TokenValue), "StreamUrl": aws.ToString(out.StreamUrl)})
	if err != nil {
		t.Fatal(err)
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, string(resp), srv.Region(), "StartSession", "", string(reqJSON), srv.URL())
	home := t.TempDir()
	ak, sk := srv.Credentials()
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "AWS_ACCESS_KEY_ID=" + ak, "AWS_SECRET_ACCESS_KEY=" + sk,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	if pem := srv.CACertPEM(); pem != nil {
		ca := filepath.Join(home, "ca.pem")
		if err := os.WriteFile(ca, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+ca, "AWS_CA_BUNDLE="+ca)
	}
	cmd.Dir = home
	return cmd
}

// Agent is a running amazon-ssm-agent attached to an emulator.
type Agent struct {
	// Version is the AgentVersion the agent announced on its control channel.
	Version string

	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	pid     int      // host PID of the namespace's PID 1
	netns   *os.File // the agent's network namespace
	logs    testenv.SyncBuffer
	outDone chan struct{}

	mu       sync.Mutex
	stopped  bool
	forwards map[string]*forward
	wg       sync.WaitGroup
}

// Start runs the real agent attached to srv (which must have Config.TLS:
// the agent forces https and wss) and waits until its control channel is
// up. It is stopped by t.Cleanup.
func Start(t testing.TB, srv *ssmtest.Server) *Agent {
	t.Helper()
	dir := require(t, agentBin, agentWorkerBin, sessionWorkerBin)
	if srv.CACertPEM() == nil {
		t.Fatal("realagent: the emulator needs Config.TLS (the agent speaks only https/wss)")
	}
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "agent")
	if err := os.MkdirAll(filepath.Join(bin, "configuration"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{agentBin, agentWorkerBin, sessionWorkerBin} {
		if _, err := unpack(dir, b, bin); err != nil {
			t.Fatal(err)
		}
	}
	region := srv.Region()
	b := srv.AgentConfig(InstanceID)
	if err := os.WriteFile(filepath.Join(bin, "configuration", "amazon-ssm-agent.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "configuration", "seelog.xml"), []byte(seelogXML), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(ca, srv.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	ak, sk := srv.Credentials()

	a := &Agent{t: t, forwards: make(map[string]*forward), outDone: make(chan struct{})}
	// unshare's child is PID 1 of the new PID namespace; --kill-child
	// kills it (and so the namespace) if unshare dies. The script mounts
	// the tmpfs, says "ready", waits for the harness to set up the network,
	// then becomes the agent.
	a.cmd = exec.Command("unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
		"--propagation", "private", "sh", "-c", nsScript, "sh", filepath.Join(bin, agentBin))
	a.cmd.Dir = tmp
	a.cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp,
		"AWS_ACCESS_KEY_ID=" + ak, "AWS_SECRET_ACCESS_KEY=" + sk, "AWS_REGION=" + region,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"SSL_CERT_FILE=" + ca,
	}
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stderr = a.cmd.Stdout
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("realagent: start unshare: %v", err)
	}
	t.Cleanup(a.Stop)
	br := bufio.NewReader(out)
	ready := make(chan error, 1)
	go func() {
		line, err := br.ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
		if err == nil {
			_, _ = io.Copy(&a.logs, br)
		}
		close(a.outDone)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("realagent: namespace setup failed: %v; output:\n%s", err, a.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("realagent: namespace setup timed out")
	}
	if a.pid, err = childPID(a.cmd.Process.Pid); err != nil {
		t.Fatalf("realagent: %v", err)
	}
	if a.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", a.pid)); err != nil {
		t.Fatalf("realagent: %v", err)
	}
	if err := a.inNetns(loopbackUp); err != nil {
		t.Fatalf("realagent: bring up lo: %v", err)
	}
	a.Forward(u.Host)
	if _, err := io.WriteString(a.stdin, "go\n"); err != nil {
		t.Fatalf("realagent: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := srv.WaitAgent(ctx, InstanceID)
	if err != nil {
		t.Fatalf("realagent: %v; agent output:\n%s", err, a.logs.String())
	}
	a.Version = v
	return a
}

// nsScript runs as PID 1 of the new namespaces ($1: the agent binary).
// The agent's data paths are hard-coded; a tmpfs goes over each (or over
// its parent when it does not exist, so nothing is created on the host).
const nsScript = `set -e
for d in /var/lib/amazon /var/log/amazon; do
  if [ -d "$d" ]; then mount -t tmpfs -o mode=0755,size=256m tmpfs "$d"
  else mount -t tmpfs -o mode=0755,size=256m tmpfs "$(dirname "$d")"; mkdir -p "$d"; fi
done
echo ready
read go
exec "$1"
`

const seelogXML = `<seelog type="sync" minlevel="info">
  <outputs formatid="fmt"><console/><rollingfile type="size" filename="/var/log/amazon/ssm/amazon-ssm-agent.log" maxsize="30000000" maxrolls="2"/></outputs>
  <formats><format id="fmt" format="%Date(15:04:05.000) %LEVEL %Msg%n"/></formats>
</seelog>
`

// childPID returns the single child of pid (unshare --fork's child).
func childPID(pid int) (int, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return 0, err
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("unshare (pid %d) has no child", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNetns runs fn on an OS thread switched into the agent's network
// namespace. Sockets fn creates stay in that namespace.
func (a *Agent) inNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if switching back fails: it then
		// exits with the goroutine instead of running other goroutines
		// in the wrong namespace.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Setns(int(a.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// loopbackUp sets lo up in the current thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// forward relays connections to addr inside the agent's namespace to addr on
// the host.
type forward struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Forward makes the host's TCP address addr ("127.0.0.1:5432") reachable at
// the same address inside the agent's network namespace (the agent dials its
// targets there). Forwarding an address twice is a no-op.
func (a *Agent) Forward(addr string) {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		a.t.Fatal("realagent: Forward after Stop")
	}
	if a.forwards[addr] != nil {
		return
	}
	var ln net.Listener
	err := a.inNetns(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		a.t.Fatalf("realagent: forward %s: %v", addr, err)
	}
	f := &forward{ln: ln, conns: make(map[net.Conn]struct{})}
	a.forwards[addr] = f
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				f.relay(c, addr)
			}()
		}
	}()
}

func (f *forward) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forward) relay(in net.Conn, addr string) {
	if !f.track(in) {
		return
	}
	defer in.Close()
	out, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return // the agent sees its connection accepted and closed
	}
	if !f.track(out) {
		return
	}
	defer out.Close()
	done := make(chan struct{})
	go func() {
		pipe(out, in)
		close(done)
	}()
	pipe(in, out)
	<-done
}

// pipe copies src to dst and then half-closes dst (or closes both on error).
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}

func (f *forward) close() {
	f.ln.Close()
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Logs returns what the agent printed so far (its seelog console output).
func (a *Agent) Logs() string { return a.logs.String() }

// FileLog returns the log file the agent and its workers write inside the
// namespace (/var/log/amazon/ssm/amazon-ssm-agent.log on its tmpfs), read
// through /proc while the agent runs.
func (a *Agent) FileLog() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/var/log/amazon/ssm/amazon-ssm-agent.log", a.pid))
	return string(b)
}

// PID returns the host PID of the agent's namespace's PID 1 (the agent).
func (a *Agent) PID() int { return a.pid }

// Processes returns the host PIDs of every process in the agent's PID
// namespace (the agent and its workers).
func (a *Agent) Processes() []int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", a.pid))
	if err != nil {
		return nil
	}
	return pidsInNamespace(ns)
}

func pidsInNamespace(ns string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ErrLeftBehind reports a process of the agent's namespace that outlived Stop.
var ErrLeftBehind = errors.New("realagent: agent processes left behind")

// Stop kills the agent's namespace (its PID 1, and with it every process
// in it), closes the relays and waits until no process of the namespace is
// left. It is idempotent; t.Cleanup calls it.
func (a *Agent) Stop() {
	if err := a.stop(); err != nil {
		a.t.Error(err)
	}
}

func (a *Agent) stop() error {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return nil
	}
	a.stopped = true
	fw := a.forwards
	a.forwards = nil
	a.mu.Unlock()
	ns := ""
	if a.pid > 0 {
		ns, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", a.pid))
	}
	if a.pid > 0 {
		_ = syscall.Kill(a.pid, syscall.SIGKILL)
	}
	_ = a.cmd.Process.Kill()
	_ = a.stdin.Close()
	_ = a.cmd.Wait()
	for _, f := range fw {
		f.close()
	}
	a.wg.Wait()
	if a.netns != nil {
		a.netns.Close()
	}
	<-a.outDone
	if ns == "" {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := pidsInNamespace(ns)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: pids %v", ErrLeftBehind, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
