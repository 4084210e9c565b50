package tunnel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// TestBadSSMConfigIsRejectedBeforeAnySession guards Open's use of
// ssm.Config.Validate: an SSM setting that ssm.Dial would reject is
// reported once, as a *tunnel.ConfigError naming the SSM field, before any
// session starts (noAPI fails the test if the SSM API is reached) and
// before the SSH config is looked at.
func TestBadSSMConfigIsRejectedBeforeAnySession(t *testing.T) {
	cfg := tunnel.Config{
		Sessions: 4,
		SSM:      ssm.Config{Target: "i-0123456789abcdef0", API: noAPI{}, PingInterval: time.Minute, PingTimeout: time.Second},
		SSH:      sshx.Config{}, // no credentials, no host key: also bad
	}
	tun, err := tunnel.Open(context.Background(), cfg)
	if err == nil {
		tun.Close()
		t.Fatal("Open accepted a PingTimeout shorter than PingInterval")
	}
	var ce *tunnel.ConfigError
	var sce *ssm.ConfigError
	if !errors.As(err, &ce) || ce.Field != "SSM.PingTimeout" || !errors.As(err, &sce) || !errors.Is(err, ssm.ErrInvalidConfig) {
		t.Fatalf("Open = %v; want *tunnel.ConfigError for SSM.PingTimeout wrapping *ssm.ConfigError", err)
	}
}
