package tunnel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// icEmulator is the emulator with EC2 Instance Connect installing pushed
// keys into sshd's second authorized_keys file for window (0: 60 s).
func icEmulator(t *testing.T, sshd *testenv.SSHD, window time.Duration, installed bool) *ssmtest.Server {
	t.Helper()
	cfg := ssmtest.Config{Targets: map[string]string{target: sshd.Addr}, InstanceConnectWindow: window}
	if installed {
		cfg.InstanceConnect = map[string]string{target: sshd.InstanceConnectKeysPath}
	}
	srv, err := ssmtest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// icConfig is a tunnel config with no key file at all: Instance Connect only.
func icConfig(srv *ssmtest.Server, sshd *testenv.SSHD) tunnel.Config {
	return tunnel.Config{
		SSM:             ssm.Config{AWS: srv.AWSConfig(), Target: target},
		SSH:             sshx.Config{User: sshd.User, KnownHostsFile: sshd.WriteKnownHosts(true, target)},
		InstanceConnect: &instanceconnect.Config{},
	}
}

// TestInstanceConnectTunnelNeedsNoKeyFile: three sessions log in with one
// pushed key (the pushes of parallel sessions coalesce) and a query runs
// through the tunnel against the real MariaDB.
func TestInstanceConnectTunnelNeedsNoKeyFile(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := icEmulator(t, sshd, 0, true)
	var logs bytes.Buffer
	cfg := icConfig(srv, sshd)
	cfg.Sessions = 3
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tun := open(t, cfg)
	if n := srv.Stats().KeysPushed; n != 1 {
		t.Fatalf("keys pushed %d, want 1 for 3 sessions opened together", n)
	}
	db, err := dialer.OpenMySQL(tun, "root@tcp("+testenv.MySQLAddr(t)+")/test")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query: %d %v", one, err)
	}
	if !strings.Contains(logs.String(), "key pushed") || strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatalf("logs: %s", logs.String())
	}
}

// TestInstanceConnectKeyPushedBeyondWindowIsRefused: the real sshd refuses
// a key pushed longer ago than the window (2 s here, 60 s on AWS); pushing
// again makes it work.
func TestInstanceConnectKeyPushedBeyondWindowIsRefused(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := icEmulator(t, sshd, 2*time.Second, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := instanceconnect.New(instanceconnect.Config{AWS: srv.AWSConfig(), InstanceID: target, OSUser: sshd.User, Reuse: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Push(ctx); err != nil {
		t.Fatal(err)
	}
	login := func() error {
		sess, err := ssm.Dial(ctx, ssm.Config{AWS: srv.AWSConfig(), Target: target})
		if err != nil {
			t.Fatal(err)
		}
		c, err := sshx.NewClient(ctx, sess, target, sshx.Config{User: sshd.User, Signers: []ssh.Signer{key.Signer()}, HostKey: sshd.HostKey})
		if err == nil {
			c.Close()
		}
		sess.Close()
		return err
	}
	if err := login(); err != nil {
		t.Fatalf("login inside the window: %v", err)
	}
	time.Sleep(3100 * time.Millisecond) // past the 2 s window (second granularity)
	if err := login(); !errors.Is(err, sshx.ErrAuthFailed) {
		t.Fatalf("login 3 s after a push with a 2 s window: got %v, want ErrAuthFailed", err)
	}
	if err := key.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := login(); err != nil {
		t.Fatalf("login after pushing again: %v", err)
	}
	if key.Pushes() != 2 || srv.Stats().KeysPushed != 2 {
		t.Fatalf("pushes %d (emulator %d), want 2", key.Pushes(), srv.Stats().KeysPushed)
	}
}

// TestInstanceConnectLaterSessionPushesAgain: a session opened after
// Reuse has passed pushes again (tunnel level).
func TestInstanceConnectLaterSessionPushesAgain(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := icEmulator(t, sshd, 3*time.Second, true)
	cfg := icConfig(srv, sshd)
	cfg.InstanceConnect.Reuse = time.Second
	open(t, cfg)
	time.Sleep(4 * time.Second) // the first key is dead now
	open(t, cfg)
	if n := srv.Stats().KeysPushed; n != 2 {
		t.Fatalf("keys pushed %d, want 2", n)
	}
}

func TestInstanceConnectErrorsAreTyped(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	t.Run("not installed", func(t *testing.T) {
		srv := icEmulator(t, sshd, 0, false)
		_, err := tunnel.Open(context.Background(), icConfig(srv, sshd))
		if !errors.Is(err, instanceconnect.ErrNotInstalled) || !errors.Is(err, sshx.ErrAuthFailed) || !strings.Contains(err.Error(), "install EC2 Instance Connect") {
			t.Fatalf("got %v", err)
		}
		waitNoSessions(t, srv)
	})
	t.Run("mi target", func(t *testing.T) {
		srv := icEmulator(t, sshd, 0, true)
		cfg := icConfig(srv, sshd)
		cfg.SSM.Target = "mi-0123456789abcdef0"
		_, err := tunnel.Open(context.Background(), cfg)
		if !errors.Is(err, instanceconnect.ErrNotEC2) || !errors.Is(err, tunnel.ErrInvalidConfig) {
			t.Fatalf("got %v", err)
		}
		if st := srv.Stats(); st.APIRequests != 0 {
			t.Fatalf("%d API requests for a config error", st.APIRequests)
		}
	})
	for _, tc := range []struct {
		code string
		want error
	}{{"AccessDeniedException", instanceconnect.ErrDenied}, {"ThrottlingException", instanceconnect.ErrThrottled}} {
		t.Run(tc.code, func(t *testing.T) {
			srv := icEmulator(t, sshd, 0, true)
			srv.SetAPIFault(ssmtest.APIFault{Operation: "SendSSHPublicKey", Code: tc.code})
			_, err := tunnel.Open(context.Background(), icConfig(srv, sshd))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v", err)
			}
			waitNoSessions(t, srv)
		})
	}
}
