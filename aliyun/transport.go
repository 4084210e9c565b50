package aliyun

import (
	"context"
	"net"
	"strconv"

	"github.com/jumpless/jumpless/link"
)

// Transport dials addresses as the instance resolves them, one session
// per connection: "localhost:22" (or "127.0.0.1:22") is the instance's own
// port 22; any other host becomes TargetServer. Its Dial returns the
// concrete *Conn; [Transport.Link] is the same transport as a
// [link.Transport], for tunnel.Config.Transport.
type Transport struct {
	cfg Config
}

// NewTransport validates cfg (its PortNumber and TargetServer are set per
// Dial) and returns a Transport.
func NewTransport(cfg Config) (*Transport, error) {
	cfg.PortNumber, cfg.TargetServer = 0, ""
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Transport{cfg: cfg}, nil
}

// Dial starts a session to addr and returns its connection; closing it
// ends the session.
func (t *Transport) Dial(ctx context.Context, addr string) (*Conn, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &ConfigError{Field: "addr", Problem: err.Error()}
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return nil, &ConfigError{Field: "addr", Problem: "port " + strconv.Quote(p) + " is not 1..65535"}
	}
	cfg := t.cfg
	cfg.PortNumber = port
	switch host {
	case "", "localhost", "127.0.0.1", "::1":
	default:
		cfg.TargetServer = host
	}
	return Dial(ctx, cfg)
}

// DialContext implements the dialer package's ContextDialer: each
// connection is its own session to addr as the instance resolves it
// ("direct" mode, no SSH). network must be "tcp", "tcp4" or "tcp6".
func (t *Transport) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &ConfigError{Field: "network", Problem: strconv.Quote(network) + ": Session Manager forwards TCP only"}
	}
	c, err := t.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Link returns t as a [link.Transport] (tunnel.Config.Transport): its Dial
// returns the same *Conn as [Transport.Dial], typed as a [link.Link].
// Cloud Assistant has no multiplexed port sessions, so it is not a
// link.PortTransport: tunnel's ModeDirect opens one session per
// connection.
func (t *Transport) Link() *LinkTransport { return &LinkTransport{t: t} }

// LinkTransport is a [Transport] as a [link.Transport]; make one with
// [Transport.Link].
//
// Errors: a target the instance cannot connect to (the agent's
// "Open_port_failed" / "OpenTargetPortFailed") is a *StatusError that also
// matches [link.ErrConnect], from the Link's first Read (the server says
// so only after the session started). Cloud Assistant has no refusal that
// means [link.ErrForbidden]. Other refusals keep this package's typed
// errors (ErrSessionLimit, ErrAuth, ErrInstanceNotFound, ErrSessionLost,
// *StatusError).
type LinkTransport struct{ t *Transport }

var _ link.Transport = (*LinkTransport)(nil)
var _ link.Link = (*Conn)(nil)

// Dial starts a session to addr (see [Transport.Dial]).
func (lt *LinkTransport) Dial(ctx context.Context, addr string) (link.Link, error) {
	c, err := lt.t.Dial(ctx, addr)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}
