package portmux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xtaci/smux"

	"github.com/jumpless/jumpless/link"
)

// pumpChunk is what the pump reads from its stream at a time (an smux v1
// frame carries at most 32 KiB).
const pumpChunk = 32 << 10

// Conn is one connection (smux stream) through a port session. It
// implements net.Conn; its methods are safe for concurrent use.
type Conn struct {
	s  *Session
	st *smux.Stream

	mu       sync.Mutex
	buf      []byte // received, not yet Read: buf[off:]
	off      int
	rerr     error // the stream's end, after buf is drained
	got      bool  // a byte arrived
	closed   bool
	readable chan struct{} // kicked when data or rerr arrives
	space    chan struct{} // kicked when Read made room
	die      chan struct{} // closed by Close
	first    chan struct{} // closed on the first byte or the end
	firstErr error

	rdl       time.Time // read deadline (mu)
	closeOnce sync.Once
	closeErr  error
}

func newConn(s *Session, st *smux.Stream) *Conn {
	return &Conn{
		s: s, st: st,
		readable: make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
		die:      make(chan struct{}),
		first:    make(chan struct{}),
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// pump reads the stream promptly into the bounded buffer (see the package
// comment: this keeps one stalled reader from freezing the session).
func (c *Conn) pump() {
	tmp := make([]byte, pumpChunk)
	for {
		n, err := c.st.Read(tmp)
		if n > 0 {
			if !c.push(tmp[:n]) {
				c.finish(c.s.downErr(net.ErrClosed))
				return
			}
		}
		if err != nil {
			c.finish(c.streamErr(err))
			return
		}
	}
}

// push appends p, waiting while the buffer is full; false after Close.
func (c *Conn) push(p []byte) bool {
	c.mu.Lock()
	for len(c.buf)-c.off+len(p) > c.s.cfg.StreamBuffer && len(c.buf) > c.off {
		if c.closed {
			c.mu.Unlock()
			return false
		}
		c.mu.Unlock()
		select {
		case <-c.space:
		case <-c.die:
		case <-c.s.done:
			return false
		}
		c.mu.Lock()
	}
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if c.off > 0 && len(c.buf)+len(p) > cap(c.buf) {
		k := copy(c.buf, c.buf[c.off:])
		c.buf = c.buf[:k]
		c.off = 0
	}
	c.buf = append(c.buf, p...)
	c.s.bytesIn.Add(int64(len(p)))
	if !c.got {
		c.got = true
		close(c.first)
	}
	c.mu.Unlock()
	kick(c.readable)
	return true
}

// streamErr classifies how the stream ended.
func (c *Conn) streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		c.mu.Lock()
		got := c.got
		c.mu.Unlock()
		select {
		case <-c.s.done:
			return c.s.downErr(err)
		default:
		}
		if !got && c.s.takeConnectError() {
			return &link.ConnectError{Addr: c.s.cfg.Addr, SessionID: c.s.cfg.SessionID, Reason: "the agent answered ConnectToPortError"}
		}
		if c.s.isDown() {
			return c.s.downErr(err)
		}
		return io.EOF // the target closed the connection (smux FIN)
	}
	return c.s.downErr(err)
}

func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.rerr == nil {
		c.rerr = err
	}
	if !c.got {
		c.got = true
		if err != io.EOF {
			c.firstErr = err
		}
		close(c.first)
	}
	c.mu.Unlock()
	kick(c.readable)
}

// Ready waits until the first byte from the target has arrived (nil) or the
// stream ended before one did (the error Read will return: e.g. a
// *link.ConnectError). Use it only for protocols whose server speaks first
// (MySQL): otherwise the first byte never comes before the client writes.
func (c *Conn) Ready(ctx context.Context) error {
	select {
	case <-c.first:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.firstErr
	case <-ctx.Done():
		return ctx.Err()
	case <-c.die:
		return net.ErrClosed
	}
}

// Read reads what the target sent. After the target closed the connection
// it returns io.EOF; when the session died, an error wrapping
// ErrSessionDown; when the agent could not connect, a *link.ConnectError.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if n := len(c.buf) - c.off; n > 0 {
			k := copy(p, c.buf[c.off:])
			c.off += k
			if c.off == len(c.buf) {
				c.buf = c.buf[:0]
				c.off = 0
			}
			c.mu.Unlock()
			kick(c.space)
			if n > k {
				kick(c.readable)
			}
			return k, nil
		}
		if c.rerr != nil {
			err := c.rerr
			c.mu.Unlock()
			return 0, err
		}
		dl := c.rdl
		c.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		var timer *time.Timer
		var expired <-chan time.Time
		if !dl.IsZero() {
			wait := time.Until(dl)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(wait)
			expired = timer.C
		}
		select {
		case <-c.readable: // data, the end, or a new deadline
		case <-expired:
		case <-c.die:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// Write writes to the target.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	rerr := c.rerr
	c.mu.Unlock()
	if rerr != nil && rerr != io.EOF {
		return 0, rerr // refused or session down: nothing reaches the target
	}
	n, err := c.st.Write(p)
	c.s.bytesOut.Add(int64(n))
	if err != nil {
		c.mu.Lock()
		rerr, closed := c.rerr, c.closed
		c.mu.Unlock()
		switch {
		case closed:
			err = net.ErrClosed
		case errors.Is(err, smux.ErrTimeout):
			err = os.ErrDeadlineExceeded
		case rerr != nil && rerr != io.EOF:
			err = rerr // e.g. ConnectError, session down
		default:
			err = c.s.downErr(fmt.Errorf("portmux: write: %w", err))
		}
	}
	return n, err
}

// CloseWrite sends nothing and returns an error matching ErrNoHalfClose:
// AWS port sessions have no half-close (reference §8.4).
func (c *Conn) CloseWrite() error { return ErrNoHalfClose }

// Close closes the stream (the agent closes its target connection).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.die)
		err := c.st.Close()
		c.s.open.Add(-1)
		if err != nil && !errors.Is(err, io.ErrClosedPipe) && !c.s.mux.IsClosed() {
			c.closeErr = err
		}
	})
	return c.closeErr
}

// LocalAddr is the stream's local address (the session's).
func (c *Conn) LocalAddr() net.Addr { return c.st.LocalAddr() }

// RemoteAddr is the address dialed through the session (Config.Addr).
func (c *Conn) RemoteAddr() net.Addr { return Addr(c.s.cfg.Addr) }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.st.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a blocked Read sees it at once.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	c.mu.Unlock()
	kick(c.readable)
	return nil
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// Addr is a "host:port" reached through a port session.
type Addr string

// Network returns "tcp".
func (Addr) Network() string { return "tcp" }

// String returns the address.
func (a Addr) String() string { return string(a) }
