package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
)

// The SSH-mode session pool: which session a dial goes to, when the pool
// opens a session for the load or closes an idle one (Config.Scale), and
// what happens when a session ends (fail fast, or Config.Replace). See
// docs/design.md, "Session pool policy".

// AutoSessions, as Config.Sessions, starts one session and lets the pool
// open more while the load needs them, up to Config.Scale.Max
// (DefaultAutoMax when zero), and close them again when idle.
const AutoSessions = -1

// Defaults of ScaleConfig and ReplaceConfig.
const (
	DefaultAutoMax        = 8                      // Scale.Max with Sessions: AutoSessions
	DefaultScaleInterval  = 500 * time.Millisecond // Scale.Interval
	DefaultIdleClose      = 30 * time.Second       // Scale.IdleClose
	DefaultDialWait       = 2 * time.Second        // Scale.DialWait
	DefaultReplaceTries   = 6                      // Replace.Attempts
	DefaultReplaceBackoff = time.Second            // Replace.Backoff
	maxReplaceBackoff     = 30 * time.Second
)

// ScaleConfig lets the SSH-mode pool follow the load. One session carries
// about 0.7 MiB/s through the agent, and an SSH channel never moves to
// another session, so the pool opens sessions for connections dialed while
// the existing sessions are busy.
//
// A connection is busy when bytes crossed it (either way) during the last
// Interval, or when it was dialed less than Interval ago. The pool opens
// sessions, in the background, when every ready session carries at least
// one busy connection and busy connections (dials in progress included)
// outnumber the sessions ready or opening: as many as that excess, up to
// Max. (A lone busy connection therefore never opens a second session it
// could not use.) A dial goes to the ready session with the fewest busy
// connections, then the fewest open ones; it never waits when a ready
// session carries no busy connection. When every ready session does, and
// the pool is opening a session no other dial waits for, the dial waits
// for that session, at most DialWait, then goes to the least-loaded ready
// session (an SSH channel never moves, so a bulk transfer that joined a
// busy session would share its 0.7 MiB/s to the end).
//
// A session above Config.Sessions that carries no connection for
// IdleClose is closed. A session carrying a connection, and the last
// Config.Sessions sessions, are never closed while the tunnel is open.
type ScaleConfig struct {
	// Max is the most sessions the pool opens. Zero: no scaling (the pool
	// keeps Config.Sessions), or DefaultAutoMax (8) when Config.Sessions
	// is AutoSessions. At most MaxSessions, at least Config.Sessions.
	Max int

	// Interval is how often the pool samples which connections are busy
	// (and checks for idle sessions). Zero: DefaultScaleInterval (500 ms).
	Interval time.Duration

	// IdleClose is how long an extra session must carry no connection
	// before the pool closes it. Zero: DefaultIdleClose (30 s).
	IdleClose time.Duration

	// DialWait bounds how long a dial made while every ready session
	// carries a busy connection waits for a session the pool is opening
	// (see above). Zero: DefaultDialWait (2 s). Negative: dials never
	// wait; they join the least-loaded ready session.
	DialWait time.Duration
}

// ReplaceConfig makes sessions outlive each other.
//
// The default (fail fast) fails the whole tunnel when any session ends:
// every connection fails with ErrTunnelDown, Done is closed, and a job
// learns at once that it must start again. With Enabled, a session that
// ends before Close (the service's maximum session duration, a
// TerminateSession from elsewhere, the agent gone with an instance reboot,
// an SSH keepalive failure) fails only the connections it carried: their
// Read and Write return an error matching ErrSessionLost that wraps the
// cause (never io.EOF). New dials go to the other sessions, or wait (within
// their ctx) for a replacement that the pool opens in the background, with
// exponential backoff. Drivers with pools (pgxpool, database/sql) discard
// the failed connections and go on through the replacement. A statement in
// flight when its session ended fails and may still have run on the server
// (in doubt); package dialer makes sure no driver retry runs it again
// (dialer.ErrStatementInDoubt, and its doc for pgx used directly). The price: a
// job learns of the loss only from the statements that failed, from Stats
// (Replacements, LastReplacementReason) and from the logs (Warn "tunnel
// session lost", Info "tunnel session replaced"). Done and Err fire only
// when no session is left and the replacement failed Attempts times, or
// failed for a reason that retrying cannot fix (host key, SSH login,
// configuration); Err then wraps both the loss and the last failure.
type ReplaceConfig struct {
	// Enabled turns replacement on. False (the zero value): fail fast.
	Enabled bool

	// Attempts bounds the tries to open one replacement. Zero:
	// DefaultReplaceTries (6).
	Attempts int

	// Backoff is the wait after the first failed try; it doubles after
	// each further one, up to 30 s. Zero: DefaultReplaceBackoff (1 s), so
	// that six tries span about 31 s plus the tries themselves.
	Backoff time.Duration
}

// ErrSessionLost is matched by the Read and Write errors of a connection
// whose session ended while Config.Replace kept the tunnel up. The cause
// (e.g. ssm.ErrSessionTerminated) is wrapped too.
var ErrSessionLost = errors.New("tunnel: session lost (the tunnel replaces it)")

// prepareScale checks Sessions, Scale and Replace and applies defaults.
func (c Config) prepareScale() (Config, error) {
	if c.Sessions == AutoSessions {
		c.Sessions = 1
		if c.Scale.Max == 0 {
			c.Scale.Max = DefaultAutoMax
		}
	}
	if c.Sessions < 0 || c.Sessions > MaxSessions {
		return c, &ConfigError{Field: "Sessions", Problem: fmt.Sprintf("%d is out of range: want 0 (one session) to %d, or AutoSessions", c.Sessions, MaxSessions)}
	}
	if c.Sessions == 0 {
		c.Sessions = 1
	}
	if c.Scale.Max < 0 || c.Scale.Max > MaxSessions {
		return c, &ConfigError{Field: "Scale.Max", Problem: fmt.Sprintf("%d is out of range: want 0 (no scaling) to %d", c.Scale.Max, MaxSessions)}
	}
	if c.Scale.Max != 0 && c.Scale.Max < c.Sessions {
		return c, &ConfigError{Field: "Scale.Max", Problem: fmt.Sprintf("%d is below Sessions (%d, the floor): raise it, or set 0 for no scaling", c.Scale.Max, c.Sessions)}
	}
	if c.Scale.Interval < 0 || c.Scale.IdleClose < 0 {
		return c, &ConfigError{Field: "Scale", Problem: "Interval and IdleClose must not be negative (0 selects the defaults)"}
	}
	if c.Scale.Interval == 0 {
		c.Scale.Interval = DefaultScaleInterval
	}
	if c.Scale.IdleClose == 0 {
		c.Scale.IdleClose = DefaultIdleClose
	}
	if c.Scale.DialWait == 0 {
		c.Scale.DialWait = DefaultDialWait
	}
	if c.Replace.Attempts < 0 || c.Replace.Backoff < 0 {
		return c, &ConfigError{Field: "Replace", Problem: "Attempts and Backoff must not be negative (0 selects the defaults)"}
	}
	if c.Replace.Attempts == 0 {
		c.Replace.Attempts = DefaultReplaceTries
	}
	if c.Replace.Backoff == 0 {
		c.Replace.Backoff = DefaultReplaceBackoff
	}
	return c, nil
}

// scaling reports whether the pool follows the load.
func (c *Config) scaling() bool { return c.Scale.Max > c.Sessions }

// poolConn is the pool's view of a tunnelled connection: its byte count
// and whether it was busy in the last interval (t.mu).
type poolConn struct {
	mark   int64     // moved at the last sample
	busy   bool      // moved bytes in the last interval, or dialed less than one ago
	opened time.Time // when it was dialed
}

// busyConns is how many connections of s are busy, counting dials in
// progress (t.mu held).
func (s *session) busyConns() int64 {
	n := s.pending.Load()
	for c := range s.conns {
		if c.pc.busy {
			n++
		}
	}
	return n
}

// dead reports whether the session's SSH client or bastion connection has
// ended (its watcher may not have seen it yet).
func (s *session) dead() bool {
	select {
	case <-s.client.Done():
		return true
	default:
	}
	if dc, ok := s.conn.(doneConn); ok {
		select {
		case <-dc.Done():
			return true
		default:
		}
	}
	return false
}

// pick returns the ready session with the fewest busy connections, then
// the fewest open ones, or nil when none is ready (t.mu held, so that
// concurrent dials see each other's pending count).
func (t *Tunnel) pick() *session {
	var (
		best           *session
		bestBusy, load int64
	)
	for _, s := range t.sessions {
		if s.dead() {
			continue
		}
		b, l := s.busyConns(), s.load()
		if best == nil || b < bestBusy || b == bestBusy && l < load {
			best, bestBusy, load = s, b, l
		}
	}
	return best
}

// notifyLocked wakes the dials waiting for a session (t.mu held).
func (t *Tunnel) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// addLocked puts a newly opened session into the pool and starts its
// watcher (t.mu held, t.closed false).
func (t *Tunnel) addLocked(s *session) {
	t.sessions = append(t.sessions, s)
	t.opened++
	t.wg.Go(func() { t.watch(s) })
	t.notifyLocked()
}

// retireLocked removes s from the pool, keeping its counters (t.mu held).
func (t *Tunnel) retireLocked(s *session) {
	s.retired = true
	for i, x := range t.sessions {
		if x == s {
			t.sessions = append(t.sessions[:i], t.sessions[i+1:]...)
			break
		}
	}
	cs := s.client.Stats()
	t.retired.bytesSent += cs.BytesSent
	t.retired.bytesReceived += cs.BytesReceived
	t.retired.totalConns += cs.TotalConns
}

// nextIndexLocked numbers sessions for names of DialBastion connections.
func (t *Tunnel) nextIndexLocked() int {
	i := t.index
	t.index++
	return i
}

// maybeGrowLocked opens sessions for the load (see ScaleConfig; t.mu held).
func (t *Tunnel) maybeGrowLocked() {
	if !t.cfg.scaling() || t.closed || time.Now().Before(t.growAfter) {
		return
	}
	busy := int64(t.waiting)
	ready := 0
	for _, s := range t.sessions {
		if s.dead() {
			continue
		}
		b := s.busyConns()
		if b == 0 {
			return // a dial can go there
		}
		busy += b
		ready++
	}
	have := ready + t.opening
	want := min(int(busy), t.cfg.Scale.Max) - have
	for range want {
		t.opening++
		i := t.nextIndexLocked()
		t.wg.Go(func() { t.grow(i) })
	}
}

// grow opens one session for the load.
func (t *Tunnel) grow(i int) {
	s, err := t.openSession(t.stopping, i)
	t.mu.Lock()
	t.opening--
	if err != nil {
		t.notifyLocked() // dials waiting for it go elsewhere
		if t.growBackoff == 0 {
			t.growBackoff = t.cfg.Scale.Interval
		} else {
			t.growBackoff = min(2*t.growBackoff, maxReplaceBackoff)
		}
		t.growAfter = time.Now().Add(t.growBackoff)
		closed, backoff := t.closed, t.growBackoff
		t.mu.Unlock()
		if !closed {
			t.log.Warn("tunnel: could not open a session for the load", "err", err, "retryAfter", backoff)
		}
		return
	}
	if t.closed {
		t.mu.Unlock()
		s.close()
		return
	}
	t.growBackoff, t.growAfter = 0, time.Time{}
	t.addLocked(s)
	n := len(t.sessions)
	t.mu.Unlock()
	t.log.Info("tunnel session opened for the load", "session", s.id, "sessions", n)
}

// sample runs the pool's clock (only when scaling): it marks the busy
// connections, opens sessions for the load and closes idle extra ones.
func (t *Tunnel) sample() {
	tick := time.NewTicker(t.cfg.Scale.Interval)
	defer tick.Stop()
	for {
		select {
		case <-t.closing:
			return
		case <-tick.C:
		}
		var idle []*session
		now := time.Now()
		t.mu.Lock()
		for _, s := range t.sessions {
			for c := range s.conns {
				m := c.moved.Load()
				c.pc.busy = m != c.pc.mark || now.Sub(c.pc.opened) < t.cfg.Scale.Interval
				c.pc.mark = m
			}
			if len(s.conns) > 0 || s.pending.Load() > 0 {
				s.idleSince = time.Time{}
			} else if s.idleSince.IsZero() {
				s.idleSince = now
			}
		}
		t.maybeGrowLocked()
		for i := len(t.sessions) - 1; i >= 0 && len(t.sessions) > t.cfg.Sessions; i-- {
			s := t.sessions[i]
			if !t.closed && !s.idleSince.IsZero() && now.Sub(s.idleSince) >= t.cfg.Scale.IdleClose {
				t.retireLocked(s)
				t.closedIdle++
				idle = append(idle, s)
			}
		}
		n := len(t.sessions)
		t.mu.Unlock()
		for _, s := range idle {
			t.log.Info("tunnel session closed: idle", "session", s.id, "idleFor", t.cfg.Scale.IdleClose, "sessions", n)
			t.wg.Go(func() {
				if err := s.close(); err != nil {
					t.log.Warn("tunnel: closing an idle session", "session", s.id, "err", err)
				}
			})
		}
	}
}

// lost handles the end of session s before Close with Replace on: the
// pool drops it and opens replacements up to Config.Sessions. It reports
// false when the tunnel must fail instead (it is shutting down).
func (t *Tunnel) lost(s *session, cause error) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	t.retireLocked(s)
	s.lostCause = cause
	need := t.cfg.Sessions - len(t.sessions) - t.opening
	for range need {
		t.opening++
		i := t.nextIndexLocked()
		t.wg.Go(func() { t.replace(i, s.id, cause) })
	}
	left := len(t.sessions)
	t.mu.Unlock()
	t.log.Warn("tunnel session lost", "session", s.id, "err", cause, "sessionsLeft", left, "replacing", need > 0)
	// Let the SSH client see its transport's end first, so that its
	// channels report the session's reason rather than our Close.
	timer := time.NewTimer(t.cfg.CloseTimeout)
	select {
	case <-s.client.Done():
	case <-timer.C:
	case <-t.closing:
	}
	timer.Stop()
	if err := s.close(); err != nil {
		t.log.Debug("tunnel: closing a lost session", "session", s.id, "err", err)
	}
	return true
}

// replace opens a replacement for session id, which ended with cause,
// with backoff. When it cannot and no session is left, the tunnel fails.
func (t *Tunnel) replace(i int, id string, cause error) {
	backoff := t.cfg.Replace.Backoff
	var (
		last  error
		tries int
	)
	for tries = 1; tries <= t.cfg.Replace.Attempts; tries++ {
		s, err := t.openSession(t.stopping, i)
		if err == nil {
			t.mu.Lock()
			t.opening--
			if t.closed {
				t.mu.Unlock()
				s.close()
				return
			}
			t.addLocked(s)
			t.replacements++
			t.lastReason = cause.Error()
			t.mu.Unlock()
			t.log.Info("tunnel session replaced", "lost", id, "session", s.id, "reason", cause, "tries", tries)
			return
		}
		last = err
		if t.stopping.Err() != nil {
			break
		}
		if permanent(err) || tries == t.cfg.Replace.Attempts {
			break
		}
		t.log.Warn("tunnel: replacement session failed; retrying", "lost", id, "try", tries, "retryIn", backoff, "err", err)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-t.closing:
			timer.Stop()
		}
		backoff = min(2*backoff, maxReplaceBackoff)
	}
	t.mu.Lock()
	t.opening--
	none := len(t.sessions) == 0 && t.opening == 0
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return
	}
	if !none {
		t.log.Error("tunnel: no replacement session; going on with the others", "lost", id, "tries", tries, "err", last)
		return
	}
	err := fmt.Errorf("%w: session %s: %w; no replacement after %d tries: %w", ErrTunnelDown, id, cause, min(tries, t.cfg.Replace.Attempts), last)
	t.log.Warn("tunnel down", "session", id, "err", err)
	t.shutdown(err)
}

// permanent reports whether a session failed to open for a reason that
// another try cannot fix.
func permanent(err error) bool {
	var hk *sshx.HostKeyError
	return errors.Is(err, sshx.ErrAuthFailed) || errors.As(err, &hk) || errors.Is(err, ErrInvalidConfig) ||
		errors.Is(err, ssm.ErrInvalidConfig) || errors.Is(err, sshx.ErrPassphraseMissing) || errors.Is(err, sshx.ErrPassphraseWrong)
}

// sessionDownErr is the error of a connection or dial of session s that
// failed with err because the session ended, when the tunnel lives on
// (Replace): ErrSessionLost wrapping why the session ended (lost is the
// pool's record, nil when its watcher has not run yet), else the SSH
// client's reason.
func sessionDownErr(s *session, lost, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	if lost != nil && !errors.Is(err, lost) {
		return fmt.Errorf("%w: session %s: %w (%w)", ErrSessionLost, s.id, lost, err)
	}
	return fmt.Errorf("%w: session %s: %w", ErrSessionLost, s.id, err)
}

// waitSession waits for a ready session (only when none is: a replacement
// is opening, or a dead session's watcher has not run yet).
func (t *Tunnel) waitSession(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// placeLocked decides where a dial goes when scaling: it returns the
// session to dial on, or nil and a channel to wait on (then the caller
// waits, at most until deadline, undoes t.waiting and t.claimed, which
// count this dial while it waits, and asks again). t.mu held.
func (t *Tunnel) placeLocked(deadline time.Time) (*session, <-chan struct{}) {
	s := t.pick()
	if s == nil || !t.cfg.scaling() || t.cfg.Scale.DialWait < 0 || s.busyConns() == 0 || !time.Now().Before(deadline) {
		return s, nil
	}
	t.waiting++ // this dial is demand too
	t.maybeGrowLocked()
	if t.opening <= t.claimed {
		t.waiting--
		return s, nil // nothing to wait for
	}
	t.claimed++
	return nil, t.changed
}
