package tunnel_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// TestBadSSHPortIsRejectedBeforeAnySession guards the validation of
// Config.SSHPort: out of range, set in ModeDirect (no SSH there) or
// contradicting SSM.PortNumber, each is a *tunnel.ConfigError naming
// SSHPort, before any session starts (noAPI fails the test if the SSM API
// is reached).
func TestBadSSHPortIsRejectedBeforeAnySession(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	base := tunnel.Config{
		SSM: ssm.Config{Target: "i-0123456789abcdef0", API: noAPI{}},
		SSH: sshx.Config{User: "u", Signers: []gossh.Signer{signer}, InsecureIgnoreHostKey: true},
	}
	cases := map[string]func(c *tunnel.Config){
		"negative":        func(c *tunnel.Config) { c.SSHPort = -1 },
		"above 65535":     func(c *tunnel.Config) { c.SSHPort = 65536 },
		"in ModeDirect":   func(c *tunnel.Config) { c.SSHPort = 2222; c.Mode = tunnel.ModeDirect; c.SSH = sshx.Config{} },
		"SSM.PortNumber≠": func(c *tunnel.Config) { c.SSHPort = 2222; c.SSM.PortNumber = 22 },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := base
			edit(&cfg)
			tun, err := tunnel.Open(context.Background(), cfg)
			if err == nil {
				tun.Close()
				t.Fatal("Open accepted the config")
			}
			var ce *tunnel.ConfigError
			if !errors.As(err, &ce) || ce.Field != "SSHPort" || !errors.Is(err, tunnel.ErrInvalidConfig) {
				t.Fatalf("Open = %v; want a *tunnel.ConfigError for SSHPort", err)
			}
		})
	}
}
