package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
)

// prepare validates c and returns it with defaults applied. It makes no
// network call: the SSM config is checked with ssm.Config.Validate (unless
// DialBastion replaces ssm.Dial) and the SSH config with
// sshx.Config.Validate, so a bad Config never starts a session. The SSH
// private key is loaded once here (sshx.Config.LoadKey).
func (c Config) prepare() (Config, error) {
	c, err := c.prepareScale()
	if err != nil {
		return c, err
	}
	if c.CloseTimeout < 0 {
		return c, &ConfigError{Field: "CloseTimeout", Problem: "must not be negative (0 selects 10s)"}
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Logger != nil {
		if c.SSM.Logger == nil {
			c.SSM.Logger = c.Logger
		}
		if c.SSH.Logger == nil {
			c.SSH.Logger = c.Logger
		}
	} else {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := c.prepareSSHPort(); err != nil {
		return c, err
	}
	switch c.Mode {
	case ModeSSH:
	case ModeDirect:
		return c.prepareDirect()
	default:
		return c, &ConfigError{Field: "Mode", Problem: fmt.Sprintf("unknown mode %d: want ModeSSH or ModeDirect", int(c.Mode))}
	}
	if c.DialBastion == nil && c.Transport == nil {
		if err := c.SSM.Validate(); err != nil {
			return c, ssmConfigError(err)
		}
	}
	sshCfg := c.SSH
	if c.InstanceConnect != nil {
		// Check the Instance Connect config now (an mi- target, a missing
		// region) and let the SSH checks count its key as a login method.
		probe := c
		if ssm.IsSelector(probe.SSM.Target) {
			probe.SSM.Target = "i-00000000" // resolved by Open
		}
		key, err := probe.instanceConnectKey()
		if err != nil {
			return c, err
		}
		sshCfg.Signers = append(slices.Clip(sshCfg.Signers), key.Signer())
	}
	ssh, err := prepareSSH(sshCfg)
	if err != nil {
		return c, err
	}
	if c.InstanceConnect != nil {
		ssh.Signers = c.SSH.Signers // Open adds the tunnel's own key
	}
	c.SSH = ssh
	return c, nil
}

// prepareSSHPort checks SSHPort and folds it into SSM.PortNumber, the one
// field the session code reads (ssm.Dial and Transport.Dial in ModeSSH).
func (c *Config) prepareSSHPort() error {
	if c.SSHPort < 0 || c.SSHPort > 65535 {
		return &ConfigError{Field: "SSHPort", Problem: fmt.Sprintf("%d is out of range: want 1-65535 (0 selects SSM.PortNumber, else 22)", c.SSHPort)}
	}
	if c.SSHPort == 0 {
		return nil
	}
	if c.Mode == ModeDirect {
		return &ConfigError{Field: "SSHPort", Problem: "ModeDirect uses no SSH: leave SSHPort zero, or use ModeSSH"}
	}
	if c.SSM.PortNumber != 0 && c.SSM.PortNumber != c.SSHPort {
		return &ConfigError{Field: "SSHPort", Problem: fmt.Sprintf("%d differs from SSM.PortNumber %d: set one of them (SSHPort for any transport)", c.SSHPort, c.SSM.PortNumber)}
	}
	c.SSM.PortNumber = c.SSHPort
	return nil
}

// instanceConnectKey makes the tunnel's EC2 Instance Connect key for the
// (resolved) target, filling the zero fields of c.InstanceConnect.
func (c *Config) instanceConnectKey() (*instanceconnect.Key, error) {
	ic := *c.InstanceConnect
	if ic.InstanceID == "" {
		ic.InstanceID = c.SSM.Target
	}
	if ic.OSUser == "" {
		ic.OSUser = c.SSH.User
		if ic.OSUser == "" {
			ic.OSUser = sshx.DefaultUser
		}
	}
	if ic.API == nil && ic.AWS.Region == "" && ic.AWS.Credentials == nil {
		ic.AWS = c.SSM.AWS
	}
	if ic.Logger == nil {
		ic.Logger = c.Logger
	}
	key, err := instanceconnect.New(ic)
	if err != nil {
		return nil, &ConfigError{Field: "InstanceConnect", Problem: "rejected by package instanceconnect", Err: err}
	}
	return key, nil
}

// ssmConfigError wraps an error matching ssm.ErrInvalidConfig in a
// *ConfigError naming the field ("SSM.<Field>").
func ssmConfigError(err error) error {
	field := "SSM"
	var ce *ssm.ConfigError
	if errors.As(err, &ce) {
		field += "." + ce.Field
	}
	return &ConfigError{Field: field, Problem: "rejected by package ssm", Err: err}
}
