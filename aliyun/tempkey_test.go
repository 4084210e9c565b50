package aliyun_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/tunnel"
)

// keyTunnel is SSH mode logging in with key (its Signer, no key file):
// each session registers the key again when needed (TempKey.DialBastion).
func keyTunnel(srv *aliyuntest.Server, sshd *testenv.SSHD, key *aliyun.TempKey, acfg aliyun.Config) tunnel.Config {
	return tunnel.Config{
		DialBastion: key.DialBastion(acfg),
		SSH: sshx.Config{
			User:           sshd.User,
			Signers:        []ssh.Signer{key.Signer},
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
	}
}

func echoThrough(t *testing.T, tun *tunnel.Tunnel, echo string) {
	t.Helper()
	c, err := tun.DialContext(tctx(t, 30*time.Second), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hi"))
	b := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(b); err != nil || string(b) != "hi" {
		t.Fatalf("echo through the tunnel: %q %v", b, err)
	}
}

// TestTempKeyAuthenticatesOnlyWithinItsWindow: a tunnel logs in with an
// in-memory Ed25519 key registered through Cloud Assistant as
// ali-instance-cli does (RunCommand installing the plug-in, then
// InvokeCommand of the public command); the emulator installs it in the
// real sshd's authorized_keys for the window (shortened to 4 s here; 60 s
// by default) and a login after the window is refused.
func TestTempKeyAuthenticatesOnlyWithinItsWindow(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = 4 * time.Second
	srv := newServer(t, ecfg)
	echo := testenv.EchoServer(t)
	acfg := config(srv, sshd.Addr)
	acfg.KeyWindow = ecfg.KeyWindow
	ctx := tctx(t, 60*time.Second)

	key, err := aliyun.NewTempKey(ctx, acfg, sshd.User)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Check(); err != nil {
		t.Fatal(err)
	}
	tcfg := tunnel.Config{
		DialBastion: func(ctx context.Context) (net.Conn, error) { return aliyun.Dial(ctx, acfg) },
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKey:     key.PrivatePEM,
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
	}
	tun, err := tunnel.Open(ctx, tcfg)
	if err != nil {
		t.Fatalf("login within the window: %v", err)
	}
	echoThrough(t, tun, echo)
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	calls := srv.Stats().APICalls
	if calls["RunCommand"] != 1 || calls["InvokeCommand"] != 1 || calls["DescribeInvocationResults"] < 2 {
		t.Fatalf("API calls %v; want one RunCommand (plug-in), one InvokeCommand (key), and polling", calls)
	}

	time.Sleep(ecfg.KeyWindow + 500*time.Millisecond)
	if err := key.Check(); !errors.Is(err, aliyun.ErrKeyWindowMissed) {
		t.Fatalf("Check after the window = %v", err)
	}
	if _, err := tunnel.Open(ctx, tcfg); !errors.Is(err, sshx.ErrAuthFailed) {
		t.Fatalf("login after the window: %v; want sshx.ErrAuthFailed", err)
	}
	waitNoSessions(t, srv)
}

// TestTempKeyCommandFailureIsTyped: the key command fails on the
// instance (no sshd configuration for the plug-in; the plug-in's own
// failure) and an unknown instance: typed errors that say what to fix.
func TestTempKeyCommandFailureIsTyped(t *testing.T) {
	srv := newServer(t, fast()) // no AuthorizedKeys: the key cannot be installed
	_, err := aliyun.NewTempKey(context.Background(), config(srv, "127.0.0.1:22"), "root")
	var ke *aliyun.KeyCommandError
	if !errors.Is(err, aliyun.ErrKeyCommandFailed) || errors.Is(err, aliyun.ErrAgentTooOld) || !errors.As(err, &ke) {
		t.Fatalf("NewTempKey = %v", err)
	}
	if ke.Status != "Failed" || ke.ErrorCode != "ExitCodeNonzero" || !strings.Contains(err.Error(), "check that the user exists") {
		t.Fatalf("KeyCommandError %+v: %v", ke, err)
	}

	srv.OnSendPublicKey(func(instance, user, key string) error {
		return errors.New("useradd: user 'nobody-here' does not exist")
	})
	_, err = aliyun.NewTempKey(context.Background(), config(srv, "127.0.0.1:22"), "nobody-here")
	if !errors.Is(err, aliyun.ErrKeyCommandFailed) || !strings.Contains(err.Error(), "nobody-here") {
		t.Fatalf("hook failure: %v", err)
	}

	cfg := config(srv, "127.0.0.1:22")
	cfg.InstanceID = "i-bp1unknown00000000"
	if _, err := aliyun.NewTempKey(context.Background(), cfg, "root"); !errors.Is(err, aliyun.ErrInstanceNotFound) {
		t.Fatalf("unknown instance: %v", err)
	}
	waitNoSessions(t, srv)
}

// TestTempKeyAgentTooOldOrNotRunningIsTyped: each agent state that
// DescribeInvocationResults documents (ErrorCode ClientNeedUpgrade,
// ClientNotRunning, ClientNotResponse, ClientIsUpgrading) is
// ErrAgentTooOld, not a command failure, and says what to do.
func TestTempKeyAgentTooOldOrNotRunningIsTyped(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	srv := newServer(t, ecfg)
	for _, st := range []struct{ state, hint string }{
		{aliyuntest.AgentNeedUpgrade, "upgrade the Cloud Assistant agent"},
		{aliyuntest.AgentNotRunning, "start the Cloud Assistant agent"},
		{aliyuntest.AgentNotResponse, "start the Cloud Assistant agent"},
		{aliyuntest.AgentUpgrading, "wait until its upgrade is done"},
	} {
		srv.SetAgentState(st.state)
		_, err := aliyun.NewTempKey(context.Background(), config(srv, sshd.Addr), sshd.User)
		var ke *aliyun.KeyCommandError
		if !errors.Is(err, aliyun.ErrAgentTooOld) || errors.Is(err, aliyun.ErrKeyCommandFailed) || !errors.As(err, &ke) {
			t.Fatalf("%s: %v", st.state, err)
		}
		if ke.ErrorCode != st.state || !strings.Contains(err.Error(), st.hint) {
			t.Fatalf("%s: %+v: %v", st.state, ke, err)
		}
	}
	srv.SetAgentState("")
	if _, err := aliyun.NewTempKey(context.Background(), config(srv, sshd.Addr), sshd.User); err != nil {
		t.Fatalf("healthy agent again: %v", err)
	}
}

// TestTempKeySlowCommandIsAwaitedAndBoundedByContext: a key command that
// stays Running is polled until it finishes; a context that ends first
// ends the wait with the context's error (not a command failure); a
// plug-in install slower than its 5 s timeout is a typed command failure.
func TestTempKeySlowCommandIsAwaitedAndBoundedByContext(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.CommandDelay = 2 * time.Second
	srv := newServer(t, ecfg)
	acfg := config(srv, sshd.Addr)

	key, err := aliyun.NewTempKey(tctx(t, 30*time.Second), acfg, sshd.User)
	if err != nil {
		t.Fatalf("slow command: %v", err)
	}
	if n := srv.Stats().APICalls["DescribeInvocationResults"]; n < 4 {
		t.Fatalf("%d polls for two commands that each ran 2 s: the client did not wait for Running to end", n)
	}
	if err := key.Check(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = aliyun.NewTempKey(ctx, acfg, sshd.User)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, aliyun.ErrKeyCommandFailed) {
		t.Fatalf("context shorter than the command: %v", err)
	}

	srv.SetCommandDelay(6 * time.Second) // > RunCommand's Timeout of 5 s
	_, err = aliyun.NewTempKey(tctx(t, 30*time.Second), acfg, sshd.User)
	var ke *aliyun.KeyCommandError
	if !errors.Is(err, aliyun.ErrKeyCommandFailed) || !errors.As(err, &ke) || ke.Status != "Timeout" || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("plug-in install past its timeout: %v", err)
	}
}

// TestTempKeyWindowMissedIsRetriedOnce: a tunnel whose SSH login comes
// after its key's window fails; WithTempKey registers a new key and the
// second login, in time, succeeds.
func TestTempKeyWindowMissedIsRetriedOnce(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = 3 * time.Second
	ecfg.CommandDelay = -1
	srv := newServer(t, ecfg)
	echo := testenv.EchoServer(t)
	acfg := config(srv, sshd.Addr)
	acfg.KeyWindow = ecfg.KeyWindow
	ctx := tctx(t, 60*time.Second)
	attempts := 0
	err := aliyun.WithTempKey(ctx, acfg, sshd.User, func(key *aliyun.TempKey) error {
		attempts++
		tcfg := keyTunnel(srv, sshd, key, acfg)
		if attempts == 1 {
			dial := tcfg.DialBastion
			tcfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
				c, err := dial(ctx)
				time.Sleep(ecfg.KeyWindow + 500*time.Millisecond) // the login is slow: the window passes
				return c, err
			}
		}
		tun, err := tunnel.Open(ctx, tcfg)
		if err != nil {
			return err
		}
		echoThrough(t, tun, echo)
		return tun.Close()
	})
	if err != nil || attempts != 2 {
		t.Fatalf("WithTempKey = %v after %d attempts; want success on the second", err, attempts)
	}
	if n := srv.Stats().APICalls["InvokeCommand"]; n != 2 {
		t.Fatalf("%d keys registered; want 2", n)
	}
	waitNoSessions(t, srv)
}

// TestTempKeyWindowMissedTwiceIsTyped: when the retried login misses its
// window too, WithTempKey gives up with an error matching
// ErrKeyWindowMissed and the SSH refusal, and leaves no session open.
func TestTempKeyWindowMissedTwiceIsTyped(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = time.Second
	ecfg.CommandDelay = -1
	srv := newServer(t, ecfg)
	acfg := config(srv, sshd.Addr)
	acfg.KeyWindow = ecfg.KeyWindow
	ctx := tctx(t, 60*time.Second)
	attempts := 0
	err := aliyun.WithTempKey(ctx, acfg, sshd.User, func(key *aliyun.TempKey) error {
		attempts++
		tcfg := keyTunnel(srv, sshd, key, acfg)
		dial := tcfg.DialBastion
		tcfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
			c, err := dial(ctx)
			time.Sleep(1500 * time.Millisecond)
			return c, err
		}
		tun, err := tunnel.Open(ctx, tcfg)
		if err == nil {
			tun.Close()
		}
		return err
	})
	if !errors.Is(err, aliyun.ErrKeyWindowMissed) || !errors.Is(err, sshx.ErrAuthFailed) || attempts != 2 {
		t.Fatalf("WithTempKey = %v after %d attempts; want ErrKeyWindowMissed after 2", err, attempts)
	}
	waitNoSessions(t, srv)
}

// TestTempKeyIsRegisteredAgainForALaterSession: a session opened after
// two thirds of the window (a tunnel replacing a lost session, a second
// tunnel) registers the same key again right before its login, which
// succeeds although the first registration's window has passed.
func TestTempKeyIsRegisteredAgainForALaterSession(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = 3 * time.Second
	srv := newServer(t, ecfg)
	echo := testenv.EchoServer(t)
	acfg := config(srv, sshd.Addr)
	acfg.KeyWindow = ecfg.KeyWindow
	ctx := tctx(t, 60*time.Second)
	key, err := aliyun.NewTempKey(ctx, acfg, sshd.User)
	if err != nil {
		t.Fatal(err)
	}
	tun, err := tunnel.Open(ctx, keyTunnel(srv, sshd, key, acfg))
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, tun, echo)
	if n := key.Registrations(); n != 1 {
		t.Fatalf("%d registrations for a login within the window; want 1", n)
	}
	time.Sleep(ecfg.KeyWindow + 300*time.Millisecond)
	tun2, err := tunnel.Open(ctx, keyTunnel(srv, sshd, key, acfg))
	if err != nil {
		t.Fatalf("a later session with the same key: %v", err)
	}
	echoThrough(t, tun2, echo)
	if n := key.Registrations(); n != 2 {
		t.Fatalf("%d registrations; want 2", n)
	}
	tun.Close()
	tun2.Close()
	waitNoSessions(t, srv)
}

// TestTempKeyPrivateKeyNeverInLogsOrErrors: over a registration, a failed
// registration and a refused login, at debug level, neither the private
// key (PEM body or raw bytes) nor the access key secret appears in a log
// line or an error.
func TestTempKeyPrivateKeyNeverInLogsOrErrors(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = time.Second
	ecfg.CommandDelay = -1
	srv := newServer(t, ecfg)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	acfg := config(srv, sshd.Addr)
	acfg.KeyWindow, acfg.Logger = ecfg.KeyWindow, log
	ctx := tctx(t, 60*time.Second)
	var errs []error
	var keys []*aliyun.TempKey
	err := aliyun.WithTempKey(ctx, acfg, sshd.User, func(key *aliyun.TempKey) error {
		keys = append(keys, key)
		tcfg := keyTunnel(srv, sshd, key, acfg)
		tcfg.Logger = log
		tcfg.SSH.Logger = log
		dial := tcfg.DialBastion
		tcfg.DialBastion = func(ctx context.Context) (net.Conn, error) {
			c, err := dial(ctx)
			time.Sleep(1300 * time.Millisecond)
			return c, err
		}
		_, err := tunnel.Open(ctx, tcfg)
		errs = append(errs, err)
		return err
	})
	errs = append(errs, err)
	srv.SetAgentState(aliyuntest.AgentNeedUpgrade)
	_, err = aliyun.NewTempKey(ctx, acfg, sshd.User)
	errs = append(errs, err)
	if logs.Len() == 0 || len(keys) != 2 || err == nil {
		t.Fatalf("the test exercised nothing: %d log bytes, %d keys, err %v", logs.Len(), len(keys), err)
	}
	var text strings.Builder
	text.WriteString(logs.String())
	for _, e := range errs {
		if e != nil {
			text.WriteString(e.Error())
		}
	}
	for _, k := range keys {
		block, _ := pem.Decode(k.PrivatePEM)
		body := strings.TrimSpace(string(k.PrivatePEM[bytes.Index(k.PrivatePEM, []byte("\n"))+1:]))
		for _, secret := range []string{body[:40], string(block.Bytes[len(block.Bytes)-64:]), srv.AccessKeySecret()} {
			if strings.Contains(text.String(), secret) {
				t.Fatalf("a secret appears in the logs or errors:\n%s", text.String())
			}
		}
	}
}

// TestPackageWritesNoFiles guards "the private key never touches disk":
// the package's code (tests aside) calls no function that creates or
// writes a file.
func TestPackageWritesNoFiles(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	banned := map[string]bool{"Create": true, "CreateTemp": true, "WriteFile": true, "OpenFile": true, "MkdirTemp": true, "Symlink": true}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		checked++
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && (id.Name == "os" || id.Name == "ioutil") && banned[sel.Sel.Name] {
					t.Errorf("%s calls %s.%s", f, id.Name, sel.Sel.Name)
				}
			}
			return true
		})
	}
	if checked < 5 {
		t.Fatalf("only %d files checked", checked)
	}
}

// TestTempKeyTransportRegistersAgainForALaterSession: through the transport
// seam (tunnel.Config.Transport = key.Transport(tr.Link())), a session
// started after the key's window re-registers the key before its login, so
// it logs in; without the wrapper that login would be refused.
func TestTempKeyTransportRegistersAgainForALaterSession(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = 3 * time.Second
	srv := newServer(t, ecfg)
	echo := testenv.EchoServer(t)
	acfg := config(srv, "127.0.0.1:1")
	acfg.KeyWindow = ecfg.KeyWindow
	tr, err := aliyun.NewTransport(acfg)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(sshd.Addr)
	port, _ := strconv.Atoi(p)
	ctx := tctx(t, 60*time.Second)
	key, err := aliyun.NewTempKey(ctx, acfg, sshd.User)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tunnel.Config{
		Transport: key.Transport(tr.Link()),
		SSHPort:   port,
		SSH: sshx.Config{
			User:           sshd.User,
			Signers:        []ssh.Signer{key.Signer},
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
	}
	tun, err := tunnel.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	echoThrough(t, tun, echo)
	if n := key.Registrations(); n != 1 {
		t.Fatalf("%d registrations for a login within the window; want 1", n)
	}
	time.Sleep(ecfg.KeyWindow + 300*time.Millisecond)
	tun2, err := tunnel.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("a later session through key.Transport: %v", err)
	}
	defer tun2.Close()
	echoThrough(t, tun2, echo)
	if n := key.Registrations(); n != 2 {
		t.Fatalf("%d registrations; want 2", n)
	}
	tun.Close()
	tun2.Close()
	waitNoSessions(t, srv)
}
