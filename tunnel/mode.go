package tunnel

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/jumpless/jumpless/ssm/ssmlink"
)

// Mode selects how a tunnel's connections reach their destination.
type Mode int

const (
	// ModeSSH (the zero value) runs an SSH client over each of Sessions
	// sessions to the instance's sshd and opens every connection as a
	// direct-tcpip channel. Needs an SSH login on the instance; gives SSH
	// host-key verification and TCP half-close.
	ModeSSH Mode = iota

	// ModeDirect needs no SSH server or key: the agent on the instance
	// forwards each connection itself. With AWS, each destination gets
	// Sessions port sessions (AWS-StartPortForwardingSessionToRemoteHost,
	// or AWS-StartPortForwardingSession for localhost) carrying
	// connections as smux streams; agents ≤ 3.0.196.0 get one session
	// per connection. No half-close: CloseWrite returns an error matching
	// errors.ErrUnsupported. The agent's own rules apply (it refuses the
	// instance metadata addresses: *link.ForbiddenError). The agent never
	// confirms a connect: a refused one is a *link.ConnectError naming the
	// address from the connection's first Read (or its Ready method, which
	// dialer.MySQL uses), and from every Write after it; a Write made
	// before the refusal arrived may succeed (its bytes are dropped). The
	// refusal comes as soon as the agent's dial fails: AWS's
	// ConnectToPortError (11 ms after the dial with the real agent
	// 3.3.0.0 on loopback), Alibaba's Status about 1 s after the session
	// starts (the agent dials then; measured with agent 2.2.3.578), and
	// an Alibaba Write waits for it within its 3 s hold. An address that
	// drops packets gives no refusal until the agent's dial times out
	// (unknown for AWS; none in Alibaba's v578, 10 s in newer agents):
	// set a deadline. In basic mode the agent does not signal the target's close:
	// Read then blocks until a deadline or the session's end (an error,
	// never io.EOF), and a write after the target closed makes the agent
	// connect again (the server sees a new connection).
	ModeDirect
)

// String returns "ssh" or "direct".
func (m Mode) String() string {
	switch m {
	case ModeSSH:
		return "ssh"
	case ModeDirect:
		return "direct"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DirectConfig configures ModeDirect.
type DirectConfig struct {
	// Destinations ("host:port" as the instance resolves them) are
	// reached at Open, so that a wrong target, credentials or address
	// fail Open (nothing is left open then). With a transport that has
	// port sessions (AWS), each gets its Sessions port sessions, kept for
	// its connections; the agent connects only per connection, so a
	// closed port there still surfaces at the first Read (a
	// *link.ConnectError). With a transport without port sessions
	// (Alibaba Cloud Assistant), Open starts one session to each, waits up
	// to ProbeWait for the agent to refuse the connect (an error matching
	// link.ErrConnect) or the server to speak first, and ends it: the
	// first connection starts its own session (see docs/design.md,
	// "Destinations at Open without port sessions"). Other destinations
	// get their sessions at their first DialContext. Nil: none at Open.
	Destinations []string

	// ProbeWait bounds how long Open waits, per destination of
	// Destinations on a transport without port sessions, for the agent to
	// report a refused connect (Alibaba's agent dials the target 1 s after
	// its session starts and reports a refusal at once: measured) or for
	// the server's first byte; a server that waits for the client
	// (PostgreSQL) stays silent, so Open takes this long for it. An address
	// that drops packets (a firewall) is not detected within it. Zero:
	// DefaultProbeWait (3 s). Negative: Open starts and ends the session
	// without waiting (credentials, instance and session quota are still
	// checked).
	ProbeWait time.Duration

	// StreamBuffer bounds, per connection, the bytes received and not yet
	// read (so that one stalled reader does not freeze the other
	// connections of its session; see package portmux). Zero:
	// portmux.DefaultStreamBuffer (16 MiB).
	StreamBuffer int
}

// DefaultProbeWait is DirectConfig.ProbeWait's default: 3 s, three times
// the delay after which Alibaba's agent dials the target (and as long as
// ali-instance-cli holds its first bytes for the same reason).
const DefaultProbeWait = 3 * time.Second

// prepareDirect checks the ModeDirect part of c.
func (c Config) prepareDirect() (Config, error) {
	if c.DialBastion != nil {
		return c, &ConfigError{Field: "DialBastion", Problem: "only for ModeSSH (it returns a byte stream to an SSH server); in ModeDirect set Transport"}
	}
	ssh := c.SSH
	if ssh.Logger == c.Logger { // set by prepare from Config.Logger
		ssh.Logger = nil
	}
	if !reflect.ValueOf(ssh).IsZero() {
		return c, &ConfigError{Field: "SSH", Problem: "ModeDirect uses no SSH: leave SSH empty, or use ModeSSH"}
	}
	if c.InstanceConnect != nil {
		return c, &ConfigError{Field: "InstanceConnect", Problem: "pushes an SSH key, which ModeDirect does not use: leave it nil, or use ModeSSH"}
	}
	if c.Direct.ProbeWait == 0 {
		c.Direct.ProbeWait = DefaultProbeWait
	}
	if c.Direct.StreamBuffer < 0 {
		return c, &ConfigError{Field: "Direct.StreamBuffer", Problem: "must not be negative (0 selects 16 MiB)"}
	}
	if c.Transport == nil {
		if err := c.SSM.Validate(); err != nil {
			return c, ssmConfigError(err)
		}
	}
	return c, nil
}

// openDirect opens a ModeDirect tunnel (Direct.Destinations first).
func (t *Tunnel) openDirect(ctx context.Context) (*Tunnel, error) {
	if t.cfg.Transport == nil {
		t.cfg.Transport = ssmlink.New(t.cfg.SSM) // the target is resolved by now
	}
	t.direct = newDirect(t)
	if err := t.direct.open(ctx, t.cfg.Direct.Destinations); err != nil {
		t.direct.close(ErrClosed)
		return nil, err
	}
	if t.cfg.scaling() {
		t.wg.Go(t.direct.sample)
	}
	t.started = time.Now()
	t.log.Info("tunnel open", "mode", t.cfg.Mode, "target", t.cfg.SSM.Target, "destinations", t.cfg.Direct.Destinations)
	return t, nil
}
