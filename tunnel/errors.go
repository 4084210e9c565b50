package tunnel

import (
	"errors"
	"fmt"
	"net"
)

var (
	// ErrInvalidConfig is matched by every [*ConfigError]: Open rejected
	// the Config before any network call.
	ErrInvalidConfig = errors.New("tunnel: invalid config")

	// ErrTunnelDown is matched by Err (and by later DialContext errors)
	// when a session ended before Close: the SSM session was terminated or
	// lost, or the SSH connection failed (keepalive). The cause is wrapped.
	ErrTunnelDown = errors.New("tunnel: down")

	// ErrClosed is returned by DialContext after Close, and by Err after
	// Close. It also matches net.ErrClosed.
	ErrClosed error = closedError{}
)

type closedError struct{}

func (closedError) Error() string        { return "tunnel: closed" }
func (closedError) Is(target error) bool { return target == net.ErrClosed }

// ConfigError reports a Config that cannot work. It matches
// [ErrInvalidConfig]; Err, when set, is the underlying error from package
// ssm or sshx (e.g. an *ssm.ConfigError or *sshx.KeyError), reachable with
// errors.Is and errors.As.
type ConfigError struct {
	Field   string // the Config field, e.g. "SSM.Target" or "Sessions"
	Problem string // what is wrong and how to fix it
	Err     error  // underlying error, if any
}

// Error returns "tunnel: invalid config: <Field>: <Problem>[: <Err>]".
func (e *ConfigError) Error() string {
	s := fmt.Sprintf("tunnel: invalid config: %s: %s", e.Field, e.Problem)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }
