package tunnel

import (
	"fmt"
	"log/slog"
)

// prepare validates c and returns it with defaults applied. It makes no
// network call. Checks that belong to package ssm (target format, region,
// credentials) are made by ssm.Dial before its first network call.
func (c Config) prepare() (Config, error) {
	if c.Sessions < 0 || c.Sessions > MaxSessions {
		return c, &ConfigError{Field: "Sessions", Problem: fmt.Sprintf("%d is out of range: want 0 (one session) to %d", c.Sessions, MaxSessions)}
	}
	if c.Sessions == 0 {
		c.Sessions = 1
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
	if err := validateSSH(c.SSH); err != nil {
		return c, err
	}
	return c, nil
}
