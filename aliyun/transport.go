package aliyun

import (
	"context"
	"net"
	"strconv"
)

// Transport dials addresses as the instance resolves them, one session
// per connection: "localhost:22" (or "127.0.0.1:22") is the instance's own
// port 22; any other host becomes TargetServer. It has the shape of the
// tunnel's transport seam (Dial(ctx, addr)).
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
