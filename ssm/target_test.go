package ssm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// tagServer is an emulator with three bastions: one online etl-bastion,
// two online "dup" bastions, one offline "old" bastion.
func tagServer(t *testing.T, target string) *ssmtest.Server {
	t.Helper()
	lastPing := time.Date(2026, 11, 29, 22, 15, 0, 0, time.UTC)
	srv, err := ssmtest.NewServer(ssmtest.Config{
		Targets: map[string]string{"i-0000000000000000a": target, "i-0000000000000000b": target, "i-0000000000000000c": target, "i-0000000000000000d": target},
		Instances: map[string]ssmtest.Instance{
			"i-0000000000000000a": {Tags: map[string]string{"Name": "etl-bastion", "team": "data"}},
			"i-0000000000000000b": {Tags: map[string]string{"Name": "dup", "team": "data"}},
			"i-0000000000000000c": {Tags: map[string]string{"Name": "dup"}},
			"i-0000000000000000d": {Tags: map[string]string{"Name": "old"}, PingStatus: ssmtest.PingConnectionLost, LastPingTime: lastPing},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestTagTargetResolvesToTheOneOnlineInstance(t *testing.T) {
	echo := startEcho(t, []byte("SSH-2.0-echo\r\n"))
	srv := tagServer(t, echo.addr())
	ctx := context.Background()
	cfg := ssm.Config{AWS: srv.AWSConfig(), Target: "tag:Name=etl-bastion"}
	inst, err := ssm.ResolveTarget(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != "i-0000000000000000a" || inst.PingStatus != ssm.PingOnline || inst.LastPingTime.IsZero() {
		t.Fatalf("resolved %+v", inst)
	}
	s, err := ssm.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Target() != "i-0000000000000000a" {
		t.Fatalf("session target %q", s.Target())
	}
	buf := make([]byte, 14)
	if _, err := s.Read(buf); err != nil || string(buf) != "SSH-2.0-echo\r\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestTagTargetErrorsNameInstancesAndFix(t *testing.T) {
	srv := tagServer(t, "127.0.0.1:1")
	ctx := context.Background()
	for _, tc := range []struct {
		target string
		want   error
		says   []string
	}{
		{"tag:Name=nope", ssm.ErrNoTarget, []string{`"tag:Name=nope"`, "check the tag or id"}},
		{"tag:Name=dup", ssm.ErrAmbiguousTarget, []string{"i-0000000000000000b", "i-0000000000000000c", "Online", "pass the instance id"}},
		{"tag:Name=old", ssm.ErrTargetOffline, []string{"i-0000000000000000d", "ConnectionLost", "last ping 2026-11-29T22:15:00Z", "start the instance"}},
		{"i-0000000000000000d", ssm.ErrTargetOffline, []string{"ConnectionLost", "last ping 2026-11-29T22:15:00Z"}},
		{"i-00000000000000999", ssm.ErrNoTarget, []string{"i-00000000000000999"}},
	} {
		before := srv.Stats().SessionsStarted
		_, err := ssm.Dial(ctx, ssm.Config{AWS: srv.AWSConfig(), Target: tc.target, CheckTarget: true})
		var te *ssm.TargetError
		if !errors.Is(err, tc.want) || !errors.As(err, &te) {
			t.Fatalf("%s: got %v, want %v", tc.target, err, tc.want)
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", tc.target, err, s)
			}
		}
		if srv.Stats().SessionsStarted != before {
			t.Errorf("%s: a session was started", tc.target)
		}
	}
}

func TestTagTargetMalformedIsConfigError(t *testing.T) {
	srv := tagServer(t, "127.0.0.1:1")
	for _, target := range []string{"tag:", "tag:Name", "tag:=x", "tag:Name="} {
		err := ssm.Config{AWS: srv.AWSConfig(), Target: target}.Validate()
		if !errors.Is(err, ssm.ErrInvalidConfig) || !strings.Contains(err.Error(), "tag:Key=Value") {
			t.Errorf("%q: %v", target, err)
		}
	}
}

func TestTagTargetDeniedIsAPIError(t *testing.T) {
	srv := tagServer(t, "127.0.0.1:1")
	srv.SetAPIFault(ssmtest.APIFault{Operation: "DescribeInstanceInformation", Code: "AccessDeniedException",
		Message: "User: arn:aws:iam::123456789012:user/etl is not authorized to perform: ssm:DescribeInstanceInformation"})
	_, err := ssm.ResolveTarget(context.Background(), ssm.Config{AWS: srv.AWSConfig(), Target: "tag:Name=etl-bastion"})
	var ae *ssm.APIError
	if !errors.As(err, &ae) || ae.Op != "DescribeInstanceInformation" || !strings.Contains(err.Error(), "ssm:DescribeInstanceInformation") {
		t.Fatalf("got %v", err)
	}
}
