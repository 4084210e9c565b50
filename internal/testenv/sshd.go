package testenv

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is the OpenSSH server binary StartSSHD runs (Debian's
// openssh-server package).
const SSHDPath = "/usr/sbin/sshd"

// SSHD is a real OpenSSH sshd listening on 127.0.0.1, started by StartSSHD
// and stopped in the test's cleanup.
type SSHD struct {
	// Addr is the "127.0.0.1:port" the server listens on.
	Addr string
	// User is the login name whose key is authorized (the current user).
	User string
	// HostKey is the server's ed25519 host public key.
	HostKey ssh.PublicKey
	// HostKeyFingerprint is ssh.FingerprintSHA256(HostKey) ("SHA256:...").
	HostKeyFingerprint string
	// HostKeyLine is HostKey in authorized_keys format ("ssh-ed25519 AAAA...").
	HostKeyLine string
	// ClientKeyPath is an unencrypted OpenSSH-format ed25519 private key
	// file (mode 0600) authorized to log in as User.
	ClientKeyPath string
	// ClientSigner is the signer for the key in ClientKeyPath.
	ClientSigner ssh.Signer
	// KnownHostsPath is a known_hosts file holding HostKey for Addr
	// (written as "[127.0.0.1]:port").
	KnownHostsPath string
	// InstanceConnectKeysPath is a second authorized_keys file for User,
	// empty at start, that the server also reads: an emulated EC2 Instance
	// Connect (ssmtest.Config.InstanceConnect) installs pushed keys there.
	InstanceConnectKeysPath string
	// Dir is the server's private temporary directory.
	Dir string

	t        testing.TB
	cmd      *exec.Cmd
	logs     *SyncBuffer
	exited   chan struct{}
	authPath string
	authMu   sync.Mutex
	stopOnce sync.Once
}

// StartSSHD starts /usr/sbin/sshd (sshd -D -e -f <config>) on
// 127.0.0.1:<free port> with a freshly generated ed25519 host key and an
// ed25519 client key authorized for the current user, all in t.TempDir().
// Public key authentication and TCP forwarding (direct-tcpip) are enabled;
// passwords, PAM and StrictModes are off. It returns once the server sends
// its SSH banner; the server and its per-connection children are stopped in
// t.Cleanup (or earlier by Stop).
//
// When sshd is not installed it skips the test (fails it in CI, CI=true)
// with a hint to run scripts/test-env.sh.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		unavailable(t, "testenv: OpenSSH server %s not found (install openssh-server)", SSHDPath)
		return nil
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		unavailable(t, "testenv: sshd privilege-separation directory /run/sshd missing and cannot be created (%v)", err)
		return nil
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("testenv: current user: %v", err)
	}
	dir, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &SSHD{User: u.Username, Dir: dir, t: t}

	hostPub, hostPath := writeEd25519Key(t, dir, "ssh_host_ed25519_key")
	s.HostKey = hostPub
	s.HostKeyFingerprint = ssh.FingerprintSHA256(hostPub)
	s.HostKeyLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub)))

	clientPub, clientPath := writeEd25519Key(t, dir, "id_ed25519")
	s.ClientKeyPath = clientPath
	pemBytes, err := os.ReadFile(clientPath)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s.ClientSigner, err = ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatalf("testenv: parse client key: %v", err)
	}
	s.authPath = filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(s.authPath, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	s.InstanceConnectKeysPath = filepath.Join(dir, "instance_connect_keys")
	if err := os.WriteFile(s.InstanceConnectKeysPath, nil, 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	permitRoot := "no"
	if os.Geteuid() == 0 {
		permitRoot = "prohibit-password"
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s %s
PermitRootLogin %s
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
PrintMotd no
MaxStartups 200
MaxSessions 200
LoginGraceTime 60
LogLevel VERBOSE
`, port, hostPath, filepath.Join(dir, "sshd.pid"), s.authPath, s.InstanceConnectKeysPath, permitRoot)
		confPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		lastErr = s.start(confPath, addr)
		if lastErr == nil {
			s.Addr = addr
			s.KnownHostsPath = s.WriteKnownHosts(false, addr)
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("testenv: sshd did not start: %v", lastErr)
	return nil
}

// start runs sshd and waits for its banner; on failure nothing is left
// running.
func (s *SSHD) start(confPath, addr string) error {
	logs := &SyncBuffer{}
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", confPath)
	cmd.Stdout = logs
	cmd.Stderr = logs
	cmd.Dir = s.Dir
	// Pdeathsig: if the test binary dies (timeout panic, kill) before
	// cleanup runs, the kernel kills the listener; its per-connection
	// children exit when their sockets close with the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.logs, s.exited = cmd, logs, exited

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited: %s", strings.TrimSpace(logs.String()))
		default:
		}
		if err := readBanner(addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("sshd not answering on %s after 15s: %v; logs: %s", addr, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readBanner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	if n >= 4 && string(buf[:4]) == "SSH-" {
		return nil
	}
	if err == nil {
		err = errors.New("unexpected banner")
	}
	return err
}

func (s *SSHD) kill() {
	pid := s.cmd.Process.Pid
	// Per-connection children call setsid, so they are not in sshd's
	// process group: collect all descendants first, then stop the
	// listener and kill them.
	kids := descendants(pid)
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	// Children forked while we were killing: kill them too.
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
}

// descendants returns the pids of all processes descending from pid, read
// from /proc.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Format: pid (comm) state ppid ...; comm may contain spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q, n := parent[p], 0; q > 1 && n < 64; q, n = parent[q], n+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// Stop stops the server and all its connections now (tests use it to
// simulate a dead bastion). It is idempotent and also runs at cleanup.
func (s *SSHD) Stop() {
	s.stopOnce.Do(func() {
		s.kill()
		if s.t.Failed() {
			s.t.Logf("sshd logs:\n%s", s.logs.String())
		}
	})
}

// Logs returns what sshd logged so far (LogLevel VERBOSE).
func (s *SSHD) Logs() string { return s.logs.String() }

// AuthorizeKey adds pub to the server's authorized_keys, so that it can log
// in as User.
func (s *SSHD) AuthorizeKey(pub ssh.PublicKey) {
	s.t.Helper()
	s.authMu.Lock()
	defer s.authMu.Unlock()
	f, err := os.OpenFile(s.authPath, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatalf("testenv: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		s.t.Fatalf("testenv: %v", err)
	}
}

// AuthorizedKeysPath is the server's authorized_keys file (for emulators
// that install keys themselves, e.g. Alibaba's temporary keys).
func (s *SSHD) AuthorizedKeysPath() string { return s.authPath }

// WriteKnownHosts writes a new known_hosts file in the server's directory
// mapping each alias (an instance id, "host", or "host:port") to the
// server's host key, hashed (|1|salt|hash) when hashed is true, and returns
// its path.
func (s *SSHD) WriteKnownHosts(hashed bool, aliases ...string) string {
	s.t.Helper()
	return WriteKnownHosts(s.t, s.HostKey, hashed, aliases...)
}

// WriteKnownHosts writes a known_hosts file in a new temporary directory
// mapping each alias to key (one line per alias, hashed when hashed is true)
// and returns its path. Tests use it with a wrong key to provoke host key
// mismatches.
func WriteKnownHosts(t testing.TB, key ssh.PublicKey, hashed bool, aliases ...string) string {
	t.Helper()
	var b strings.Builder
	for _, a := range aliases {
		name := knownhosts.Normalize(a)
		if hashed {
			name = knownhosts.HashHostname(name)
		}
		b.WriteString(name + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// NewEd25519Key returns a new ed25519 signer and the path of its
// unencrypted OpenSSH-format private key file in a new temporary directory.
func NewEd25519Key(t testing.TB) (ssh.Signer, string) {
	t.Helper()
	_, p := writeEd25519Key(t, t.TempDir(), "id_ed25519")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return s, p
}

func writeEd25519Key(t testing.TB, dir, name string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "jumpless-test")
	if err != nil {
		t.Fatalf("testenv: marshal key: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(p+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return sshPub, p
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, for capturing
// logs (an sshd's, a slog handler's) while a test runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
