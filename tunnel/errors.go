package tunnel

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

var (
	// ErrInvalidConfig is matched by every [*ConfigError]: Open rejected
	// the Config before any network call.
	ErrInvalidConfig = errors.New("tunnel: invalid config")

	// ErrTunnelDown is matched by Err (and by later DialContext errors)
	// when a session ended before Close: the SSM session was terminated or
	// lost, or the SSH connection failed (keepalive). The cause is wrapped.
	// With Config.Replace, only once no replacement session could be
	// opened (a lost session's connections match ErrSessionLost instead).
	ErrTunnelDown = errors.New("tunnel: down")

	// ErrClosed is returned by DialContext after Close, and by Err after
	// Close. It also matches net.ErrClosed.
	ErrClosed error = closedError{}

	// ErrBadAddress is matched by every [*AddrError]: DialContext was given
	// a network or address it cannot dial.
	ErrBadAddress = errors.New("tunnel: bad dial address")
)

// AddrError reports a network or address DialContext cannot dial; nothing
// was sent. It matches [ErrBadAddress].
type AddrError struct {
	Network string // as passed to DialContext
	Addr    string // as passed to DialContext
	Problem string // what is wrong and how to fix it
}

// Error returns "tunnel: cannot dial <network> <addr>: <Problem>".
func (e *AddrError) Error() string {
	return fmt.Sprintf("tunnel: cannot dial %s %q: %s", e.Network, e.Addr, e.Problem)
}

// Is reports whether target is [ErrBadAddress].
func (e *AddrError) Is(target error) bool { return target == ErrBadAddress }

// checkDialAddr checks DialContext's network and address; a problem is a
// *net.OpError wrapping an *AddrError.
func checkDialAddr(network, addr string) error {
	bad := func(problem string) error {
		return &net.OpError{Op: "dial", Net: network, Err: &AddrError{Network: network, Addr: addr, Problem: problem}}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return bad(`only TCP can be tunnelled: use network "tcp"`)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad(`want "host:port", e.g. "db.internal:5432" or "[fd00::1]:5432"`)
	}
	if host == "" {
		return bad(`no host: want "host:port", e.g. "db.internal:5432"`)
	}
	if port == "" {
		return bad("no port: add the port the database listens on, e.g. :5432")
	}
	if port[0] >= '0' && port[0] <= '9' {
		p, err := strconv.ParseUint(port, 10, 64)
		if err != nil || p == 0 || p > 65535 {
			return bad("port " + port + " out of range: want 1-65535")
		}
		return nil
	}
	if _, err := net.LookupPort(network, port); err != nil {
		return bad("unknown port name " + strconv.Quote(port) + ": use a port number")
	}
	return nil
}

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
