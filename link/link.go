// Package link is the seam between "how bytes reach the instance" and "how
// connections are multiplexed" in jumpless.
//
// A [Transport] starts sessions through a cloud's session manager (AWS
// Session Manager: package ssm/ssmlink; Alibaba Cloud Assistant: package
// aliyun) and returns each as a [Link], a byte stream. Package tunnel
// multiplexes database connections over links: SSH direct-tcpip channels
// over a link to the instance's sshd, smux streams over a port session
// ([PortTransport], package portmux), or one link per connection.
//
// The package has no dependencies beyond the standard library, so that a
// transport implements these interfaces without importing tunnel.
package link

import (
	"context"
	"errors"
	"net"
)

// Link is one session through a cloud's session manager, as a byte stream.
//
// Read returns io.EOF only when the far side really closed the stream; when
// the session died (terminated, lost, timed out) Read and Write return an
// error that says why, never io.EOF.
type Link interface {
	net.Conn
	// ID is the cloud's session id, for logs and statistics.
	ID() string
	// Done is closed when the session has ended.
	Done() <-chan struct{}
	// Err returns nil while the session is up, then why it ended.
	Err() error
}

// Transport opens sessions to addresses as the instance sees them.
type Transport interface {
	// Dial starts one session that carries exactly one TCP connection to
	// addr ("host:port", resolved on the instance; "localhost:22" is the
	// instance's own sshd). Closing the Link ends the session. A target the
	// instance cannot reach is reported as an error matching [ErrConnect]
	// or [ErrForbidden], either by Dial or, when the agent only says so
	// after the session started, by the Link's first Read.
	Dial(ctx context.Context, addr string) (Link, error)
}

// PortMode says how a port session's bytes are framed.
type PortMode struct {
	// Mux: the link carries an smux v1 byte stream whose client opens one
	// stream per connection to the session's address (AWS agents >
	// 3.0.196.0, reference §8.4). False: the link is one connection (the
	// agent's basic mode, §8.3).
	Mux bool

	// KeepAlive: the agent expects smux keep-alive frames (it closes an
	// smux session that sends none for 30 s). Only meaningful with Mux.
	KeepAlive bool

	// ConnectErrors receives one value for every stream the agent could not
	// connect to the target (AWS ConnectToPortError, which carries no
	// stream id). Nil: the transport never reports them.
	ConnectErrors <-chan struct{}
}

// PortTransport is a Transport whose sessions can carry many connections to
// one address.
type PortTransport interface {
	Transport
	// DialPort starts a port-forwarding session to addr and says how its
	// bytes are framed.
	DialPort(ctx context.Context, addr string) (Link, PortMode, error)
}

var (
	// ErrConnect is matched by every [*ConnectError].
	ErrConnect = errors.New("link: the instance could not connect to the address")
	// ErrForbidden is matched by every [*ForbiddenError].
	ErrForbidden = errors.New("link: the agent refuses to forward to the address")
)

// ConnectError reports that the instance (its agent) could not open a TCP
// connection to Addr: nothing listens there, a security group or firewall
// drops it, or the name does not resolve on the instance. It matches
// [ErrConnect].
type ConnectError struct {
	Addr      string // the address as dialed ("host:port")
	SessionID string // the session that tried, if known
	Reason    string // the agent's words, if it gave any
	Err       error  // the transport's own error, if any (e.g. *aliyun.StatusError); reachable with errors.As
}

// Error says what failed and what to check (with no Reason, Err's text
// says it).
func (e *ConnectError) Error() string {
	s := "link: the instance could not connect to " + e.Addr
	if e.Reason == "" && e.Err != nil {
		if e.SessionID != "" {
			s += " (session " + e.SessionID + ")"
		}
		return s + ": " + e.Err.Error()
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.SessionID != "" {
		s += " (session " + e.SessionID + ")"
	}
	return s + "; check that the address is right and reachable from the instance (security groups, listening port)"
}

// Is reports whether target is [ErrConnect].
func (e *ConnectError) Is(target error) bool { return target == ErrConnect }

// Unwrap returns Err.
func (e *ConnectError) Unwrap() error { return e.Err }

// ForbiddenError reports that the agent refuses to forward to Addr (AWS:
// "Forwarding to IP address … is forbidden" for the instance metadata
// service and the VPC's reserved addresses). It matches [ErrForbidden].
type ForbiddenError struct {
	Addr      string // the address as dialed
	SessionID string // the session that was refused, if known
	Reason    string // the agent's words
}

// Error says what was refused.
func (e *ForbiddenError) Error() string {
	s := "link: the agent refuses to forward to " + e.Addr
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.SessionID != "" {
		s += " (session " + e.SessionID + ")"
	}
	return s
}

// Is reports whether target is [ErrForbidden].
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }
