package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/portmux"
)

// direct is ModeDirect's multiplexer: per destination address, Sessions
// port sessions carrying smux streams (package portmux), or, when the
// agent only does basic port forwarding or the transport has no port
// sessions, one session per connection (perconn.go).
type direct struct {
	t  *Tunnel
	tr link.Transport
	pt link.PortTransport // nil: the transport has no port sessions

	mu         sync.Mutex
	pools      map[string]*destPool
	closed     bool
	cause      error        // why the tunnel shut down (set by close)
	retired    carrierStats // counters of sessions no longer in a pool
	opened     int64        // Stats.SessionsOpened
	closedIdle int64        // Stats.SessionsClosedIdle

	perConn perConnStats
}

// destPool is the sessions of one destination.
type destPool struct {
	addr     string
	ready    chan struct{} // closed when opening has finished
	err      error         // opening failed
	basic    bool          // one session per connection
	dropped  bool          // removed from the pools (d.mu)
	spare    link.Link     // basic: the session opened to find that out, for the first dial
	sessions []*portmux.Session
	ids      []string
	opening  int           // replacements being opened (Config.Replace)
	changed  chan struct{} // closed when a session is added or removed (d.mu)

	// Config.Scale (directpool.go), d.mu.
	state       map[*portmux.Session]*muxState
	waiting     int // dials waiting for an opening session
	claimed     int // opening sessions a waiting dial has claimed
	growing     int // sessions being opened for the load
	growAfter   time.Time
	growBackoff time.Duration
}

// carrierStats are counters of a multiplexer.
type carrierStats struct {
	bytesSent, bytesReceived int64
	openConns, totalConns    int64
	opened, closedIdle       int64 // sessions (ModeDirect pools)
}

func newDirect(t *Tunnel) *direct {
	d := &direct{t: t, tr: t.cfg.Transport, pools: make(map[string]*destPool)}
	d.pt, _ = d.tr.(link.PortTransport)
	return d
}

// open opens the pools of addrs in parallel (Open's Direct.Destinations).
func (d *direct) open(ctx context.Context, addrs []string) error {
	errs := make([]error, len(addrs))
	ctx, cancel := context.WithCancel(ctx) // the first failure stops the others
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			if d.pt == nil {
				errs[i] = d.probe(ctx, a)
			} else {
				_, errs[i] = d.pool(ctx, a)
			}
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return firstError(errs)
}

// probe checks destination addr of a transport without port sessions: it
// starts a session (Transport.Dial), waits up to Direct.ProbeWait for the
// agent's refusal or the server's first byte, and ends the session. The
// session is not kept for the first connection: the target's own timers
// (MySQL connect_timeout 10 s, PostgreSQL authentication_timeout 60 s,
// sshd LoginGraceTime) close the agent's connection while it waits, and
// the agent neither says so nor refuses the next write: it re-dials, so
// the first connection would read one server's greeting and write into
// another server connection (docs/design.md).
func (d *direct) probe(ctx context.Context, addr string) error {
	l, err := d.tr.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("tunnel: session to %s: %w", addr, err)
	}
	start := time.Now()
	answered, perr := firstByte(ctx, l, d.t.cfg.Direct.ProbeWait)
	cerr := l.Close()
	if perr != nil {
		if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			d.t.log.Warn("tunnel: ending a refused probe session", "addr", addr, "session", l.ID(), "err", cerr)
		}
		if errors.Is(perr, link.ErrConnect) {
			return fmt.Errorf("tunnel: destination check: %w", withAddr(perr, addr, l.ID())) // names addr and the session
		}
		return fmt.Errorf("tunnel: session %s to %s: %w", l.ID(), addr, perr)
	}
	if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("tunnel: ending the probe session %s to %s: %w", l.ID(), addr, cerr)
	}
	d.t.log.Debug("tunnel: destination checked", "addr", addr, "session", l.ID(), "serverSpoke", answered, "took", time.Since(start))
	return nil
}

// withAddr makes a refused connect that a transport reports in its own
// type (matching link.ErrConnect, e.g. *aliyun.StatusError) a
// *link.ConnectError naming addr, which wraps it.
func withAddr(err error, addr, session string) error {
	var ce *link.ConnectError
	if !errors.Is(err, link.ErrConnect) || errors.As(err, &ce) {
		return err
	}
	return &link.ConnectError{Addr: addr, SessionID: session, Err: err}
}

// firstByte waits up to wait (nothing when negative) for l's first byte
// (answered) or its error; silence is no error. ctx's end is one.
func firstByte(ctx context.Context, l link.Link, wait time.Duration) (answered bool, err error) {
	if wait < 0 {
		return false, ctx.Err()
	}
	l.SetReadDeadline(time.Now().Add(wait))
	stop := context.AfterFunc(ctx, func() { l.SetReadDeadline(aLongTimeAgo) })
	n, err := l.Read(make([]byte, 1))
	stop()
	if cerr := ctx.Err(); cerr != nil && n == 0 {
		return false, cerr
	}
	if n > 0 {
		return true, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		// The far side closed before sending a byte: no server a tunnel
		// can use does that (and io.EOF must not pass for success).
		return false, fmt.Errorf("the connection ended before any byte came (%v): the destination closed it at once", err)
	}
	return false, err
}

// pool returns the ready pool of addr, opening it if needed.
func (d *direct) pool(ctx context.Context, addr string) (*destPool, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, d.t.closedErr()
	}
	p, ok := d.pools[addr]
	if !ok {
		p = &destPool{addr: addr, ready: make(chan struct{}), changed: make(chan struct{})}
		d.pools[addr] = p
		d.mu.Unlock()
		d.fill(ctx, p)
		close(p.ready)
	} else {
		d.mu.Unlock()
		select {
		case <-p.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if p.err != nil {
		d.drop(p) // the next dial tries again
		return nil, p.err
	}
	return p, nil
}

// fill opens Sessions sessions to p.addr in parallel.
func (d *direct) fill(ctx context.Context, p *destPool) {
	if d.pt == nil {
		p.basic = true
		return
	}
	n := d.t.cfg.Sessions
	links := make([]link.Link, n)
	modes := make([]link.PortMode, n)
	errs := make([]error, n)
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			links[i], modes[i], errs[i] = d.pt.DialPort(octx, p.addr)
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	closeAll := func() {
		for _, l := range links {
			if l != nil {
				l.Close()
			}
		}
	}
	if err := firstError(errs); err != nil {
		closeAll()
		p.err = fmt.Errorf("tunnel: port session to %s: %w", p.addr, err)
		return
	}
	if !modes[0].Mux {
		p.basic = true
		p.spare = links[0]
		for _, l := range links[1:] {
			l.Close()
		}
		d.t.log.Info("tunnel: agent does basic port forwarding: one session per connection", "addr", p.addr)
		return
	}
	for i, l := range links {
		s, err := portmux.Client(l, portmux.Config{
			Addr: p.addr, SessionID: l.ID(), KeepAlive: modes[i].KeepAlive,
			StreamBuffer: d.t.cfg.Direct.StreamBuffer, ConnectErrors: modes[i].ConnectErrors,
			Logger: d.t.log,
		})
		if err != nil {
			for _, s := range p.sessions {
				s.Close()
			}
			for _, l := range links[i:] {
				l.Close()
			}
			p.sessions = nil
			p.err = fmt.Errorf("tunnel: port session to %s: %w", p.addr, err)
			return
		}
		p.sessions = append(p.sessions, s)
		p.ids = append(p.ids, l.ID())
	}
	d.mu.Lock()
	d.opened += int64(len(p.sessions))
	d.mu.Unlock()
	for _, s := range p.sessions {
		d.t.wg.Go(func() { d.watch(p, s) })
	}
	d.t.log.Debug("tunnel: port sessions ready", "addr", p.addr, "sessions", p.ids)
}

// watch reacts to the end of a mux session before Close: a refusal of
// the destination (forbidden, cannot connect) drops the pool, so that the
// next dial tries again; any other end fails the tunnel, as in SSH mode.
func (d *direct) watch(p *destPool, s *portmux.Session) {
	select {
	case <-d.t.closing:
		return
	case <-s.Done():
	}
	cause := s.Err()
	d.mu.Lock()
	retired := p.state[s] != nil && p.state[s].retired
	if retired {
		delete(p.state, s) // closed by the pool for idleness
	}
	dropped := p.dropped || retired
	d.mu.Unlock()
	if dropped {
		return
	}
	if errors.Is(cause, link.ErrForbidden) || errors.Is(cause, link.ErrConnect) {
		d.t.log.Info("tunnel: destination refused by the agent", "addr", p.addr, "err", cause)
		d.drop(p)
		return
	}
	if d.t.cfg.Replace.Enabled && d.lost(p, s, cause) {
		return
	}
	err := fmt.Errorf("%w: port session to %s: %w", ErrTunnelDown, p.addr, cause)
	d.t.log.Warn("tunnel down", "addr", p.addr, "err", cause)
	d.t.shutdown(err)
}

// drop removes p from the pools and closes its sessions.
func (d *direct) drop(p *destPool) {
	d.mu.Lock()
	p.dropped = true
	if d.pools[p.addr] == p {
		delete(d.pools, p.addr)
	}
	d.mu.Unlock()
	d.closePool(p)
}

func (d *direct) closePool(p *destPool) error {
	var errs []error
	d.mu.Lock()
	sessions, spare := p.sessions, p.spare
	p.sessions, p.ids, p.spare = nil, nil, nil
	d.mu.Unlock()
	for _, s := range sessions {
		st := s.Stats()
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
		d.mu.Lock()
		d.retired.bytesSent += st.BytesSent
		d.retired.bytesReceived += st.BytesReceived
		d.retired.totalConns += st.TotalConns
		d.mu.Unlock()
	}
	if spare != nil {
		spare.Close()
	}
	return errors.Join(errs...)
}

// dial opens a connection to addr.
func (d *direct) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: dial %s: network %q not supported (want tcp)", addr, network)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: %w", addr, err)
	}
	p, err := d.pool(ctx, addr)
	if err != nil {
		return nil, err
	}
	if p.basic {
		return d.dialPerConn(ctx, p)
	}
	waitUntil := d.waitDeadline()
	for retried := false; ; {
		d.mu.Lock()
		best, wait := d.placeLocked(p, waitUntil)
		if wait != nil {
			// Every session of p is busy: wait for one the pool opens.
			d.mu.Unlock()
			timer := time.NewTimer(time.Until(waitUntil))
			select {
			case <-wait:
			case <-timer.C:
			case <-d.t.closing:
			case <-ctx.Done():
			}
			timer.Stop()
			d.mu.Lock()
			p.waiting--
			p.claimed--
			d.mu.Unlock()
			if err := d.waited(ctx, addr); err != nil {
				return nil, err
			}
			continue
		}
		if best == nil {
			if !d.t.cfg.Replace.Enabled || d.closed || p.dropped {
				d.mu.Unlock()
				return nil, fmt.Errorf("tunnel: dial %s: %w", addr, d.t.closedErr())
			}
			// Replace: the watcher drops the dead session and opens a
			// replacement; wait for it (or the tunnel's end).
			ch := p.changed
			d.mu.Unlock()
			select {
			case <-ch:
			case <-d.t.closing:
			case <-ctx.Done():
			}
			if err := d.waited(ctx, addr); err != nil {
				return nil, err
			}
			continue
		}
		d.mu.Unlock()
		c, err := best.Open(ctx)
		if err != nil {
			if d.t.cfg.Replace.Enabled && !retried && errors.Is(err, portmux.ErrSessionDown) && ctx.Err() == nil && d.t.shutdownCause() == nil {
				retried = true // the session ended under the open: try another
				continue
			}
			return nil, fmt.Errorf("tunnel: dial %s: %w", addr, d.downErr(err))
		}
		dc := &directConn{Conn: c, d: d, p: p, s: best}
		d.track(p, best, dc)
		return dc, nil
	}
}

// waited is the error of a dial that waited for a session, if it must
// stop: its ctx ended, or the tunnel is shutting down.
func (d *direct) waited(ctx context.Context, addr string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tunnel: dial %s: waiting for a session: %w", addr, err)
	}
	select {
	case <-d.t.closing:
		return fmt.Errorf("tunnel: dial %s: %w", addr, d.t.closedErr())
	default:
		return nil
	}
}

// muxDead reports whether a port session has ended.
func muxDead(s *portmux.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// downErr makes a session-down error match ErrTunnelDown too, or, when
// the tunnel was shut down, its cause (ErrClosed after Close).
func (d *direct) downErr(err error) error {
	if !errors.Is(err, portmux.ErrSessionDown) {
		return err
	}
	d.mu.Lock()
	cause := d.cause
	d.mu.Unlock()
	if cause == nil {
		cause = d.t.shutdownCause()
	}
	if cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	if cause == nil && d.t.cfg.Replace.Enabled {
		if !errors.Is(err, ErrSessionLost) {
			return fmt.Errorf("%w: %w", ErrSessionLost, err)
		}
		return err
	}
	if !errors.Is(err, ErrTunnelDown) {
		return fmt.Errorf("%w: %w", ErrTunnelDown, err)
	}
	return err
}

// stats sums the counters of every session and per-connection link.
func (d *direct) stats() (st carrierStats, ids []string, conns []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st = d.retired
	st.opened, st.closedIdle = d.opened, d.closedIdle
	for _, p := range d.pools {
		select {
		case <-p.ready:
		default:
			continue
		}
		for i, s := range p.sessions {
			ss := s.Stats()
			st.bytesSent += ss.BytesSent
			st.bytesReceived += ss.BytesReceived
			st.openConns += ss.OpenConns
			st.totalConns += ss.TotalConns
			ids = append(ids, p.ids[i])
			conns = append(conns, int(ss.OpenConns))
		}
	}
	pc := d.perConn.snapshot()
	st.bytesSent += pc.bytesSent
	st.bytesReceived += pc.bytesReceived
	st.openConns += pc.openConns
	st.totalConns += pc.totalConns
	ids = append(ids, pc.ids...)
	for range pc.ids {
		conns = append(conns, 1)
	}
	return st, ids, conns
}

// close closes every pool and per-connection session; cause is why.
func (d *direct) close(cause error) error {
	d.mu.Lock()
	d.closed = true
	if d.cause == nil {
		d.cause = cause
	}
	pools := make([]*destPool, 0, len(d.pools))
	for _, p := range d.pools {
		pools = append(pools, p)
	}
	d.mu.Unlock()
	errs := make([]error, len(pools)+1)
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Go(func() {
			<-p.ready
			errs[i] = d.closePool(p)
		})
	}
	wg.Go(func() { errs[len(pools)] = d.perConn.closeAll() })
	wg.Wait()
	return errors.Join(errs...)
}

// directConn is a portmux stream whose session-down errors also match
// ErrTunnelDown.
type directConn struct {
	*portmux.Conn
	d       *direct
	p       *destPool
	s       *portmux.Session
	refused atomic.Bool  // the agent could not connect it
	moved   atomic.Int64 // bytes read and written (busy, Config.Scale)
	pc      poolConn     // d.mu
	once    sync.Once
}

func (c *directConn) check(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, link.ErrConnect) {
		c.refused.Store(true)
	}
	return c.d.downErr(err)
}

// Read reads from the destination (see portmux.Conn.Read for the errors).
func (c *directConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.moved.Add(int64(n))
	}
	return n, c.check(err)
}

// Write writes to the destination.
func (c *directConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.moved.Add(int64(n))
	}
	return n, c.check(err)
}

// Ready waits for the destination's first byte (see portmux.Conn.Ready).
func (c *directConn) Ready(ctx context.Context) error {
	return c.check(c.Conn.Ready(ctx))
}

// Close closes the connection. When the agent could not connect it and
// the destination's sessions carry no other connection, they are closed
// too: a refused destination leaves no session open.
func (c *directConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.d.untrack(c) })
	if c.refused.Load() {
		c.d.dropIfIdle(c.p)
	}
	return err
}

// dropIfIdle drops p when none of its sessions has an open connection.
// Terminating the sessions takes API calls, so it runs in the background,
// owned by the tunnel (Close waits for it), not in the caller's Close.
func (d *direct) dropIfIdle(p *destPool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || p.dropped {
		return // Close terminates them
	}
	for _, s := range p.sessions {
		if s.Load() > 0 {
			return
		}
	}
	d.t.log.Debug("tunnel: dropping the sessions of a refused destination", "addr", p.addr)
	p.dropped = true
	if d.pools[p.addr] == p {
		delete(d.pools, p.addr)
	}
	d.t.wg.Go(func() { d.closePool(p) })
}

var (
	aLongTimeAgo = time.Unix(1, 0)
	noDeadline   time.Time
)

// lost handles the end of port session s of p before Close with Replace
// on: p drops it and opens replacements up to Config.Sessions. It reports
// false when the tunnel must fail instead.
func (d *direct) lost(p *destPool, s *portmux.Session, cause error) bool {
	d.mu.Lock()
	if d.closed || p.dropped {
		d.mu.Unlock()
		return !d.closed
	}
	id := ""
	for i, x := range p.sessions {
		if x == s {
			id = p.ids[i]
			d.retireLocked(p, i)
			break
		}
	}
	delete(p.state, s)
	need := d.t.cfg.Sessions - len(p.sessions) - p.opening
	for range need {
		p.opening++
		d.t.wg.Go(func() { d.replace(p, id, cause) })
	}
	close(p.changed)
	p.changed = make(chan struct{})
	d.mu.Unlock()
	d.t.log.Warn("tunnel session lost", "session", id, "addr", p.addr, "err", cause, "replacing", need > 0)
	s.Close()
	return true
}

// replace opens a replacement port session for p, with backoff. When it
// cannot and p has no session left, the tunnel fails.
func (d *direct) replace(p *destPool, id string, cause error) {
	backoff := d.t.cfg.Replace.Backoff
	var (
		last  error
		tries int
	)
	for tries = 1; tries <= d.t.cfg.Replace.Attempts; tries++ {
		s, sid, err := d.openMux(d.t.stopping, p.addr)
		if err == nil {
			d.mu.Lock()
			p.opening--
			if d.closed || p.dropped {
				d.mu.Unlock()
				s.Close()
				return
			}
			p.sessions = append(p.sessions, s)
			p.ids = append(p.ids, sid)
			d.opened++
			p.notifyLocked()
			d.t.wg.Go(func() { d.watch(p, s) })
			d.mu.Unlock()
			d.t.mu.Lock()
			d.t.replacements++
			d.t.lastReason = cause.Error()
			d.t.mu.Unlock()
			d.t.log.Info("tunnel session replaced", "lost", id, "session", sid, "addr", p.addr, "reason", cause, "tries", tries)
			return
		}
		last = err
		if d.t.stopping.Err() != nil || permanent(err) || errors.Is(err, link.ErrForbidden) || errors.Is(err, link.ErrConnect) || tries == d.t.cfg.Replace.Attempts {
			break
		}
		d.t.log.Warn("tunnel: replacement session failed; retrying", "lost", id, "addr", p.addr, "try", tries, "retryIn", backoff, "err", err)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-d.t.closing:
			timer.Stop()
		}
		backoff = min(2*backoff, maxReplaceBackoff)
	}
	d.mu.Lock()
	p.opening--
	none := len(p.sessions) == 0 && p.opening == 0
	closed := d.closed || p.dropped
	close(p.changed)
	p.changed = make(chan struct{})
	d.mu.Unlock()
	if closed {
		return
	}
	if !none {
		d.t.log.Error("tunnel: no replacement session; going on with the others", "lost", id, "addr", p.addr, "tries", tries, "err", last)
		return
	}
	err := fmt.Errorf("%w: port session %s to %s: %w; no replacement after %d tries: %w", ErrTunnelDown, id, p.addr, cause, min(tries, d.t.cfg.Replace.Attempts), last)
	d.t.log.Warn("tunnel down", "addr", p.addr, "err", err)
	d.t.shutdown(err)
}

// openMux starts one mux port session to addr.
func (d *direct) openMux(ctx context.Context, addr string) (*portmux.Session, string, error) {
	l, mode, err := d.pt.DialPort(ctx, addr)
	if err != nil {
		return nil, "", fmt.Errorf("tunnel: port session to %s: %w", addr, err)
	}
	if !mode.Mux {
		l.Close()
		return nil, "", fmt.Errorf("tunnel: port session to %s: the agent switched to basic port forwarding", addr)
	}
	s, err := portmux.Client(l, portmux.Config{
		Addr: addr, SessionID: l.ID(), KeepAlive: mode.KeepAlive,
		StreamBuffer: d.t.cfg.Direct.StreamBuffer, ConnectErrors: mode.ConnectErrors,
		Logger: d.t.log,
	})
	if err != nil {
		l.Close()
		return nil, "", fmt.Errorf("tunnel: port session to %s: %w", addr, err)
	}
	return s, l.ID(), nil
}
