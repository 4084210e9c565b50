package tunnel

import (
	"time"

	"github.com/jumpless/jumpless/portmux"
)

// Automatic sessions in ModeDirect (Config.Scale): the same policy as the
// SSH-mode pool (pool.go), per destination: a destination's port sessions
// follow the load of its connections, between Config.Sessions and
// Scale.Max.

// muxState is the pool's view of one port session (d.mu).
type muxState struct {
	conns     map[*directConn]struct{}
	idleSince time.Time
	retired   bool // closed by the pool: its end is no failure
}

// stateLocked returns the pool's record of s (d.mu held).
func (p *destPool) stateLocked(s *portmux.Session) *muxState {
	if p.state == nil {
		p.state = make(map[*portmux.Session]*muxState)
	}
	st := p.state[s]
	if st == nil {
		st = &muxState{conns: make(map[*directConn]struct{})}
		p.state[s] = st
	}
	return st
}

// busyLocked is how many connections of s are busy, dials in progress
// included (d.mu held).
func (p *destPool) busyLocked(s *portmux.Session) int64 {
	n := s.Stats().PendingOpening
	for c := range p.stateLocked(s).conns {
		if c.pc.busy {
			n++
		}
	}
	return n
}

// pickLocked returns p's live session with the fewest busy connections,
// then the fewest open ones, or nil (d.mu held).
func (p *destPool) pickLocked() *portmux.Session {
	var (
		best     *portmux.Session
		bestBusy int64
		bestLoad int64
	)
	for _, s := range p.sessions {
		if muxDead(s) {
			continue
		}
		b, l := p.busyLocked(s), s.Load()
		if best == nil || b < bestBusy || b == bestBusy && l < bestLoad {
			best, bestBusy, bestLoad = s, b, l
		}
	}
	return best
}

// notifyLocked wakes the dials waiting for one of p's sessions (d.mu held).
func (p *destPool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// placeLocked decides where a dial to p goes (see Tunnel.placeLocked):
// a session, or nil and a channel to wait on, with p.waiting and
// p.claimed counting this dial (d.mu held).
func (d *direct) placeLocked(p *destPool, deadline time.Time) (*portmux.Session, <-chan struct{}) {
	s := p.pickLocked()
	cfg := &d.t.cfg
	if s == nil || !cfg.scaling() || cfg.Scale.DialWait < 0 || p.busyLocked(s) == 0 || !time.Now().Before(deadline) {
		return s, nil
	}
	p.waiting++
	d.maybeGrowLocked(p)
	if p.growing <= p.claimed {
		p.waiting--
		return s, nil
	}
	p.claimed++
	return nil, p.changed
}

// maybeGrowLocked opens port sessions to p.addr for the load (d.mu held).
func (d *direct) maybeGrowLocked(p *destPool) {
	if !d.t.cfg.scaling() || d.closed || p.dropped || time.Now().Before(p.growAfter) {
		return
	}
	busy := int64(p.waiting)
	ready := 0
	for _, s := range p.sessions {
		if muxDead(s) {
			continue
		}
		b := p.busyLocked(s)
		if b == 0 {
			return
		}
		busy += b
		ready++
	}
	want := min(int(busy), d.t.cfg.Scale.Max) - ready - p.growing - p.opening
	for range want {
		p.growing++
		d.t.wg.Go(func() { d.grow(p) })
	}
}

// grow opens one port session to p.addr for the load.
func (d *direct) grow(p *destPool) {
	s, id, err := d.openMux(d.t.stopping, p.addr)
	d.mu.Lock()
	p.growing--
	if err != nil {
		p.notifyLocked()
		if p.growBackoff == 0 {
			p.growBackoff = d.t.cfg.Scale.Interval
		} else {
			p.growBackoff = min(2*p.growBackoff, maxReplaceBackoff)
		}
		p.growAfter = time.Now().Add(p.growBackoff)
		closed, backoff := d.closed || p.dropped, p.growBackoff
		d.mu.Unlock()
		if !closed {
			d.t.log.Warn("tunnel: could not open a port session for the load", "addr", p.addr, "err", err, "retryAfter", backoff)
		}
		return
	}
	if d.closed || p.dropped {
		d.mu.Unlock()
		s.Close()
		return
	}
	p.growBackoff, p.growAfter = 0, time.Time{}
	p.sessions = append(p.sessions, s)
	p.ids = append(p.ids, id)
	d.opened++
	p.notifyLocked()
	n := len(p.sessions)
	d.t.wg.Go(func() { d.watch(p, s) })
	d.mu.Unlock()
	d.t.log.Info("tunnel session opened for the load", "session", id, "addr", p.addr, "sessions", n)
}

// track records a new connection of session s (busy: just dialed).
func (d *direct) track(p *destPool, s *portmux.Session, c *directConn) {
	c.pc.busy, c.pc.opened = true, time.Now()
	d.mu.Lock()
	st := p.stateLocked(s)
	st.conns[c] = struct{}{}
	st.idleSince = time.Time{}
	d.maybeGrowLocked(p)
	d.mu.Unlock()
}

// untrack forgets a closed connection.
func (d *direct) untrack(c *directConn) {
	d.mu.Lock()
	if st := c.p.state[c.s]; st != nil {
		delete(st.conns, c)
	}
	d.mu.Unlock()
}

// sample is the clock of ModeDirect's pools (only when scaling): it marks
// busy connections, opens sessions for the load and closes idle extra
// ones.
func (d *direct) sample() {
	tick := time.NewTicker(d.t.cfg.Scale.Interval)
	defer tick.Stop()
	for {
		select {
		case <-d.t.closing:
			return
		case <-tick.C:
		}
		type idle struct {
			s        *portmux.Session
			id, addr string
		}
		var closing []idle
		now := time.Now()
		d.mu.Lock()
		for _, p := range d.pools {
			select {
			case <-p.ready:
			default:
				continue
			}
			for _, s := range p.sessions {
				st := p.stateLocked(s)
				for c := range st.conns {
					m := c.moved.Load()
					c.pc.busy = m != c.pc.mark || now.Sub(c.pc.opened) < d.t.cfg.Scale.Interval
					c.pc.mark = m
				}
				if len(st.conns) > 0 || s.Stats().PendingOpening > 0 {
					st.idleSince = time.Time{}
				} else if st.idleSince.IsZero() {
					st.idleSince = now
				}
			}
			d.maybeGrowLocked(p)
			for i := len(p.sessions) - 1; i >= 0 && len(p.sessions) > d.t.cfg.Sessions; i-- {
				s := p.sessions[i]
				st := p.stateLocked(s)
				if d.closed || p.dropped || st.idleSince.IsZero() || now.Sub(st.idleSince) < d.t.cfg.Scale.IdleClose {
					continue
				}
				st.retired = true
				closing = append(closing, idle{s, p.ids[i], p.addr})
				d.retireLocked(p, i)
				d.closedIdle++
			}
		}
		d.mu.Unlock()
		for _, c := range closing {
			d.t.log.Info("tunnel session closed: idle", "session", c.id, "addr", c.addr, "idleFor", d.t.cfg.Scale.IdleClose)
			d.t.wg.Go(func() {
				if err := c.s.Close(); err != nil {
					d.t.log.Warn("tunnel: closing an idle port session", "session", c.id, "err", err)
				}
			})
		}
	}
}

// retireLocked removes p.sessions[i], keeping its counters (d.mu held).
func (d *direct) retireLocked(p *destPool, i int) {
	s := p.sessions[i]
	p.sessions = append(p.sessions[:i:i], p.sessions[i+1:]...)
	p.ids = append(p.ids[:i:i], p.ids[i+1:]...)
	st := s.Stats()
	d.retired.bytesSent += st.BytesSent
	d.retired.bytesReceived += st.BytesReceived
	d.retired.totalConns += st.TotalConns
}

// waitDeadline is when a dial stops waiting for an opening session.
func (d *direct) waitDeadline() time.Time { return time.Now().Add(d.t.cfg.Scale.DialWait) }
