// Package exampletest runs the examples' run functions against the real
// stack on loopback: the SSM emulator (ssmtest), a real OpenSSH sshd
// behind it, and the AWS configuration reaching the emulator through the
// environment variables config.LoadDefaultConfig reads, exactly as a job
// configured for AWS would.
package exampletest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/jumpless/jumpless/examples/internal/exampleflags"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// Target is the instance id the emulator maps to the sshd.
const Target = "i-0123456789abcdef0"

// Stack is the emulator and sshd one test runs an example against.
type Stack struct {
	SSM        *ssmtest.Server
	SSHD       *testenv.SSHD
	KnownHosts string // known_hosts with the sshd's host key under Target
	Direct     bool   // no sshd: the examples run with -direct (tunnel.ModeDirect)
}

// Start starts sshd and the emulator (both stopped by t.Cleanup) and points
// the AWS environment at the emulator (see SetAWSEnv). Tests using it
// cannot run in parallel (t.Setenv).
func Start(t *testing.T) *Stack {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{Target: sshd.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	SetAWSEnv(t, srv)
	return &Stack{SSM: srv, SSHD: sshd, KnownHosts: sshd.WriteKnownHosts(false, Target)}
}

// StartDirect starts the emulator only, its instance reaching 127.0.0.1
// (no sshd: the examples run in direct mode), and points the AWS
// environment at it.
func StartDirect(t *testing.T) *Stack {
	t.Helper()
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{Target: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	SetAWSEnv(t, srv)
	return &Stack{SSM: srv, Direct: true}
}

// TunnelArgs returns the flags of exampleflags.Tunnel for the stack.
func (s *Stack) TunnelArgs() []string {
	if s.Direct {
		return []string{"-target", Target, "-direct"}
	}
	return []string{
		"-target", Target,
		"-user", s.SSHD.User,
		"-key", s.SSHD.ClientKeyPath,
		"-known-hosts", s.KnownHosts,
	}
}

// RunFunc is an example's run function: args are its flags, stdout gets
// what it prints.
type RunFunc func(ctx context.Context, args []string, stdout io.Writer) error

// CheckQuery runs run with TunnelArgs and -dsn dsn -query query, and fails
// t unless it succeeds, prints want, and the emulator started exactly one
// session and has none left open.
func (s *Stack) CheckQuery(ctx context.Context, t *testing.T, run RunFunc, dsn, query, want string) {
	t.Helper()
	var out bytes.Buffer
	args := append(s.TunnelArgs(), "-dsn", dsn, "-query", query)
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if out.String() != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if st := s.SSM.Stats(); st.SessionsStarted != 1 || st.SessionsOpen != 0 {
		t.Fatalf("emulator: %d sessions started, %d open; want 1 started through SSM and none left open", st.SessionsStarted, st.SessionsOpen)
	}
}

// CheckBadFlags fails t unless run rejects a missing -target
// (exampleflags.ErrNoTarget), a missing -dsn (an error naming -dsn) and -h
// (flag.ErrHelp), all before any SSM session is started. dsn is a valid
// -dsn value.
func (s *Stack) CheckBadFlags(t *testing.T, run RunFunc, dsn string) {
	t.Helper()
	ctx := context.Background()
	if err := run(ctx, []string{"-dsn", dsn}, io.Discard); !errors.Is(err, exampleflags.ErrNoTarget) {
		t.Errorf("without -target: %v; want ErrNoTarget", err)
	}
	if err := run(ctx, s.TunnelArgs(), io.Discard); err == nil || !strings.Contains(err.Error(), "-dsn") {
		t.Errorf("without -dsn: %v; want an error naming -dsn", err)
	}
	if err := run(ctx, []string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v; want flag.ErrHelp", err)
	}
	if st := s.SSM.Stats(); st.SessionsStarted != 0 {
		t.Fatalf("%d sessions started for bad flags", st.SessionsStarted)
	}
}

// SetAWSEnv sets the environment so that config.LoadDefaultConfig yields
// the emulator's region, credentials and SSM endpoint, and nothing from
// the machine (profiles, shared files, CA bundle, instance metadata,
// session tokens, other endpoints) can interfere. t.Setenv restores the
// environment when the test ends.
func SetAWSEnv(t *testing.T, srv *ssmtest.Server) {
	t.Helper()
	id, secret := srv.Credentials()
	set := map[string]string{
		"AWS_ACCESS_KEY_ID":           id,
		"AWS_SECRET_ACCESS_KEY":       secret,
		"AWS_REGION":                  srv.AWSConfig().Region,
		"AWS_ENDPOINT_URL_SSM":        srv.URL(),
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	for k, v := range set {
		t.Setenv(k, v)
	}
	for _, k := range []string{
		"AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION",
		"AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
		"AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	} {
		t.Setenv(k, "") // records the old value for restoring
		os.Unsetenv(k)
	}
}
