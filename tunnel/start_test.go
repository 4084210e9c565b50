package tunnel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

func startEmulator(t *testing.T, sshd *testenv.SSHD, inst ssmtest.Instance) *ssmtest.Server {
	t.Helper()
	inst.Tags = map[string]string{"Name": "etl-bastion"}
	srv, err := ssmtest.NewServer(ssmtest.Config{
		Targets:    map[string]string{target: sshd.Addr},
		Instances:  map[string]ssmtest.Instance{target: inst},
		StartDelay: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestStartStoppedBastionWaitsUntilOnline: a stopped bastion is started
// (AWS-StartEC2Instance), the tunnel opens once its agent is Online and
// says how long that took; closing the tunnel does not stop it.
func TestStartStoppedBastionWaitsUntilOnline(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := startEmulator(t, sshd, ssmtest.Instance{Stopped: true})
	var logs bytes.Buffer
	cfg := ssmConfig(srv, sshd)
	cfg.SSM.Target = "tag:Name=etl-bastion"
	cfg.SSM.StartStopped, cfg.SSM.StartPollInterval = true, 200*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	tun := open(t, cfg)
	if srv.Stats().InstancesStarted != 1 || !strings.Contains(logs.String(), "startedIn=1.") {
		t.Fatalf("started %d; logs:\n%s", srv.Stats().InstancesStarted, logs.String())
	}
	tun.Close()
	inst, err := ssm.ResolveTarget(context.Background(), ssm.Config{AWS: srv.AWSConfig(), Target: target, CheckTarget: true})
	if err != nil || inst.PingStatus != ssm.PingOnline {
		t.Fatalf("after Close: %+v %v (the instance must keep running)", inst, err)
	}
}

func TestStartStoppedBrokenAgentTimesOutTyped(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	srv := startEmulator(t, sshd, ssmtest.Instance{PingStatus: ssmtest.PingConnectionLost})
	cfg := ssmConfig(srv, sshd)
	cfg.SSM.Target = "tag:Name=etl-bastion"
	cfg.SSM.StartStopped, cfg.SSM.StartPollInterval, cfg.SSM.StartTimeout = true, 200*time.Millisecond, time.Second
	_, err := tunnel.Open(context.Background(), cfg)
	if !errors.Is(err, ssm.ErrTargetOffline) || !strings.Contains(err.Error(), "was not Online within 1s") {
		t.Fatalf("got %v", err)
	}
	cfg.SSM.StartStopped = false
	_, err = tunnel.Open(context.Background(), cfg)
	if !errors.Is(err, ssm.ErrTargetOffline) || strings.Contains(err.Error(), "started") {
		t.Fatalf("without StartStopped: %v", err)
	}
	if st := srv.Stats(); st.SessionsStarted != 0 || st.InstancesStarted != 0 {
		t.Fatalf("%+v", st)
	}
}
