package ssm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// TestBadClientVersionAndRegionAreRefusedBeforeAnyCall guards Validate and
// Dial: a ClientVersion that is not dotted numeric (the agent compares it
// number by number) and a malformed region are typed config errors, and
// Dial sends nothing.
func TestBadClientVersionAndRegionAreRefusedBeforeAnyCall(t *testing.T) {
	srv := newEmulator(t, ssmtest.Config{}, "127.0.0.1:1")
	for _, tc := range []struct {
		field string
		edit  func(*ssm.Config)
	}{
		{"ClientVersion", func(c *ssm.Config) { c.ClientVersion = "1.2.x" }},
		{"ClientVersion", func(c *ssm.Config) { c.ClientVersion = "v1.2.650.0" }},
		{"ClientVersion", func(c *ssm.Config) { c.ClientVersion = "1..2" }},
		{"ClientVersion", func(c *ssm.Config) { c.ClientVersion = "1.2.650.0.1" }},
		{"AWS.Region", func(c *ssm.Config) { c.AWS.Region = "us-east-1a" }},
		{"AWS.Region", func(c *ssm.Config) { c.AWS.Region = "US-EAST-1" }},
		{"AWS.Region", func(c *ssm.Config) { c.AWS.Region = "https://ssm.us-east-1.amazonaws.com" }},
		{"AWS.Region", func(c *ssm.Config) { c.AWS.Region = "useast1" }},
	} {
		cfg := clientConfig(srv)
		tc.edit(&cfg)
		var ce *ssm.ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("Validate(%s): %v; want a *ConfigError for %s", tc.field, err, tc.field)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := ssm.Dial(ctx, cfg)
		cancel()
		if s != nil {
			s.Close()
		}
		if !errors.Is(err, ssm.ErrInvalidConfig) {
			t.Errorf("Dial(%s): %v; want ErrInvalidConfig", tc.field, err)
		}
	}
	for _, ok := range []string{"1.2.650.0", "3", "1.2"} {
		cfg := clientConfig(srv)
		cfg.ClientVersion = ok
		if err := cfg.Validate(); err != nil {
			t.Errorf("ClientVersion %q refused: %v", ok, err)
		}
	}
	for _, ok := range []string{"us-east-1", "us-gov-west-1", "ap-southeast-5", "cn-north-1"} {
		cfg := clientConfig(srv)
		cfg.AWS.Region = ok
		if err := cfg.Validate(); err != nil {
			t.Errorf("region %q refused: %v", ok, err)
		}
	}
	if n := srv.Stats().APIRequests; n != 0 {
		t.Errorf("%d API requests for bad configs", n)
	}
}

// TestCredentialProviderFailureIsNotAnAPIError guards the local
// credentials: when the provider fails, no request is sent, and the error
// is a *CredentialsError (ErrCredentials) that says to fix the
// credentials, not an *APIError as if the service had answered.
func TestCredentialProviderFailureIsNotAnAPIError(t *testing.T) {
	srv := newEmulator(t, ssmtest.Config{}, "127.0.0.1:1")
	cfg := clientConfig(srv)
	providerErr := errors.New("no SSO session: run aws sso login")
	cfg.AWS.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, providerErr
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := ssm.Dial(ctx, cfg)
	if s != nil {
		s.Close()
	}
	var ce *ssm.CredentialsError
	var ae *ssm.APIError
	if !errors.Is(err, ssm.ErrCredentials) || !errors.As(err, &ce) || !errors.Is(err, providerErr) || errors.As(err, &ae) {
		t.Fatalf("Dial: %v; want a *CredentialsError wrapping the provider's error, not an *APIError", err)
	}
	if n := srv.Stats().APIRequests; n != 0 {
		t.Errorf("%d API requests without credentials", n)
	}
}
