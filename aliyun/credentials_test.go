package aliyun_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/internal/testenv"
)

// TestCredentialsFromTheEnvironment: with Config.Credential nil the
// credentials library's default chain is used; here the environment
// variables Alibaba's tools read.
func TestCredentialsFromTheEnvironment(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	t.Setenv("HOME", t.TempDir()) // no profile file from the machine
	t.Setenv("ALIBABA_CLOUD_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", srv.AccessKeyID())
	t.Setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", srv.AccessKeySecret())
	cfg := config(srv, echo)
	cfg.Credential = nil
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial with credentials from the environment: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoSessions(t, srv)
}
