// Package tunnel is the job-scoped lifecycle of a jumpless tunnel: it
// starts one or more SSM sessions (AWS-StartSSHSession) to a managed
// instance, runs an SSH client over each, and lets database drivers open
// connections to hosts reachable from the instance as SSH direct-tcpip
// channels. In [ModeDirect] it needs no SSH: the instance's agent forwards
// each connection itself through port sessions (see [Mode]). How bytes
// reach the instance is a [link.Transport] (AWS Session Manager unless
// Config.Transport says otherwise).
//
// A typical ETL job opens one tunnel, hands [Tunnel.DialContext] to its
// drivers (see package dialer), moves its data and closes the tunnel:
//
//	tun, err := tunnel.Open(ctx, tunnel.Config{
//		SSM: ssm.Config{AWS: awsCfg, Target: "i-0123456789abcdef0"},
//		SSH: sshx.Config{PrivateKeyFile: keyPath, KnownHostsFile: knownHosts},
//	})
//	if err != nil { ... }
//	defer tun.Close()
//	db, err := dialer.OpenMySQL(tun, "app:secret@tcp(db.internal:3306)/app")
//
// By default the tunnel fails as a whole when any of its sessions ends (SSM
// session terminated, SSH keepalive failed): [Tunnel.Done] is closed and
// [Tunnel.Err] gives the cause, so a job can fail fast. With
// Config.Replace, a session that ends fails only the connections it
// carried ([ErrSessionLost]) and a replacement takes the new ones; with
// Sessions: [AutoSessions] (or Config.Scale) the number of sessions
// follows the load. See [ReplaceConfig] and [ScaleConfig].
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
)

// DefaultCloseTimeout bounds Close when Config.CloseTimeout is zero.
const DefaultCloseTimeout = 10 * time.Second

// MaxSessions is the largest accepted Config.Sessions.
const MaxSessions = 64

// Config configures Open. SSM.Target and the SSH credentials are required;
// every other zero value selects a documented default.
type Config struct {
	// SSM configures the SSM sessions (target, region and credentials,
	// endpoint, ...). Target and either AWS.Region or API are required
	// unless DialBastion is set; with DialBastion set, SSM is only used for
	// its Target (the default SSH host key alias) and may be zero.
	SSM ssm.Config

	// SSH configures the SSH client run over each session (user, key,
	// host key verification, keepalives). Zero HostKeyAlias: SSM.Target, so
	// that known_hosts entries written for the instance id work, as with
	// ssh's ProxyCommand; if SSM.Target is empty too, the address of the
	// bastion connection. Other zero values: see sshx.Config.
	SSH sshx.Config

	// Sessions is the number of parallel SSM sessions, each with its own
	// SSH client; new connections go to the session with the fewest open
	// connections. One session carries about 0.7 MiB/s through the SSM
	// agent, so more sessions give more throughput. Zero: 1. At most
	// MaxSessions. AutoSessions: one session, and the pool follows the
	// load up to Scale.Max (DefaultAutoMax when zero). With Scale.Max set,
	// Sessions is the floor: the sessions opened at Open and always kept.
	Sessions int

	// Scale lets the pool open sessions while every session carries a
	// busy connection and close the extra ones when they are idle (see
	// ScaleConfig). Zero: no scaling (Sessions is fixed), unless Sessions
	// is AutoSessions. In ModeDirect the policy applies per destination
	// (connections through one-session-per-connection transports have
	// nothing to scale).
	Scale ScaleConfig

	// Replace keeps the tunnel up when one of its sessions ends: only the
	// connections it carried fail, and a replacement session is opened in
	// the background (see ReplaceConfig for the trade-off). Zero: off, the
	// tunnel fails as a whole when any session ends (fail fast). Both
	// modes (ModeDirect: per destination).
	Replace ReplaceConfig

	// InstanceConnect, if set, logs in with a throwaway Ed25519 key made
	// in memory for this tunnel and pushed through EC2 Instance Connect
	// (SendSSHPublicKey) right before each session's SSH login, unless it
	// was pushed less than InstanceConnect.Reuse ago; no key file is
	// needed. Zero fields: InstanceID = SSM.Target (after tag resolution),
	// OSUser = SSH.User (or sshx.DefaultUser), AWS = SSM.AWS, Logger =
	// Logger. Errors match instanceconnect.ErrNotEC2 (an mi- target),
	// ErrDenied, ErrThrottled, ErrInstanceNotFound, or ErrNotInstalled (the
	// instance's sshd refused the key right after a successful push). Nil:
	// no Instance Connect.
	InstanceConnect *instanceconnect.Config

	// DialBastion, if set, replaces ssm.Dial: it returns the byte stream to
	// the SSH server (for tests and other transports). It is called once
	// per session. Nil: ssm.Dial(ctx, SSM), or Transport when set. Only in
	// ModeSSH.
	DialBastion func(ctx context.Context) (net.Conn, error)

	// Mode selects how connections reach their destination: ModeSSH (the
	// zero value) runs SSH over each session and opens direct-tcpip
	// channels; ModeDirect needs no SSH: the agent forwards each
	// connection itself (port sessions). See Mode.
	Mode Mode

	// Transport is how bytes reach the instance (see package link). Nil:
	// AWS Session Manager with SSM (package ssm/ssmlink). In ModeSSH the
	// SSH sessions are Transport.Dial(ctx, "localhost:<SSHPort>"); in
	// ModeDirect, port sessions (link.PortTransport) when the transport
	// has them, else one Dial per connection. With a Transport, SSM may be
	// zero.
	Transport link.Transport

	// SSHPort is the port of sshd on the instance in ModeSSH, whatever the
	// transport (AWS Session Manager, Alibaba Cloud Assistant, ...): each
	// session is a byte stream to localhost:SSHPort as the instance sees
	// it. Zero: SSM.PortNumber when that is set (the AWS-named field, still
	// honoured), else 22. Setting both to different ports is a
	// *ConfigError; so is a non-zero SSHPort in ModeDirect (no SSH there).
	SSHPort int

	// Direct configures ModeDirect. Ignored in ModeSSH.
	Direct DirectConfig

	// CloseTimeout bounds Close (closing channels, SSH clients and the SSM
	// sessions, which terminates them at the service). Zero:
	// DefaultCloseTimeout (10s).
	CloseTimeout time.Duration

	// Logger receives the tunnel's logs (session start and end, failures).
	// Secrets are never logged. Nil: no logging. Unless set explicitly,
	// SSM.Logger and SSH.Logger default to this logger.
	Logger *slog.Logger
}

// Stats is a snapshot of a tunnel's activity.
type Stats struct {
	BytesSent     int64         // bytes written to tunnelled connections
	BytesReceived int64         // bytes read from tunnelled connections
	OpenConns     int           // connections open now
	TotalConns    int64         // connections opened since Open
	SessionIDs    []string      // SSM session ids (with DialBastion: "<remote address>#<index>")
	SessionConns  []int         // open connections per session, in SessionIDs order
	Uptime        time.Duration // time since Open returned

	// SessionsOpened counts the sessions opened since Open: those of Open,
	// those opened for the load (Config.Scale) and replacements (ModeDirect:
	// port sessions; one-session-per-connection links are not counted).
	SessionsOpened int64
	// SessionsClosedIdle counts the extra sessions closed because they
	// carried no connection for Scale.IdleClose.
	SessionsClosedIdle int64
	// Replacements counts the sessions opened to replace one that ended
	// (Config.Replace).
	Replacements int64
	// LastReplacementReason is why the last replaced session ended (its
	// error text), "" before the first replacement.
	LastReplacementReason string
}

// Tunnel is an open tunnel. Its methods are safe for concurrent use.
type Tunnel struct {
	cfg     Config
	log     *slog.Logger
	icKey   *instanceconnect.Key // nil unless Config.InstanceConnect
	started time.Time

	mu     sync.Mutex
	closed bool
	cause  error // why the tunnel is shutting down; set when closed is

	// The SSH-mode pool (pool.go), guarded by mu.
	sessions     []*session    // ready sessions
	changed      chan struct{} // closed when a session is added or shutdown starts
	opening      int           // sessions being opened (load, replacement)
	waiting      int           // dials waiting for an opening session (Scale.DialWait)
	claimed      int           // opening sessions a waiting dial has claimed
	index        int           // next session index (names of DialBastion sessions)
	retired      carrierStats  // counters of sessions no longer in the pool
	opened       int64         // Stats.SessionsOpened
	closedIdle   int64         // Stats.SessionsClosedIdle
	replacements int64         // Stats.Replacements
	lastReason   string        // Stats.LastReplacementReason
	growAfter    time.Time     // no scale-up before (after a failed one)
	growBackoff  time.Duration

	// stopping is cancelled, with the cause, when shutdown starts: it ends
	// dials in flight at once.
	stopping context.Context
	stop     context.CancelCauseFunc

	shutOnce sync.Once
	closing  chan struct{} // closed when shutdown starts
	done     chan struct{} // closed when shutdown finished
	err      error         // cause, set before done is closed
	closeErr error
	wg       sync.WaitGroup // session watchers
	direct   *direct        // ModeDirect's multiplexer; nil in ModeSSH
}

// session is one bastion connection with its SSH client.
type session struct {
	id      string
	conn    net.Conn // the SSM session (or DialBastion's conn)
	client  *sshx.Client
	pending atomic.Int64 // dials in progress

	// Pool state (t.mu).
	conns     map[*conn]struct{} // open connections
	idleSince time.Time          // since when it carries no connection (zero: it does)
	retired   bool               // removed from the pool: its end is no failure
	lostCause error              // why it ended, when Replace handled its end
}

// Open validates cfg, starts cfg.Sessions SSM sessions with an SSH client
// on each and returns when all are ready. On any error, or if ctx is
// cancelled, everything started so far is closed (SSM sessions are
// terminated) before Open returns.
//
// Configuration problems are reported before any network call as errors
// matching [ErrInvalidConfig] (and, where the check belongs to package ssm
// or sshx, their own typed errors too, e.g. ssm.ErrInvalidConfig).
func Open(ctx context.Context, cfg Config) (*Tunnel, error) {
	cfg, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	if cfg.DialBastion == nil && (ssm.IsSelector(cfg.SSM.Target) || cfg.SSM.CheckTarget || cfg.SSM.StartStopped) {
		// Resolve once, so that every session goes to the same instance.
		inst, err := ssm.ResolveTarget(ctx, cfg.SSM)
		if err != nil {
			return nil, fmt.Errorf("tunnel: target %s: %w", cfg.SSM.Target, err)
		}
		cfg.Logger.Info("tunnel target resolved", "target", cfg.SSM.Target, "instance", inst.ID, "lastPing", inst.LastPingTime, "startedIn", inst.StartedIn)
		cfg.SSM.Target, cfg.SSM.CheckTarget, cfg.SSM.StartStopped = inst.ID, false, false
	}
	t := &Tunnel{
		cfg:     cfg,
		log:     cfg.Logger,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	t.stopping, t.stop = context.WithCancelCause(context.Background())
	if cfg.Mode == ModeDirect {
		return t.openDirect(ctx)
	}
	if cfg.InstanceConnect != nil {
		if t.icKey, err = cfg.instanceConnectKey(); err != nil {
			return nil, err
		}
		t.cfg.SSH.Signers = append(slices.Clip(t.cfg.SSH.Signers), t.icKey.Signer())
	}
	sessions := make([]*session, cfg.Sessions)
	errs := make([]error, cfg.Sessions)
	// The first failure cancels the other sessions' opening.
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cfg.Sessions {
		wg.Go(func() {
			sessions[i], errs[i] = t.openSession(octx, i)
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
		t.stop(err)
		return nil, err
	}
	t.started = time.Now()
	t.mu.Lock()
	t.index = cfg.Sessions
	for _, s := range sessions {
		t.addLocked(s)
	}
	t.mu.Unlock()
	if cfg.scaling() {
		t.wg.Go(t.sample)
	}
	t.log.Info("tunnel open", "sessions", t.sessionIDs(), "target", cfg.SSM.Target, "scaleMax", cfg.Scale.Max, "replace", cfg.Replace.Enabled)
	return t, nil
}

// firstError returns the most telling error of a parallel open: a failure
// of its own rather than the cancellation it caused in the others.
func firstError(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return first
}

// openSession dials the bastion and starts the SSH client over it.
func (t *Tunnel) openSession(ctx context.Context, i int) (*session, error) {
	var (
		c   net.Conn
		err error
	)
	if t.cfg.DialBastion != nil {
		c, err = t.cfg.DialBastion(ctx)
		if err != nil {
			return nil, fmt.Errorf("tunnel: dial bastion: %w", err)
		}
	} else if t.cfg.Transport != nil {
		port := t.cfg.SSM.PortNumber
		if port == 0 {
			port = ssm.DefaultPortNumber
		}
		c, err = t.cfg.Transport.Dial(ctx, net.JoinHostPort("localhost", fmt.Sprint(port)))
		if err != nil {
			return nil, fmt.Errorf("tunnel: start session for SSH: %w", err)
		}
	} else {
		sess, err := ssm.Dial(ctx, t.cfg.SSM)
		if err != nil {
			if errors.Is(err, ssm.ErrInvalidConfig) { // Open validated it: cannot happen
				return nil, ssmConfigError(err)
			}
			return nil, fmt.Errorf("tunnel: start SSM session to %s: %w", t.cfg.SSM.Target, err)
		}
		c = sess
	}
	s := &session{conn: c, id: sessionID(c, i), conns: make(map[*conn]struct{})}
	if t.icKey != nil {
		// After the bastion connection, so that the key's window is spent
		// on the SSH login only.
		if err := t.icKey.Push(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tunnel: EC2 Instance Connect for session %s: %w", s.id, err)
		}
	}
	addr := t.cfg.SSM.Target
	if addr == "" {
		addr = c.RemoteAddr().String()
	}
	sshCfg := t.cfg.SSH
	if sshCfg.HostKeyAlias == "" {
		sshCfg.HostKeyAlias = addr
	}
	s.client, err = sshx.NewClient(ctx, c, addr, sshCfg)
	if err != nil {
		c.Close()
		if t.icKey != nil && errors.Is(err, sshx.ErrAuthFailed) {
			err = t.icKey.LoginRefused(err)
		}
		return nil, fmt.Errorf("tunnel: SSH over session %s: %w", s.id, err)
	}
	t.log.Debug("tunnel session ready", "session", s.id)
	return s, nil
}

// sessionID names a bastion connection: the SSM session id when it has
// one, else "<remote address>#<index>".
func sessionID(c net.Conn, i int) string {
	if s, ok := c.(interface{ ID() string }); ok && s.ID() != "" {
		return s.ID()
	}
	return fmt.Sprintf("%s#%d", c.RemoteAddr(), i)
}

// close closes the bastion connection (for an SSM session this terminates
// it at the service) and the SSH client.
func (s *session) close() error {
	// The bastion first, so that a failure to terminate the SSM session
	// is seen here (the SSH client would close it too, silently).
	err2 := s.conn.Close()
	err1 := s.client.Close()
	if errors.Is(err1, net.ErrClosed) {
		err1 = nil
	}
	if errors.Is(err2, net.ErrClosed) {
		err2 = nil
	}
	return errors.Join(err2, err1)
}

// doneConn is implemented by *ssm.Session.
type doneConn interface {
	Done() <-chan struct{}
	Err() error
}

// watch fails the tunnel when the session's SSH client or bastion
// connection ends before Close.
func (t *Tunnel) watch(s *session) {
	var bastionDone <-chan struct{}
	dc, _ := s.conn.(doneConn)
	if dc != nil {
		bastionDone = dc.Done()
	}
	var cause error
	select {
	case <-t.closing:
		return
	case <-s.client.Done():
		// When the SSM session ended first, the SSH client's error
		// (sshx.ErrConnectionLost) wraps the session's reason; when SSH
		// ended first (keepalive), the session was closed by it and its
		// own Err would only say "closed".
		cause = s.client.Err()
	case <-bastionDone:
		cause = dc.Err()
		if errors.Is(cause, net.ErrClosed) {
			// The SSH client closed the session (keepalive timeout): only
			// the client knows why.
			select {
			case <-s.client.Done():
				if err := s.client.Err(); err != nil {
					cause = err
				}
			case <-time.After(t.cfg.CloseTimeout):
			case <-t.closing:
				return
			}
		}
	}
	if cause == nil {
		cause = errors.New("connection closed")
	}
	t.mu.Lock()
	retired := s.retired
	t.mu.Unlock()
	if retired {
		return // the pool closed it
	}
	if t.cfg.Replace.Enabled && t.lost(s, cause) {
		return
	}
	err := fmt.Errorf("%w: session %s: %w", ErrTunnelDown, s.id, cause)
	t.log.Warn("tunnel down", "session", s.id, "err", cause)
	t.shutdown(err)
}

// DialContext opens a connection to addr ("host:port", resolved on the far
// side) through the tunnel, as an SSH direct-tcpip channel on the session
// with the fewest open connections. network is "tcp", "tcp4" or "tcp6".
//
// ctx bounds the dial only. The returned net.Conn supports deadlines and
// CloseWrite, and its RemoteAddr is addr as dialed, so that dialing
// RemoteAddr().String() through the tunnel reaches the same server (pgx's
// cancel requests do).
//
// A bad network or address is reported before anything is sent, as a
// *net.OpError wrapping an [*AddrError] (matching [ErrBadAddress]). After
// Close, or once the tunnel is down, DialContext fails at once (a dial in
// flight too) with an error matching [ErrClosed] or [ErrTunnelDown] that
// wraps the cause.
//
// Read and Write of the returned conn return io.EOF only when the far end
// closed the connection. When the tunnel ends under it they return, after
// the data already received, a *net.OpError wrapping the tunnel's reason:
// [ErrTunnelDown] with the cause (for instance sshx.ErrKeepaliveTimeout or
// ssm.ErrSessionTerminated), or [ErrClosed] after Close. With
// Config.Replace, the end of the conn's session is [ErrSessionLost] with
// the cause, and the tunnel stays up.
//
// Which session a dial goes to: the one with the fewest busy connections,
// then the fewest open ones; with Config.Scale a dial may wait up to
// Scale.DialWait for a session the pool is opening (see [ScaleConfig]),
// and with Config.Replace a dial made while no session is ready waits for
// the replacement (within ctx).
func (t *Tunnel) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkDialAddr(network, addr); err != nil {
		return nil, err
	}
	if t.direct != nil {
		return t.direct.dial(ctx, network, addr)
	}
	waitUntil := time.Now().Add(t.cfg.Scale.DialWait)
	for retried := false; ; {
		t.mu.Lock()
		if t.closed {
			cause := t.cause
			t.mu.Unlock()
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("tunnel: dial %s: %w", addr, cause)}
		}
		s, wait := t.placeLocked(waitUntil)
		if wait != nil {
			// Every ready session is busy: wait for one the pool opens.
			t.mu.Unlock()
			timer := time.NewTimer(time.Until(waitUntil))
			select {
			case <-wait:
			case <-timer.C:
			case <-ctx.Done():
			}
			timer.Stop()
			t.mu.Lock()
			t.waiting--
			t.claimed--
			t.mu.Unlock()
			if err := ctx.Err(); err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("tunnel: dial %s: waiting for a session: %w", addr, err)}
			}
			continue
		}
		if s == nil {
			// No ready session: a replacement is opening, or the
			// watcher of a dead session has not run yet.
			ch := t.changed
			t.mu.Unlock()
			if err := t.waitSession(ctx, ch); err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("tunnel: dial %s: waiting for a session: %w", addr, err)}
			}
			continue
		}
		s.pending.Add(1)
		t.mu.Unlock()
		c, err := t.dialOn(ctx, s, network, addr)
		if err != nil {
			s.pending.Add(-1)
			if cause := t.shutdownCause(); cause != nil && ctx.Err() == nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("tunnel: dial %s: %w", addr, cause)}
			}
			if endsTunnel(err) {
				if t.cfg.Replace.Enabled && !retried && ctx.Err() == nil {
					// The session ended under the channel open: nothing
					// reached the destination's application; try another.
					retried = true
					t.log.Debug("tunnel: dial cut by a session's end; retrying", "session", s.id, "addr", addr, "err", err)
					continue
				}
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("tunnel: dial %s: %w", addr, t.downErr(s, err))}
			}
			return nil, fmt.Errorf("tunnel: dial %s via session %s: %w", addr, s.id, err)
		}
		tc := &conn{Conn: c, t: t, s: s}
		tc.pc.busy, tc.pc.opened = true, time.Now()
		t.mu.Lock()
		s.conns[tc] = struct{}{}
		s.idleSince = time.Time{}
		s.pending.Add(-1)
		t.maybeGrowLocked()
		t.mu.Unlock()
		t.log.Debug("tunnel conn open", "session", s.id, "addr", addr)
		return tc, nil
	}
}

// dialOn opens a direct-tcpip channel on session s; a shutdown (Close, or
// a session failing the tunnel) ends it at once.
func (t *Tunnel) dialOn(ctx context.Context, s *session, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(t.stopping, func() { cancel(context.Cause(t.stopping)) })
	defer stop()
	return s.client.DialContext(dctx, network, addr)
}

// shutdownCause returns why the tunnel is shutting down, or nil.
func (t *Tunnel) shutdownCause() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cause
}

// endsTunnel reports whether err from package sshx means the SSH
// connection of a session ended (rather than one channel or a deadline).
func endsTunnel(err error) bool {
	return errors.Is(err, sshx.ErrConnectionLost) || errors.Is(err, sshx.ErrKeepaliveTimeout) || errors.Is(err, sshx.ErrClosed)
}

// downErr is the error for a connection or dial of session s that failed
// with err because the session's SSH connection ended: the tunnel's cause
// once it is shutting down, else ErrTunnelDown wrapping the SSH client's
// reason (which wraps the SSM session's), or with Config.Replace,
// ErrSessionLost wrapping it.
func (t *Tunnel) downErr(s *session, err error) error {
	t.mu.Lock()
	cause, lost := t.cause, s.lostCause
	t.mu.Unlock()
	if cause != nil {
		return cause
	}
	if t.cfg.Replace.Enabled {
		return sessionDownErr(s, lost, err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return fmt.Errorf("%w: session %s: %w", ErrTunnelDown, s.id, err)
}

// conn is a tunnelled connection: it turns the end of its session into
// errors matching ErrTunnelDown (or ErrClosed after Close).
type conn struct {
	net.Conn // the sshx direct-tcpip conn
	t        *Tunnel
	s        *session
	moved    atomic.Int64 // bytes read and written (the pool's measure of busy)
	pc       poolConn     // t.mu
	once     sync.Once
}

func (c *conn) mapErr(op string, err error) error {
	if err == nil || err == io.EOF || !endsTunnel(err) {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: c.t.downErr(c.s, err)}
}

// Read reads from the far end; see DialContext for its errors.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.moved.Add(int64(n))
	}
	return n, c.mapErr("read", err)
}

// Write writes to the far end; see DialContext for its errors.
func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.moved.Add(int64(n))
	}
	return n, c.mapErr("write", err)
}

// Close closes the connection (its SSH channel) and leaves the pool.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.s.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// CloseWrite half-closes the connection (the far end reads EOF).
func (c *conn) CloseWrite() error {
	return c.mapErr("close", c.Conn.(interface{ CloseWrite() error }).CloseWrite())
}

// load is the number of open and opening connections of s.
func (s *session) load() int64 { return s.client.Stats().OpenConns + s.pending.Load() }

// Stats returns a snapshot of the tunnel's activity.
func (t *Tunnel) Stats() Stats {
	if t.direct != nil {
		cs, ids, conns := t.direct.stats()
		t.mu.Lock()
		defer t.mu.Unlock()
		return Stats{
			BytesSent: cs.bytesSent, BytesReceived: cs.bytesReceived, OpenConns: int(cs.openConns),
			TotalConns: cs.totalConns, SessionIDs: ids, SessionConns: conns, Uptime: time.Since(t.started),
			Replacements: t.replacements, LastReplacementReason: t.lastReason,
			SessionsOpened: cs.opened, SessionsClosedIdle: cs.closedIdle,
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Stats{
		Uptime: time.Since(t.started), BytesSent: t.retired.bytesSent, BytesReceived: t.retired.bytesReceived,
		TotalConns: t.retired.totalConns, SessionsOpened: t.opened, SessionsClosedIdle: t.closedIdle,
		Replacements: t.replacements, LastReplacementReason: t.lastReason,
	}
	for _, s := range t.sessions {
		st.SessionIDs = append(st.SessionIDs, s.id)
		cs := s.client.Stats()
		st.BytesSent += cs.BytesSent
		st.BytesReceived += cs.BytesReceived
		st.OpenConns += int(cs.OpenConns)
		st.TotalConns += cs.TotalConns
		st.SessionConns = append(st.SessionConns, int(cs.OpenConns))
	}
	return st
}

func (t *Tunnel) sessionIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]string, len(t.sessions))
	for i, s := range t.sessions {
		ids[i] = s.id
	}
	return ids
}

// Done returns a channel closed when the tunnel has shut down by Close, or
// as soon as a session ended (closing the other sessions follows; Close
// waits for that).
func (t *Tunnel) Done() <-chan struct{} { return t.done }

// Err returns nil while the tunnel is up; after Done is closed it returns
// why: an error matching [ErrTunnelDown] that wraps the cause (e.g.
// ssm.ErrSessionTerminated, an SSH keepalive failure), or [ErrClosed] after
// Close.
func (t *Tunnel) Err() error {
	select {
	case <-t.done:
		return t.err
	default:
		return nil
	}
}

// Close closes every tunnelled connection, the SSH clients and the SSM
// sessions (terminating them at the service). It is idempotent, safe to
// call concurrently, and returns within Config.CloseTimeout; a session that
// has not closed by then is reported in the error and finishes closing in
// the background (package ssm bounds that by its own CloseTimeout). It
// returns the errors met while closing the sessions, joined; calling it
// again returns the same.
func (t *Tunnel) Close() error {
	t.shutdown(ErrClosed)
	t.wg.Wait()
	return t.closeErr
}

// shutdown tears everything down once, recording cause.
func (t *Tunnel) shutdown(cause error) {
	t.shutOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.cause = cause
		sessions := slices.Clone(t.sessions)
		t.notifyLocked()
		t.mu.Unlock()
		t.stop(cause)
		close(t.closing)
		failed := cause != ErrClosed
		if failed {
			// A failure is reported at once; closing the sessions (which
			// may wait for a service that is gone) follows.
			t.err = cause
			close(t.done)
		}

		finished := make(chan error, 1)
		go func() {
			errs := make([]error, len(sessions)+1)
			var wg sync.WaitGroup
			for i, s := range sessions {
				wg.Go(func() { errs[i] = s.close() })
			}
			if t.direct != nil {
				wg.Go(func() { errs[len(sessions)] = t.direct.close(cause) })
			}
			wg.Wait()
			finished <- errors.Join(errs...)
		}()
		timer := time.NewTimer(t.cfg.CloseTimeout)
		defer timer.Stop()
		select {
		case err := <-finished:
			if err != nil {
				t.closeErr = fmt.Errorf("tunnel: close: %w", err)
			}
		case <-timer.C:
			t.closeErr = fmt.Errorf("tunnel: close: sessions did not close within %v", t.cfg.CloseTimeout)
		}
		if !failed {
			t.err = cause
			close(t.done)
		}
		st := t.Stats()
		t.log.Info("tunnel closed", "sessions", st.SessionIDs, "conns", st.TotalConns,
			"sent", st.BytesSent, "received", st.BytesReceived, "cause", cause)
	})
}

// closedErr is the error for operations after shutdown: its cause (an
// error matching ErrTunnelDown, or ErrClosed after Close). t.mu must not be
// held.
func (t *Tunnel) closedErr() error {
	if cause := t.shutdownCause(); cause != nil {
		return cause
	}
	return ErrClosed
}
