// Package ssmlink is the AWS Session Manager transport of jumpless: it
// implements link.Transport and link.PortTransport with package ssm.
//
//   - Dial("localhost:22") starts an AWS-StartSSHSession session (what
//     tunnel's SSH mode runs SSH over); Dial of another address starts a
//     port session that carries exactly one connection.
//   - DialPort(addr) starts AWS-StartPortForwardingSessionToRemoteHost
//     (parameters host, portNumber, localPortNumber) or, for localhost,
//     AWS-StartPortForwardingSession, and reports from the agent's version
//     whether the agent multiplexes it with smux (reference §8.1).
//
// The agent's refusals reach the caller as typed errors: "Forwarding to IP
// address … is forbidden" as *link.ForbiddenError, "Unable to connect to
// specified port" and ConnectToPortError as *link.ConnectError.
package ssmlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/internal/version"
)

// Session documents (AWS-owned).
const (
	DocSSH                  = "AWS-StartSSHSession"
	DocPortForwarding       = "AWS-StartPortForwardingSession"
	DocPortForwardingRemote = "AWS-StartPortForwardingSessionToRemoteHost"
)

// DefaultPortHoldFirstWrite is ssm.Config.HoldFirstWrite for port sessions
// when the caller left it zero: long enough to stay clear of the agent's
// ack-and-discard window right after HandshakeComplete (reference §7.5),
// short because in port sessions the client usually speaks first.
const DefaultPortHoldFirstWrite = 10 * time.Millisecond

// agent versions that change behaviour (reference §8.1).
var (
	versionAgentMux = []int{3, 0, 196, 0}  // mux above it
	versionAgentKA  = []int{3, 1, 1511, 0} // smux keep-alive off above it (with our client version)
)

// basicClientVersion is advertised for sessions that must stay in basic
// mode (Dial of a remote address): below the agent's mux threshold 1.1.70.
const basicClientVersion = "1.0.0.0"

// Transport starts AWS Session Manager sessions from one ssm.Config.
type Transport struct {
	cfg ssm.Config
}

// New returns a transport for cfg (Target, AWS credentials, endpoint, ...).
// DocumentName, PortNumber and the document parameters are set per session.
func New(cfg ssm.Config) *Transport { return &Transport{cfg: cfg} }

var (
	_ link.Transport     = (*Transport)(nil)
	_ link.PortTransport = (*Transport)(nil)
)

func splitAddr(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("ssmlink: address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("ssmlink: address %q: port must be 1-65535", addr)
	}
	return h, n, nil
}

func isLocal(host string) bool { return host == "localhost" || host == "" }

// Dial starts one session carrying one connection to addr.
func (t *Transport) Dial(ctx context.Context, addr string) (link.Link, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	if isLocal(host) {
		cfg := t.cfg
		if cfg.DocumentName == "" {
			cfg.DocumentName = DocSSH
		}
		cfg.PortNumber = port
		return t.start(ctx, cfg, addr)
	}
	cfg := t.portConfig(host, port)
	cfg.ClientVersion = basicClientVersion
	l, err := t.start(ctx, cfg, addr)
	if err != nil {
		return nil, err
	}
	l.basic = true
	return l, nil
}

// DialPort starts a port-forwarding session to addr.
func (t *Transport) DialPort(ctx context.Context, addr string) (link.Link, link.PortMode, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return nil, link.PortMode{}, err
	}
	cfg := t.portConfig(host, port)
	flags := make(chan struct{}, 1024)
	user := cfg.OnFlag
	cfg.OnFlag = func(f ssm.Flag) {
		if f == ssm.FlagConnectToPortError {
			select {
			case flags <- struct{}{}:
			default: // 1024 failed connects not yet matched: they time out as EOF
			}
		}
		if user != nil {
			user(f)
		}
	}
	l, err := t.start(ctx, cfg, addr)
	if err != nil {
		return nil, link.PortMode{}, err
	}
	av, perr := version.Parse(l.AgentVersion())
	mode := link.PortMode{ConnectErrors: flags}
	if perr == nil && version.Compare(av, versionAgentMux) > 0 {
		mode.Mux = true
		mode.KeepAlive = version.Compare(av, versionAgentKA) <= 0
	} else {
		l.basic = true
	}
	return l, mode, nil
}

func (t *Transport) portConfig(host string, port int) ssm.Config {
	cfg := t.cfg
	cfg.PortNumber = port
	params := map[string][]string{"localPortNumber": {"0"}}
	for k, v := range t.cfg.Parameters {
		params[k] = v
	}
	if isLocal(host) {
		cfg.DocumentName = DocPortForwarding
	} else {
		cfg.DocumentName = DocPortForwardingRemote
		params["host"] = []string{host}
	}
	cfg.Parameters = params
	// In basic mode the plugin sends DisconnectToPort when a connection
	// ends (§8.3); a mux-mode agent ignores the flag ([A] port_mux.go).
	cfg.DisconnectOnClose = true
	if cfg.HoldFirstWrite == 0 {
		cfg.HoldFirstWrite = DefaultPortHoldFirstWrite
	}
	return cfg
}

func (t *Transport) start(ctx context.Context, cfg ssm.Config, addr string) (*Link, error) {
	s, err := ssm.Dial(ctx, cfg)
	if err != nil {
		return nil, classify(err, addr, "")
	}
	return &Link{s: s, addr: addr}, nil
}

// Link is one AWS session (an *ssm.Session) with the agent's refusals
// mapped to typed errors.
type Link struct {
	s     *ssm.Session
	addr  string
	basic bool
}

// Session returns the underlying SSM session.
func (l *Link) Session() *ssm.Session { return l.s }

// AgentVersion is the agent's version from its handshake.
func (l *Link) AgentVersion() string { return l.s.AgentVersion() }

// ID is the SSM session id.
func (l *Link) ID() string { return l.s.ID() }

// Done is closed when the session has ended.
func (l *Link) Done() <-chan struct{} { return l.s.Done() }

// Err is nil while the session is up, then why it ended (typed as in Read).
func (l *Link) Err() error {
	err := l.s.Err()
	if err == nil {
		return nil
	}
	return classify(err, l.addr, l.s.ID())
}

// Read reads from the session. When the session ended, it returns the
// session's cause: never io.EOF for a session that was ended by the
// service or lost (a basic-mode agent does not signal the target's close:
// the connection then goes quiet until a deadline or the session's end).
func (l *Link) Read(p []byte) (int, error) {
	n, err := l.s.Read(p)
	if err != nil {
		err = l.readErr(err)
	}
	return n, err
}

func (l *Link) readErr(err error) error {
	if errors.Is(err, io.EOF) {
		// channel_closed without a reason: the session ended. For
		// AWS-StartSSHSession that is how the agent reports the target's
		// EOF (§8.2), so EOF stays EOF there; a port session's EOF is the
		// session's end, not the target's.
		if !l.basic {
			return err
		}
		return fmt.Errorf("ssmlink: session %s ended: %w", l.s.ID(), ssm.ErrSessionTerminated)
	}
	return classify(err, l.addr, l.s.ID())
}

// Write writes to the session.
func (l *Link) Write(p []byte) (int, error) {
	n, err := l.s.Write(p)
	if err != nil {
		err = classify(err, l.addr, l.s.ID())
	}
	return n, err
}

// Close ends the session (basic mode: DisconnectToPort, then
// TerminateSession).
func (l *Link) Close() error { return l.s.Close() }

// LocalAddr is the session's local address.
func (l *Link) LocalAddr() net.Addr { return l.s.LocalAddr() }

// RemoteAddr is the address the session reaches.
func (l *Link) RemoteAddr() net.Addr { return addrOf(l.addr) }

// SetDeadline sets both deadlines.
func (l *Link) SetDeadline(t time.Time) error { return l.s.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (l *Link) SetReadDeadline(t time.Time) error { return l.s.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (l *Link) SetWriteDeadline(t time.Time) error { return l.s.SetWriteDeadline(t) }

type addrOf string

func (addrOf) Network() string  { return "tcp" }
func (a addrOf) String() string { return string(a) }

// classify maps the agent's refusals (channel_closed Output) to typed
// errors; other errors are returned as they are.
func classify(err error, addr, id string) error {
	var cc *ssm.ChannelClosedError
	if !errors.As(err, &cc) {
		return err
	}
	if id == "" {
		id = cc.SessionID
	}
	out := cc.Output
	switch {
	case strings.Contains(out, "Forwarding to IP address") && strings.Contains(out, "is forbidden"):
		return &link.ForbiddenError{Addr: addr, SessionID: id, Reason: strings.TrimSpace(out)}
	case strings.Contains(out, "Unable to connect to specified port"):
		return &link.ConnectError{Addr: addr, SessionID: id, Reason: strings.TrimSpace(out)}
	}
	return err
}
