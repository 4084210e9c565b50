package aliyun_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/tunnel"
)

// TestTempKeyAuthenticatesOnlyWithinItsWindow: a tunnel logs in with an
// in-memory Ed25519 key registered through Cloud Assistant's public
// command; the emulator installs it in the real sshd's authorized_keys for
// the window (shortened to 4 s here; 60 s by default) and a login after the
// window is refused.
func TestTempKeyAuthenticatesOnlyWithinItsWindow(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = 4 * time.Second
	srv := newServer(t, ecfg)
	echo := testenv.EchoServer(t)
	acfg := config(srv, sshd.Addr)
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
	c, err := tun.DialContext(ctx, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hi"))
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "hi" {
		t.Fatalf("%q %v", b, err)
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().APICalls["InvokeCommand"]; n != 1 {
		t.Fatalf("InvokeCommand called %d times", n)
	}

	time.Sleep(ecfg.KeyWindow + 500*time.Millisecond)
	if _, err := tunnel.Open(ctx, tcfg); !errors.Is(err, sshx.ErrAuthFailed) {
		t.Fatalf("login after the window: %v; want sshx.ErrAuthFailed", err)
	}
	waitNoSessions(t, srv)
}

func TestTempKeyCommandFailureIsTyped(t *testing.T) {
	srv := newServer(t, fast()) // no AuthorizedKeys: the instance lacks the plug-in
	_, err := aliyun.NewTempKey(context.Background(), config(srv, "127.0.0.1:22"), "root")
	if !errors.Is(err, aliyun.ErrKeyCommandFailed) {
		t.Fatalf("NewTempKey = %v", err)
	}
	cfg := config(srv, "127.0.0.1:22")
	cfg.InstanceID = "i-bp1unknown00000000"
	if _, err := aliyun.NewTempKey(context.Background(), cfg, "root"); !errors.Is(err, aliyun.ErrInstanceNotFound) {
		t.Fatalf("unknown instance: %v", err)
	}
}

// TestTempKeyWindowMissedIsRetriedOnce: a login that comes after the key's
// window fails; WithTempKey registers a new key and the second login, in
// time, succeeds.
func TestTempKeyWindowMissedIsRetriedOnce(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.AuthorizedKeys = sshd.AuthorizedKeysPath()
	ecfg.KeyWindow = time.Second
	srv := newServer(t, ecfg)
	acfg := config(srv, sshd.Addr)
	acfg.KeyWindow = ecfg.KeyWindow
	ctx := tctx(t, 60*time.Second)
	attempts := 0
	err := aliyun.WithTempKey(ctx, acfg, sshd.User, func(key *aliyun.TempKey) error {
		attempts++
		if attempts == 1 {
			time.Sleep(1500 * time.Millisecond) // the job was slow: the window passes
		}
		tun, err := tunnel.Open(ctx, tunnel.Config{
			DialBastion: func(ctx context.Context) (net.Conn, error) { return aliyun.Dial(ctx, acfg) },
			SSH: sshx.Config{User: sshd.User, PrivateKey: key.PrivatePEM,
				KnownHostsFile: sshd.WriteKnownHosts(true, instance), HostKeyAlias: instance},
		})
		if err != nil {
			return err
		}
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
