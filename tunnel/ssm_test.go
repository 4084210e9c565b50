package tunnel_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

const target = "i-0123456789abcdef0"

// newEmulator starts the SSM emulator with target → addr.
func newEmulator(t *testing.T, addr string) *ssmtest.Server {
	t.Helper()
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// ssmConfig is the full stack: SSM through the emulator, SSH to sshd with
// the host key looked up in known_hosts under the instance id (the
// default HostKeyAlias).
func ssmConfig(srv *ssmtest.Server, sshd *testenv.SSHD) tunnel.Config {
	return tunnel.Config{
		SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target},
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			KnownHostsFile: sshd.WriteKnownHosts(true, target),
		},
	}
}

// waitNoSessions fails unless the emulator counts 0 open sessions within 5s.
func waitNoSessions(t *testing.T, srv *ssmtest.Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().SessionsOpen != 0 {
		if time.Now().After(deadline) {
			st := srv.Stats()
			t.Fatalf("emulator still has %d sessions open 5s later (%v): started %d, terminated %d, ended %d",
				st.SessionsOpen, srv.SessionIDs(), st.SessionsStarted, st.SessionsTerminated, st.SessionsEnded)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSSMCloseLeavesSessionOpenAtService(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	tun := open(t, ssmConfig(srv, sshd))

	c := dial(t, tun, echo)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
		t.Fatalf("echo through SSM: %q %v", b, err)
	}
	ids := tun.Stats().SessionIDs
	if !slices.Equal(ids, srv.SessionIDs()) {
		t.Fatalf("tunnel session ids %v, emulator has %v", ids, srv.SessionIDs())
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close waits for the TerminateSession call: nothing is left at once.
	if st := srv.Stats(); st.SessionsOpen != 0 || st.SessionsTerminated != 1 {
		t.Fatalf("after Close: %d sessions open, %d terminated; want 0 and 1", st.SessionsOpen, st.SessionsTerminated)
	}
}

func TestSSMSessionsShareOneSession(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	cfg := ssmConfig(srv, sshd)
	cfg.Sessions = 3
	tun := open(t, cfg)
	ids := tun.Stats().SessionIDs
	if len(ids) != 3 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 3 {
		t.Fatalf("SessionIDs = %v; want 3 distinct", ids)
	}
	if n := srv.Stats().SessionsOpen; n != 3 {
		t.Fatalf("emulator has %d sessions open; want 3", n)
	}
	for range 3 {
		dial(t, tun, echo)
	}
	if got := tun.Stats().SessionConns; !slices.Equal(got, []int{1, 1, 1}) {
		t.Fatalf("SessionConns = %v; want one conn per session", got)
	}
	tun.Close()
	if st := srv.Stats(); st.SessionsOpen != 0 || st.SessionsTerminated != 3 {
		t.Fatalf("after Close: %d open, %d terminated; want 0, 3", st.SessionsOpen, st.SessionsTerminated)
	}
}

func TestOpenCancelLeavesSessionBehind(t *testing.T) {
	// A target that accepts TCP and never speaks SSH: Open hangs in the
	// SSH handshake until ctx is cancelled.
	silent := testenv.TCPServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, silent)
	cfg := ssmConfig(srv, sshd)
	cfg.Sessions = 2

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	tun, err := tunnel.Open(ctx, cfg)
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded against a silent target")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Open returned %v after cancel", d)
	}
	if srv.Stats().SessionsStarted != 2 {
		t.Fatalf("emulator started %d sessions; the test wants the cancel to hit after StartSession", srv.Stats().SessionsStarted)
	}
	waitNoSessions(t, srv)
}

func TestOpenCancelAtAnyPointLeavesSessionBehind(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	for _, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(d, cancel)
		tun, err := tunnel.Open(ctx, cfg)
		if err == nil {
			tun.Close()
		} else if !errors.Is(err, context.Canceled) {
			t.Errorf("cancel after %v: Open = %v; want context.Canceled", d, err)
		}
		cancel()
	}
	// A session left open here was most likely created by a StartSession
	// request cancelled in flight (ssm.Dial must terminate it).
	waitNoSessions(t, srv)
}

func TestSessionTerminatedGoesUnnoticed(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	tun := open(t, ssmConfig(srv, sshd))
	id := tun.Stats().SessionIDs[0]
	srv.CloseChannel(id, "Session terminated by an administrator")
	select {
	case <-tun.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the service closed the session")
	}
	err := tun.Err()
	if !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, ssm.ErrSessionTerminated) {
		t.Fatalf("Err = %v; want ErrTunnelDown wrapping ssm.ErrSessionTerminated", err)
	}
	waitNoSessions(t, srv)
}

func TestHostKeyMismatchAccepted(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	other, _ := testenv.NewEd25519Key(t)
	cfg.SSH.KnownHostsFile = testenv.WriteKnownHosts(t, other.PublicKey(), false, target)
	tun, err := tunnel.Open(context.Background(), cfg)
	if err == nil {
		tun.Close()
		t.Fatal("Open accepted a server whose host key is not the known one")
	}
	var he *sshx.HostKeyError
	if !errors.Is(err, sshx.ErrHostKeyMismatch) || !errors.As(err, &he) || he.Fingerprint != sshd.HostKeyFingerprint {
		t.Fatalf("Open = %v; want *sshx.HostKeyError (mismatch) offering %s", err, sshd.HostKeyFingerprint)
	}
	waitNoSessions(t, srv)
}

func TestUnknownInstanceAliasAccepted(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	cfg.SSH.KnownHostsFile = sshd.WriteKnownHosts(false, "i-0fffffffffffffff0")
	_, err := tunnel.Open(context.Background(), cfg)
	if !errors.Is(err, sshx.ErrUnknownHost) {
		t.Fatalf("Open = %v; want sshx.ErrUnknownHost", err)
	}
	waitNoSessions(t, srv)
}

func TestWrongKeyNotReportedAsAuthError(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	_, cfg.SSH.PrivateKeyFile = testenv.NewEd25519Key(t) // not authorized
	_, err := tunnel.Open(context.Background(), cfg)
	var ae *sshx.AuthError
	if !errors.Is(err, sshx.ErrAuthFailed) || !errors.As(err, &ae) {
		t.Fatalf("Open = %v; want *sshx.AuthError", err)
	}
	waitNoSessions(t, srv)
}

func TestWrongPassphraseStartsSession(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	cfg := ssmConfig(srv, sshd)
	cfg.SSH.PrivateKeyFile = encryptedKey(t, sshd, []byte("right horse battery"))

	cfg.SSH.Passphrase = []byte("wrong")
	_, err := tunnel.Open(context.Background(), cfg)
	var ke *sshx.KeyError
	if !errors.Is(err, sshx.ErrPassphraseWrong) || !errors.As(err, &ke) || !errors.Is(err, tunnel.ErrInvalidConfig) {
		t.Fatalf("Open with wrong passphrase = %v; want *sshx.KeyError matching ErrPassphraseWrong", err)
	}
	cfg.SSH.Passphrase = nil
	if _, err := tunnel.Open(context.Background(), cfg); !errors.Is(err, sshx.ErrPassphraseMissing) {
		t.Fatalf("Open without passphrase = %v; want ErrPassphraseMissing", err)
	}
	// Both are config errors: found before any session was started.
	if n := srv.Stats().SessionsStarted; n != 0 {
		t.Fatalf("emulator started %d sessions for a key that cannot be used", n)
	}
	cfg.SSH.Passphrase = []byte("right horse battery")
	tun := open(t, cfg)
	tun.Close()
	waitNoSessions(t, srv)
}

// encryptedKey writes a new passphrase-protected ed25519 key authorized at
// sshd and returns its path.
func encryptedKey(t *testing.T, sshd *testenv.SSHD, passphrase []byte) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "test", passphrase)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sshd.AuthorizeKey(sshPub)
	return path
}

func TestLogsLeakSecrets(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	cfg := ssmConfig(srv, sshd)
	passphrase := "correct horse battery staple"
	cfg.SSH.PrivateKeyFile = encryptedKey(t, sshd, []byte(passphrase))
	cfg.SSH.Passphrase = []byte(passphrase)
	var logs testenv.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tun := open(t, cfg)
	dial(t, tun, echo).Close()
	tun.Close()

	keyPEM, err := os.ReadFile(cfg.SSH.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, secret := srv.Credentials()
	out := logs.String()
	if !strings.Contains(out, "tunnel open") || !strings.Contains(out, "tunnel closed") {
		t.Fatalf("the caller's logger got no tunnel records:\n%s", out)
	}
	for name, s := range map[string]string{"AWS secret key": secret, "passphrase": passphrase, "private key": string(keyPEM[40:80])} {
		if strings.Contains(out, s) {
			t.Errorf("logs contain the %s", name)
		}
	}
}

func TestCancelAfterOpenKillsTunnel(t *testing.T) {
	// Open's ctx bounds opening only, as with net.Dialer.DialContext.
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	echo := testenv.EchoServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	tun, err := tunnel.Open(ctx, ssmConfig(srv, sshd))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	cancel()
	time.Sleep(200 * time.Millisecond) // let anything wrongly tied to ctx fall over
	if err := tun.Err(); err != nil {
		t.Fatalf("tunnel died when Open's ctx was cancelled: %v", err)
	}
	c := dial(t, tun, echo)
	if _, err := c.Write([]byte("still up")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("echo after Open's ctx was cancelled: %v", err)
	}
}
