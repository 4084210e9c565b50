package tunnel

import (
	"errors"

	"github.com/jumpless/jumpless/sshx"
)

// validateSSH checks the SSH part of the config before any network call:
// credentials and host key sources present, key file readable and
// decryptable, known_hosts readable (sshx.Config.Validate).
func validateSSH(c sshx.Config) error {
	err := c.Validate()
	if err == nil {
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
