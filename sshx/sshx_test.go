package sshx

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ---------------------------------------------------------------- helpers

// keygen creates a key with the real ssh-keygen and returns its path and
// public key. format is "" (OpenSSH) or "PEM".
func keygen(t *testing.T, typ, format, passphrase string) (string, ssh.PublicKey) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if testenv.InCI() {
			t.Fatalf("ssh-keygen missing; %s", testenv.Hint)
		}
		t.Skipf("ssh-keygen missing; %s", testenv.Hint)
	}
	p := filepath.Join(t.TempDir(), "id_"+typ)
	args := []string{"-q", "-t", typ, "-N", passphrase, "-C", "sshx-test", "-f", p}
	if typ == "rsa" {
		args = append(args, "-b", "2048")
	}
	if format != "" {
		args = append(args, "-m", format)
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
	}
	b, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return p, pub
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connect dials s and runs NewClient with cfg; when conn is non-nil it is
// used instead.
func connect(t *testing.T, s *testenv.SSHD, cfg Config) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.User == "" {
		cfg.User = s.User
	}
	c, err := NewClient(ctx, dial(t, s.Addr), s.Addr, cfg)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func mustConnect(t *testing.T, s *testenv.SSHD, cfg Config) *Client {
	t.Helper()
	c, err := connect(t, s, cfg)
	if err != nil {
		t.Fatalf("NewClient: %v\nsshd logs:\n%s", err, s.Logs())
	}
	return c
}

// assertNoSecrets fails if err's message contains the passphrase or any
// line of the private key file's body.
func assertNoSecrets(t *testing.T, err error, keyPath string, passphrase string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if passphrase != "" && strings.Contains(msg, passphrase) {
		t.Errorf("error contains the passphrase: %q", msg)
	}
	if keyPath == "" {
		return
	}
	b, rerr := os.ReadFile(keyPath)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if len(line) < 16 || strings.HasPrefix(line, "-----") || strings.Contains(line, ":") {
			continue
		}
		if strings.Contains(msg, line) || strings.Contains(msg, line[:16]) {
			t.Errorf("error contains key material: %q", msg)
			return
		}
	}
}

// roundTrip checks an echo connection.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %q want %q", got, msg)
	}
}

// stallConn passes traffic until stall is called; then reads block (and
// whatever arrives is dropped) until Close, like a dead SSM path.
type stallConn struct {
	net.Conn
	stalled   atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func newStallConn(c net.Conn) *stallConn { return &stallConn{Conn: c, closed: make(chan struct{})} }

func (s *stallConn) stall() { s.stalled.Store(true) }

func (s *stallConn) Read(p []byte) (int, error) {
	if !s.stalled.Load() {
		n, err := s.Conn.Read(p)
		if !s.stalled.Load() {
			return n, err
		}
	}
	<-s.closed
	return 0, net.ErrClosed
}

func (s *stallConn) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.Conn.Close()
}

func (s *stallConn) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// ---------------------------------------------------------------- auth

// TestConnectsWithEveryKeyTypeAndFormat guards key parsing against real
// ssh-keygen output: RSA, ECDSA, Ed25519 in OpenSSH and PEM formats.
func TestConnectsWithEveryKeyTypeAndFormat(t *testing.T) {
	s := testenv.StartSSHD(t)
	for _, tc := range []struct{ typ, format string }{
		{"ed25519", ""}, {"rsa", ""}, {"rsa", "PEM"}, {"ecdsa", ""}, {"ecdsa", "PEM"}, {"ecdsa", "PKCS8"},
	} {
		t.Run(tc.typ+"/"+tc.format, func(t *testing.T) {
			path, pub := keygen(t, tc.typ, tc.format, "")
			s.AuthorizeKey(pub)
			c := mustConnect(t, s, Config{PrivateKeyFile: path, HostKey: s.HostKey})
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			// Same key passed as bytes.
			b, _ := os.ReadFile(path)
			c = mustConnect(t, s, Config{PrivateKey: b, HostKey: s.HostKey})
			c.Close()
		})
	}
}

// TestEncryptedKeyWithRightPassphraseConnects covers OpenSSH (bcrypt) and
// legacy PEM encryption.
func TestEncryptedKeyWithRightPassphraseConnects(t *testing.T) {
	s := testenv.StartSSHD(t)
	for _, tc := range []struct{ typ, format string }{{"ed25519", ""}, {"rsa", "PEM"}} {
		t.Run(tc.typ+"/"+tc.format, func(t *testing.T) {
			path, pub := keygen(t, tc.typ, tc.format, "correct horse")
			s.AuthorizeKey(pub)
			c := mustConnect(t, s, Config{PrivateKeyFile: path, Passphrase: []byte("correct horse"), HostKey: s.HostKey})
			c.Close()
		})
	}
}

// TestWrongPassphraseIsErrPassphraseWrong guards detection for both the
// OpenSSH and PEM formats, and that the conn is closed.
func TestWrongPassphraseIsErrPassphraseWrong(t *testing.T) {
	s := testenv.StartSSHD(t)
	for _, tc := range []struct{ typ, format string }{{"ed25519", ""}, {"ecdsa", ""}, {"rsa", "PEM"}} {
		t.Run(tc.typ+"/"+tc.format, func(t *testing.T) {
			path, _ := keygen(t, tc.typ, tc.format, "right-passphrase")
			conn := newStallConn(dial(t, s.Addr))
			_, err := NewClient(context.Background(), conn, s.Addr, Config{PrivateKeyFile: path, Passphrase: []byte("wrong-passphrase"), HostKey: s.HostKey})
			if !errors.Is(err, ErrPassphraseWrong) {
				t.Fatalf("got %v, want ErrPassphraseWrong", err)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Path != path {
				t.Fatalf("want *KeyError with path, got %#v", err)
			}
			if errors.Is(err, ErrPassphraseMissing) {
				t.Fatal("also matches ErrPassphraseMissing")
			}
			if !conn.isClosed() {
				t.Fatal("conn not closed after failure")
			}
			assertNoSecrets(t, err, path, "wrong-passphrase")
			assertNoSecrets(t, err, path, "right-passphrase")
		})
	}
}

// TestMissingPassphraseIsErrPassphraseMissing guards the encrypted key with
// no passphrase case.
func TestMissingPassphraseIsErrPassphraseMissing(t *testing.T) {
	s := testenv.StartSSHD(t)
	for _, tc := range []struct{ typ, format string }{{"ed25519", ""}, {"rsa", "PEM"}} {
		t.Run(tc.typ+"/"+tc.format, func(t *testing.T) {
			path, _ := keygen(t, tc.typ, tc.format, "secret-pass")
			_, err := connect(t, s, Config{PrivateKeyFile: path, HostKey: s.HostKey})
			if !errors.Is(err, ErrPassphraseMissing) {
				t.Fatalf("got %v, want ErrPassphraseMissing", err)
			}
			assertNoSecrets(t, err, path, "secret-pass")
		})
	}
}

// TestUnreadableKeyIsKeyError guards missing files and garbage keys.
func TestUnreadableKeyIsKeyError(t *testing.T) {
	s := testenv.StartSSHD(t)
	missing := filepath.Join(t.TempDir(), "nope")
	garbage := filepath.Join(t.TempDir(), "garbage")
	secretish := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n"
	os.WriteFile(garbage, []byte(secretish), 0o600)
	for _, p := range []string{missing, garbage} {
		_, err := connect(t, s, Config{PrivateKeyFile: p, HostKey: s.HostKey})
		var ke *KeyError
		if !errors.Is(err, ErrKeyUnreadable) || !errors.As(err, &ke) {
			t.Fatalf("%s: got %v, want *KeyError/ErrKeyUnreadable", p, err)
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error does not name the file: %v", err)
		}
		if strings.Contains(err.Error(), "b3BlbnNzaC1rZXkt") {
			t.Errorf("error contains key bytes: %v", err)
		}
	}
	_, err := connect(t, s, Config{PrivateKey: []byte("not a key"), HostKey: s.HostKey})
	if !errors.Is(err, ErrKeyUnreadable) {
		t.Fatalf("bytes: got %v", err)
	}
}

// TestWrongKeyIsAuthError guards the typed error listing what was tried.
func TestWrongKeyIsAuthError(t *testing.T) {
	s := testenv.StartSSHD(t)
	path, pub := keygen(t, "ed25519", "", "")
	_, err := connect(t, s, Config{PrivateKeyFile: path, HostKey: s.HostKey})
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("got %v, want *AuthError", err)
	}
	if len(ae.Methods) != 1 || !strings.Contains(ae.Methods[0], path) || !strings.Contains(ae.Methods[0], ssh.FingerprintSHA256(pub)) {
		t.Fatalf("Methods = %q", ae.Methods)
	}
	if ae.User != s.User {
		t.Fatalf("User = %q", ae.User)
	}
	assertNoSecrets(t, err, path, "")
}

// TestAgentAuth guards ssh-agent authentication through a real agent
// protocol server on a unix socket, via AgentSocket and SSH_AUTH_SOCK.
func TestAgentAuth(t *testing.T) {
	s := testenv.StartSSHD(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	s.AuthorizeKey(signer.PublicKey())
	sock := serveAgent(t, keyring)

	c := mustConnect(t, s, Config{AgentSocket: sock, HostKey: s.HostKey})
	c.Close()

	t.Setenv("SSH_AUTH_SOCK", sock)
	c = mustConnect(t, s, Config{Agent: true, HostKey: s.HostKey})
	c.Close()

	// Unauthorized file key first, then the agent: both are offered.
	path, _ := keygen(t, "ed25519", "", "")
	c = mustConnect(t, s, Config{PrivateKeyFile: path, Agent: true, HostKey: s.HostKey})
	c.Close()

	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := connect(t, s, Config{Agent: true, HostKey: s.HostKey}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Fatalf("no agent socket: got %v", err)
	}
}

func serveAgent(t *testing.T, keyring agent.Agent) string {
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // runs after Serve's cleanup
	testenv.Serve(t, ln, func(c net.Conn) { agent.ServeAgent(keyring, c) })
	return sock
}

// ---------------------------------------------------------------- host keys

// TestPinnedWrongHostKeyIsHostKeyError guards pinned key and fingerprint
// mismatches: typed, with the offered fingerprint.
func TestPinnedWrongHostKeyIsHostKeyError(t *testing.T) {
	s := testenv.StartSSHD(t)
	other, _ := testenv.NewEd25519Key(t)
	for name, cfg := range map[string]Config{
		"HostKey":            {HostKey: other.PublicKey()},
		"HostKeyFingerprint": {HostKeyFingerprint: ssh.FingerprintSHA256(other.PublicKey())},
		"both, one wrong":    {HostKey: s.HostKey, HostKeyFingerprint: ssh.FingerprintSHA256(other.PublicKey())},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Signers = []ssh.Signer{s.ClientSigner}
			_, err := connect(t, s, cfg)
			checkMismatch(t, s, err)
		})
	}
}

func checkMismatch(t *testing.T, s *testenv.SSHD, err error) {
	t.Helper()
	var he *HostKeyError
	if !errors.As(err, &he) || !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("got %v, want *HostKeyError mismatch", err)
	}
	if errors.Is(err, ErrUnknownHost) {
		t.Fatal("mismatch also matches ErrUnknownHost")
	}
	if he.Fingerprint != s.HostKeyFingerprint || !strings.Contains(err.Error(), s.HostKeyFingerprint) {
		t.Fatalf("offered fingerprint missing: %v", err)
	}
	if he.Key == nil || string(he.Key.Marshal()) != string(s.HostKey.Marshal()) {
		t.Fatal("offered key missing")
	}
	if line := he.KnownHostsLine(); !strings.HasSuffix(line, s.HostKeyLine) {
		t.Fatalf("KnownHostsLine = %q", line)
	}
}

// TestPinnedHostKeyAndFingerprintAccept guards the accepting paths,
// including a fingerprint with base64 padding and a key given as a line.
func TestPinnedHostKeyAndFingerprintAccept(t *testing.T) {
	s := testenv.StartSSHD(t)
	pk, err := ParseHostKey(s.HostKeyLine + " comment")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{HostKey: pk},
		{HostKeyFingerprint: s.HostKeyFingerprint},
		{HostKeyFingerprint: " " + s.HostKeyFingerprint + "= "},
		{HostKey: s.HostKey, HostKeyFingerprint: s.HostKeyFingerprint, KnownHostsFile: s.KnownHostsPath},
	} {
		cfg.Signers = []ssh.Signer{s.ClientSigner}
		c := mustConnect(t, s, cfg)
		c.Close()
	}
}

// TestKnownHostsWrongKeyIsHostKeyError guards known_hosts mismatches.
func TestKnownHostsWrongKeyIsHostKeyError(t *testing.T) {
	s := testenv.StartSSHD(t)
	other, _ := testenv.NewEd25519Key(t)
	for _, hashed := range []bool{false, true} {
		kh := testenv.WriteKnownHosts(t, other.PublicKey(), hashed, s.Addr)
		_, err := connect(t, s, Config{KnownHostsFile: kh, Signers: []ssh.Signer{s.ClientSigner}})
		checkMismatch(t, s, err)
		if !strings.Contains(err.Error(), ssh.FingerprintSHA256(other.PublicKey())) {
			t.Errorf("expected fingerprint missing: %v", err)
		}
	}
}

// TestUnknownHostIsErrUnknownHost guards a known_hosts without the host.
func TestUnknownHostIsErrUnknownHost(t *testing.T) {
	s := testenv.StartSSHD(t)
	kh := s.WriteKnownHosts(false, "i-0aaaaaaaaaaaaaaaa")
	_, err := connect(t, s, Config{KnownHostsFile: kh, HostKeyAlias: "i-0bbbbbbbbbbbbbbbb", Signers: []ssh.Signer{s.ClientSigner}})
	var he *HostKeyError
	if !errors.Is(err, ErrUnknownHost) || !errors.As(err, &he) {
		t.Fatalf("got %v, want ErrUnknownHost", err)
	}
	if errors.Is(err, ErrHostKeyMismatch) {
		t.Fatal("unknown host also matches mismatch")
	}
	if he.Fingerprint != s.HostKeyFingerprint || he.Host != "i-0bbbbbbbbbbbbbbbb" {
		t.Fatalf("got %+v", he)
	}
}

// TestKnownHostsAliasAndHashedEntries guards lookups under HostKeyAlias
// (instance id, host:port) in plain and hashed known_hosts files, and under
// the addr when no alias is set.
func TestKnownHostsAliasAndHashedEntries(t *testing.T) {
	s := testenv.StartSSHD(t)
	for _, hashed := range []bool{false, true} {
		for _, alias := range []string{"", "i-0123456789abcdef0", "bastion.internal:2222", "bastion.internal"} {
			entry := alias
			if entry == "" {
				entry = s.Addr
			}
			kh := s.WriteKnownHosts(hashed, entry)
			c := mustConnect(t, s, Config{KnownHostsFile: kh, HostKeyAlias: alias, Signers: []ssh.Signer{s.ClientSigner}})
			c.Close()
		}
	}
	if _, err := connect(t, s, Config{KnownHostsFile: filepath.Join(t.TempDir(), "missing"), Signers: []ssh.Signer{s.ClientSigner}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing known_hosts: %v", err)
	}
}

// TestConfigWithoutHostKeySourceFails guards fail-closed verification, and
// that InsecureIgnoreHostKey is the one way to skip it.
func TestConfigWithoutHostKeySourceFails(t *testing.T) {
	s := testenv.StartSSHD(t)
	conn := newStallConn(dial(t, s.Addr))
	_, err := NewClient(context.Background(), conn, s.Addr, Config{Signers: []ssh.Signer{s.ClientSigner}})
	if !errors.Is(err, ErrNoHostKeyCheck) || !strings.Contains(err.Error(), "KnownHostsFile") {
		t.Fatalf("got %v", err)
	}
	if !conn.isClosed() {
		t.Fatal("conn left open")
	}
	c := mustConnect(t, s, Config{InsecureIgnoreHostKey: true, Signers: []ssh.Signer{s.ClientSigner}})
	c.Close()

	if _, err := connect(t, s, Config{HostKey: s.HostKey}); !errors.Is(err, ErrNoAuthMethod) {
		t.Fatalf("no auth: got %v", err)
	}
	if _, err := connect(t, s, Config{HostKeyFingerprint: "MD5:aa:bb", Signers: []ssh.Signer{s.ClientSigner}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad fingerprint: got %v", err)
	}
}

// ---------------------------------------------------------------- handshake, keepalive, close

// TestHandshakeHonoursContext guards a server that never speaks: NewClient
// returns on ctx expiry and closes the conn.
func TestHandshakeHonoursContext(t *testing.T) {
	// A server that accepts and never speaks.
	addr := testenv.TCPServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	signer, _ := testenv.NewEd25519Key(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		ctx  time.Duration
	}{
		{"ctx", Config{}, 200 * time.Millisecond},
		{"HandshakeTimeout", Config{HandshakeTimeout: 200 * time.Millisecond}, time.Minute},
	} {
		conn := newStallConn(dial(t, addr))
		ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
		tc.cfg.Signers = []ssh.Signer{signer}
		tc.cfg.InsecureIgnoreHostKey = true
		start := time.Now()
		_, err := NewClient(ctx, conn, "silent", tc.cfg)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: got %v, want DeadlineExceeded", tc.name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s: took %v", tc.name, d)
		}
		if !conn.isClosed() {
			t.Fatalf("%s: conn not closed", tc.name)
		}
	}
}

// TestKeepaliveDetectsDeadPath guards keepalives: when the transport stops
// delivering, the client closes within the deadline and Err says why.
func TestKeepaliveDetectsDeadPath(t *testing.T) {
	s := testenv.StartSSHD(t)
	conn := newStallConn(dial(t, s.Addr))
	c, err := NewClient(context.Background(), conn, s.Addr, Config{
		User: s.User, Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey,
		KeepaliveInterval: 100 * time.Millisecond, KeepaliveTimeout: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Keepalives are answered while the path is healthy.
	time.Sleep(600 * time.Millisecond)
	if c.Err() != nil {
		t.Fatalf("healthy path closed: %v", c.Err())
	}
	conn.stall()
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("dead path not noticed")
	}
	if !errors.Is(c.Err(), ErrKeepaliveTimeout) {
		t.Fatalf("Err = %v, want ErrKeepaliveTimeout", c.Err())
	}
	if !conn.isClosed() {
		t.Fatal("underlying conn not closed")
	}
}

// TestServerGoneEndsClient guards Done/Err when sshd dies.
func TestServerGoneEndsClient(t *testing.T) {
	s := testenv.StartSSHD(t)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey, KeepaliveInterval: -1})
	s.Stop()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after server died")
	}
	if c.Err() == nil || errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
}

// TestCloseIsIdempotentAndClosesConns guards Close.
func TestCloseIsIdempotentAndClosesConns(t *testing.T) {
	s := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
	tc, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	roundTrip(t, tc, "x")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == io.EOF || !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Client.Close: %v, want an error matching ErrClosed and net.ErrClosed (never io.EOF)", err)
	}
	if _, err := c.DialContext(context.Background(), "tcp", echo); !errors.Is(err, ErrClosed) {
		t.Fatalf("dial after Close: %v", err)
	}
	if st := c.Stats(); st.OpenConns != 0 || st.TotalConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// ---------------------------------------------------------------- direct-tcpip

// TestDialContextEchoRemoteAddrAndStats guards direct-tcpip through sshd,
// RemoteAddr for IP literals and names, and byte counters.
func TestDialContextEchoRemoteAddrAndStats(t *testing.T) {
	s := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	_, port, _ := net.SplitHostPort(echo)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})

	a, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	ta, ok := a.RemoteAddr().(*net.TCPAddr)
	if !ok || ta.String() != echo || ta.Network() != "tcp" {
		t.Fatalf("RemoteAddr = %#v, want *net.TCPAddr %s", a.RemoteAddr(), echo)
	}
	msg := strings.Repeat("0123456789", 20000) // 200 kB, several channel windows
	go func() { a.Write([]byte(msg)) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(a, got); err != nil || string(got) != msg {
		t.Fatalf("echo of 200 kB: %v", err)
	}

	named := net.JoinHostPort("localhost", port)
	b, err := c.DialContext(context.Background(), "tcp", named)
	if err != nil {
		t.Fatal(err)
	}
	if b.RemoteAddr().String() != named || b.RemoteAddr().Network() != "tcp" {
		t.Fatalf("RemoteAddr = %v, want %s", b.RemoteAddr(), named)
	}
	roundTrip(t, b, "hello")
	// BytesSent is counted once the channel write returns, which may be
	// after the echo came back: wait for the counters to settle.
	want := int64(len(msg) + 5)
	for deadline := time.Now().Add(5 * time.Second); c.Stats().BytesSent != want && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	st := c.Stats()
	if st.OpenConns != 2 || st.TotalConns != 2 || st.BytesSent != int64(len(msg)+5) || st.BytesReceived != int64(len(msg)+5) {
		t.Fatalf("stats %+v", st)
	}
	a.Close()
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().OpenConns != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := c.Stats(); st.OpenConns != 0 {
		t.Fatalf("OpenConns after close = %d", st.OpenConns)
	}
}

// TestDialContextErrors guards refused targets and bad arguments.
func TestDialContextErrors(t *testing.T) {
	s := testenv.StartSSHD(t)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	_, err := c.DialContext(context.Background(), "tcp", closed)
	var oe *net.OpError
	if err == nil || !errors.As(err, &oe) || !strings.Contains(err.Error(), closed) {
		t.Fatalf("refused: %v", err)
	}
	for _, bad := range [][2]string{{"udp", "127.0.0.1:1"}, {"tcp", "nohostport"}, {"tcp", "h:notaport"}} {
		if _, err := c.DialContext(context.Background(), bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if c.Err() != nil {
		t.Fatalf("client broken by dial errors: %v", c.Err())
	}
}

// TestDialContextHonoursCancel guards a dial on a path that stopped
// answering: it returns on ctx expiry.
func TestDialContextHonoursCancel(t *testing.T) {
	s := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	conn := newStallConn(dial(t, s.Addr))
	c, err := NewClient(context.Background(), conn, s.Addr, Config{User: s.User, Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey, KeepaliveInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn.stall()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.DialContext(ctx, "tcp", echo)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestConnDeadlines guards read/write deadlines on tunnel conns and that a
// read timeout leaves the conn usable.
func TestConnDeadlines(t *testing.T) {
	s := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	tc, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = tc.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with deadline: %v", err)
	}
	tc.SetDeadline(time.Time{})
	roundTrip(t, tc, "still works")
	tc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := tc.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past deadline: %v", err)
	}
}

// TestLoggerNeverLogsSecrets runs a failing and a working connect with a
// debug logger and checks the log has no passphrase or key material.
func TestLoggerNeverLogsSecrets(t *testing.T) {
	s := testenv.StartSSHD(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := newTestLogger(&buf, &mu)
	path, pub := keygen(t, "ed25519", "", "log-secret-pass")
	_, err := connect(t, s, Config{PrivateKeyFile: path, Passphrase: []byte("bad-pass-123"), HostKey: s.HostKey, Logger: log})
	if !errors.Is(err, ErrPassphraseWrong) {
		t.Fatal(err)
	}
	s.AuthorizeKey(pub)
	c := mustConnect(t, s, Config{PrivateKeyFile: path, Passphrase: []byte("log-secret-pass"), HostKey: s.HostKey, Logger: log})
	c.Close()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "connected") {
		t.Fatalf("logger not used: %q", out)
	}
	assertNoSecrets(t, errors.New(out), path, "log-secret-pass")
	if strings.Contains(out, "bad-pass-123") {
		t.Fatal("log has passphrase")
	}
}

// TestValidateMatchesNewClientWithoutNetwork guards Config.Validate: the
// same typed errors NewClient gives, with no connection at all.
func TestValidateMatchesNewClientWithoutNetwork(t *testing.T) {
	signer, keyPath := testenv.NewEd25519Key(t)
	encPath, _ := keygen(t, "ed25519", "", "validate-pass")
	hk := signer.PublicKey()
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"ok file", Config{PrivateKeyFile: keyPath, HostKey: hk}, nil},
		{"ok encrypted", Config{PrivateKeyFile: encPath, Passphrase: []byte("validate-pass"), HostKeyFingerprint: ssh.FingerprintSHA256(hk)}, nil},
		{"ok insecure signers", Config{Signers: []ssh.Signer{signer}, InsecureIgnoreHostKey: true}, nil},
		{"no host key", Config{PrivateKeyFile: keyPath}, ErrNoHostKeyCheck},
		{"no auth", Config{HostKey: hk}, ErrNoAuthMethod},
		{"missing passphrase", Config{PrivateKeyFile: encPath, HostKey: hk}, ErrPassphraseMissing},
		{"wrong passphrase", Config{PrivateKeyFile: encPath, Passphrase: []byte("nope"), HostKey: hk}, ErrPassphraseWrong},
		{"missing key", Config{PrivateKeyFile: keyPath + ".missing", HostKey: hk}, ErrKeyUnreadable},
		{"bad fingerprint", Config{PrivateKeyFile: keyPath, HostKeyFingerprint: "SHA256:short"}, ErrInvalidConfig},
		{"missing known_hosts", Config{PrivateKeyFile: keyPath, KnownHostsFile: keyPath + ".kh"}, ErrInvalidConfig},
		{"agent socket missing", Config{AgentSocket: keyPath + ".sock", HostKey: hk}, ErrInvalidConfig},
		{"negative timeout", Config{PrivateKeyFile: keyPath, HostKey: hk, KeepaliveTimeout: -1}, ErrInvalidConfig},
	} {
		err := tc.cfg.Validate()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Validate() = %v, want %v", tc.name, err, tc.want)
		}
		assertNoSecrets(t, err, encPath, "validate-pass")
	}
}

// TestCloseDoesNotHangOnUnreadConn guards Close when a user stopped
// reading a connection that has data pending.
func TestCloseDoesNotHangOnUnreadConn(t *testing.T) {
	s := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	tc, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	tc.Write(make([]byte, 256<<10)) // the echo comes back and is never read
	for deadline := time.Now().Add(5 * time.Second); c.Stats().BytesReceived == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if c.Stats().BytesReceived == 0 {
		t.Fatal("echo never arrived")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a connection whose data is not read")
	}
}

// TestEncryptedPKCS8KeySaysHowToConvert guards the hint for a format
// x/crypto/ssh cannot decrypt.
func TestEncryptedPKCS8KeySaysHowToConvert(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	p := filepath.Join(t.TempDir(), "p8")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:p8-secret", "-out", p).CombinedOutput(); err != nil {
		t.Skipf("openssl genpkey: %v: %s", err, out)
	}
	err := Config{PrivateKeyFile: p, Passphrase: []byte("p8-secret"), InsecureIgnoreHostKey: true}.Validate()
	if !errors.Is(err, ErrKeyUnreadable) || !strings.Contains(err.Error(), "ssh-keygen -p") {
		t.Fatalf("got %v", err)
	}
	assertNoSecrets(t, err, p, "p8-secret")
}

// TestLoadKeyDecryptsOnceAndDropsKeyMaterial guards the config LoadKey
// returns: it must connect without the key file or passphrase (the key is
// decrypted once, not per client), must carry no key material or passphrase
// in its exported fields, and must still report where the key came from.
func TestLoadKeyDecryptsOnceAndDropsKeyMaterial(t *testing.T) {
	s := testenv.StartSSHD(t)
	path, pub := keygen(t, "ed25519", "", "correct horse")
	s.AuthorizeKey(pub)
	loaded, err := Config{PrivateKeyFile: path, Passphrase: []byte("correct horse"), HostKey: s.HostKey}.LoadKey()
	if err != nil {
		t.Fatal(err)
	}
	if loaded.PrivateKeyFile != "" || loaded.PrivateKey != nil || loaded.Passphrase != nil {
		t.Fatalf("LoadKey kept key material: file %q, %d key bytes, %d passphrase bytes", loaded.PrivateKeyFile, len(loaded.PrivateKey), len(loaded.Passphrase))
	}
	if err := os.Remove(path); err != nil { // a second read would now fail
		t.Fatal(err)
	}
	for range 2 {
		c := mustConnect(t, s, loaded)
		c.Close()
	}
	if _, err := (Config{PrivateKeyFile: path, HostKey: s.HostKey}).LoadKey(); !errors.Is(err, ErrKeyUnreadable) {
		t.Fatalf("LoadKey of a missing file: %v, want ErrKeyUnreadable", err)
	}
	// A rejected loaded key still names its file in AuthError.
	other, _ := keygen(t, "ed25519", "", "")
	wrong, err := Config{PrivateKeyFile: other, HostKey: s.HostKey}.LoadKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(context.Background(), dial(t, s.Addr), s.Addr, wrong)
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(strings.Join(ae.Methods, " "), other) {
		t.Fatalf("want *AuthError naming %s, got %v", other, err)
	}
}
