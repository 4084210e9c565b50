package tunnel

import (
	"errors"

	"github.com/jumpless/jumpless/sshx"
)

// prepareSSH checks the SSH part of the config before any network call:
// credentials and host key sources present, key file readable and
// decryptable, known_hosts readable (sshx.Config.Validate). It returns the
// config with the private key loaded (sshx.Config.LoadKey), so that the key
// is read and decrypted once, not once per session.
func prepareSSH(c sshx.Config) (sshx.Config, error) {
	loaded, err := c.LoadKey()
	if err == nil {
		err = loaded.Validate()
	}
	if err == nil {
		return loaded, nil
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
	return c, &ConfigError{Field: field, Problem: "rejected by package sshx", Err: err}
}
