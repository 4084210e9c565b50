package tunnel

import (
	"context"
	"errors"
	"net"

	"github.com/jumpless/jumpless/sshx"
)

// validateSSH checks the SSH part of the config before any network call:
// credentials and host key sources present, key file readable and
// decryptable, known_hosts readable.
//
// sshx does not export its validation (see docs/REQUESTS-tunnel.md), but
// sshx.NewClient completes it — defaults, host key sources, loading and
// decrypting the key — before it looks at ctx or the connection. Calling it
// with a cancelled context over one end of an in-memory pipe therefore runs
// exactly sshx's checks and nothing else: a valid config yields
// context.Canceled.
func validateSSH(c sshx.Config) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cl, err := sshx.NewClient(ctx, a, "validate", c)
	if cl != nil { // cannot happen with a cancelled ctx; do not leak it
		cl.Close()
		return nil
	}
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	field := "SSH"
	var ke *sshx.KeyError
	switch {
	case errors.As(err, &ke) && ke.Path != "":
		field = "SSH.PrivateKeyFile"
	case errors.As(err, &ke):
		field = "SSH.PrivateKey"
	case errors.Is(err, sshx.ErrNoHostKeyCheck):
		field = "SSH.KnownHostsFile"
	case errors.Is(err, sshx.ErrNoAuthMethod):
		field = "SSH.PrivateKeyFile"
	}
	return &ConfigError{Field: field, Problem: "rejected by package sshx", Err: err}
}
