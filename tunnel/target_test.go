package tunnel_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// TestTagTargetOpensEverySessionOnTheOnlineInstance: tag:Name=etl-bastion
// matches an online and an offline instance; the tunnel's sessions all go
// to the online one and carry data through the real sshd.
func TestTagTargetOpensEverySessionOnTheOnlineInstance(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	srv, err := ssmtest.NewServer(ssmtest.Config{
		Targets: map[string]string{target: sshd.Addr, "i-0fffffffffffffff0": "127.0.0.1:1"},
		Instances: map[string]ssmtest.Instance{
			target:                {Tags: map[string]string{"Name": "etl-bastion"}},
			"i-0fffffffffffffff0": {Tags: map[string]string{"Name": "etl-bastion"}, PingStatus: ssmtest.PingConnectionLost},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg := ssmConfig(srv, sshd) // known_hosts holds the key under the instance id
	cfg.SSM.Target = "tag:Name=etl-bastion"
	cfg.Sessions = 2
	tun := open(t, cfg)
	for range 2 {
		c := dial(t, tun, echo)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
			t.Fatalf("echo %q %v", b, err)
		}
	}
	if st := srv.Stats(); st.SessionsStarted != 2 {
		t.Fatalf("sessions started %d, want 2", st.SessionsStarted)
	}
}

func TestTagTargetOfflineFailsOpenWithLastPing(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{
		Targets: map[string]string{target: "127.0.0.1:1"},
		Instances: map[string]ssmtest.Instance{target: {Tags: map[string]string{"Name": "etl-bastion"},
			PingStatus: ssmtest.PingConnectionLost, LastPingTime: time.Date(2026, 11, 29, 1, 2, 3, 0, time.UTC)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	sshd := testenv.StartSSHD(t)
	for _, tc := range []struct {
		target string
		check  bool
	}{{"tag:Name=etl-bastion", false}, {target, true}} {
		cfg := ssmConfig(srv, sshd)
		cfg.SSM.Target, cfg.SSM.CheckTarget = tc.target, tc.check
		_, err = tunnel.Open(context.Background(), cfg)
		var te *ssm.TargetError
		if !errors.Is(err, ssm.ErrTargetOffline) || !errors.As(err, &te) || !strings.Contains(err.Error(), "last ping 2026-11-29T01:02:03Z") {
			t.Fatalf("%s: got %v", tc.target, err)
		}
	}
	if st := srv.Stats(); st.SessionsStarted != 0 {
		t.Fatalf("sessions started %d", st.SessionsStarted)
	}
}
