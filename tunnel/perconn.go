package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/jumpless/jumpless/link"
)

// One session per connection: ModeDirect's multiplexer for agents that only
// do basic port forwarding (AWS ≤ 3.0.196.0, reference §8.3) and for
// transports without port sessions. Each DialContext starts a session to
// the destination; closing the connection ends the session (AWS basic:
// DisconnectToPort, then TerminateSession).
//
// The agent does not signal the target's close in this mode: when the
// database closes the connection, Read blocks until a deadline or until the
// session ends (then it returns an error, never io.EOF).

// perConnStats tracks the open per-connection sessions.
type perConnStats struct {
	mu     sync.Mutex
	live   map[*linkConn]struct{}
	closed bool
	done   carrierStats // counters of closed connections
}

type perConnSnapshot struct {
	carrierStats
	ids []string
}

func (s *perConnStats) add(c *linkConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.live == nil {
		s.live = make(map[*linkConn]struct{})
	}
	s.live[c] = struct{}{}
	s.done.totalConns++
	return true
}

func (s *perConnStats) remove(c *linkConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live[c]; !ok {
		return
	}
	delete(s.live, c)
	c.mu.Lock()
	s.done.bytesSent += c.sent
	s.done.bytesReceived += c.received
	c.mu.Unlock()
}

func (s *perConnStats) snapshot() perConnSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := perConnSnapshot{carrierStats: s.done}
	for c := range s.live {
		c.mu.Lock()
		out.bytesSent += c.sent
		out.bytesReceived += c.received
		c.mu.Unlock()
		out.openConns++
		out.ids = append(out.ids, c.Link.ID())
	}
	return out
}

func (s *perConnStats) closeAll() error {
	s.mu.Lock()
	s.closed = true
	cs := make([]*linkConn, 0, len(s.live))
	for c := range s.live {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = c.Close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// dialPerConn starts a session for one connection (or takes the session
// opened while finding out that the agent does basic forwarding).
func (d *direct) dialPerConn(ctx context.Context, p *destPool) (net.Conn, error) {
	d.mu.Lock()
	l := p.spare
	p.spare = nil
	d.mu.Unlock()
	if l == nil {
		var err error
		if d.pt != nil {
			var mode link.PortMode
			l, mode, err = d.pt.DialPort(ctx, p.addr)
			if err == nil && mode.Mux { // the agent changed its mind: cannot happen with one agent
				l.Close()
				err = errors.New("the agent switched to mux mode")
			}
		} else {
			l, err = d.tr.Dial(ctx, p.addr)
		}
		if err != nil {
			return nil, fmt.Errorf("tunnel: dial %s: %w", p.addr, err)
		}
	}
	c := &linkConn{Link: l, stats: &d.perConn, addr: p.addr, replace: d.t.cfg.Replace.Enabled}
	if !d.perConn.add(c) {
		l.Close()
		return nil, fmt.Errorf("tunnel: dial %s: %w", p.addr, d.t.closedErr())
	}
	return c, nil
}

// linkConn is a connection that is a whole session.
type linkConn struct {
	link.Link
	stats   *perConnStats
	addr    string
	replace bool // Config.Replace: a session's end matches ErrSessionLost

	rmu       sync.Mutex // serialises Read and Ready
	peek      []byte     // bytes Ready read ahead
	mu        sync.Mutex
	sent      int64
	received  int64
	closeOnce sync.Once
	closeErr  error
}

// Ready waits for the first byte from the target (for protocols whose
// server speaks first) or the session's error.
func (c *linkConn) Ready(ctx context.Context) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.peek) > 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { c.Link.SetReadDeadline(aLongTimeAgo) })
	b := make([]byte, 1)
	n, err := c.Link.Read(b)
	if !stop() {
		c.Link.SetReadDeadline(noDeadline)
		if err != nil {
			return ctx.Err()
		}
	}
	c.peek = b[:n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return c.downErr(err)
}

// downErr makes the error of a connection whose session ended (the
// Link's Err is set) match ErrTunnelDown too, keeping the cause. A refused
// connect is a *link.ConnectError naming the address (wrapping the
// transport's own error); link.ErrForbidden, a deadline and the
// connection's own Close are left as they are.
func (c *linkConn) downErr(err error) error {
	if errors.Is(err, link.ErrConnect) {
		return withAddr(err, c.addr, c.Link.ID())
	}
	if err == nil || c.Link.Err() == nil || errors.Is(err, ErrTunnelDown) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, link.ErrForbidden) {
		return err
	}
	down := ErrTunnelDown
	if c.replace {
		down = ErrSessionLost // the tunnel lives on
	}
	return fmt.Errorf("%w: session %s to %s: %w", down, c.Link.ID(), c.addr, err)
}

func (c *linkConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	if len(c.peek) > 0 {
		n := copy(p, c.peek)
		c.peek = c.peek[n:]
		c.rmu.Unlock()
		c.count(0, n)
		return n, nil
	}
	c.rmu.Unlock()
	n, err := c.Link.Read(p)
	c.count(0, n)
	return n, c.downErr(err)
}

func (c *linkConn) Write(p []byte) (int, error) {
	n, err := c.Link.Write(p)
	c.count(n, 0)
	return n, c.downErr(err)
}

func (c *linkConn) count(sent, received int) {
	c.mu.Lock()
	c.sent += int64(sent)
	c.received += int64(received)
	c.mu.Unlock()
}

// CloseWrite is not possible in a basic port session: the only way to
// end the connection is to end the session.
func (c *linkConn) CloseWrite() error {
	return fmt.Errorf("tunnel: half-close of %s: %w (one-session-per-connection mode has no half-close; close the connection)", c.addr, errors.ErrUnsupported)
}

func (c *linkConn) RemoteAddr() net.Addr { return c.Link.RemoteAddr() }

func (c *linkConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Link.Close()
		if errors.Is(c.closeErr, net.ErrClosed) {
			c.closeErr = nil
		}
		c.stats.remove(c)
	})
	return c.closeErr
}
