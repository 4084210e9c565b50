package ssmtest

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// holdFlushAt is the buffered size at which a held batch is written anyway.
const holdFlushAt = 64 << 10

// holdConn is an accepted connection (under TLS, when the server has it)
// whose writes can be gathered: between hold and release they collect in
// memory and leave in one write(2) (or one per holdFlushAt bytes); at
// other times they go straight to the socket. With Config.BatchWrites the
// agent holds the client's websocket while it has more target bytes ready,
// so a burst of output frames costs one system call instead of one per
// frame. The frames, their order and their acknowledgements are the same
// either way: only the socket writes are fewer (a cost of the emulator,
// not of the client, which the benchmarks measure).
type holdConn struct {
	net.Conn

	mu      sync.Mutex
	holding int  // nested holds
	off     bool // the connection is ending: no more gathering (stopHolding)
	buf     []byte
	err     error // sticky: the first failed write
}

// holdListener wraps every accepted connection in a holdConn.
type holdListener struct{ net.Listener }

func (l holdListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &holdConn{Conn: c}, nil
}

// CloseWrite writes what is gathered and half-closes the TCP connection
// (net/http uses it).
func (c *holdConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	if err := c.stopHolding(); err != nil {
		return err
	}
	return cw.CloseWrite()
}

// stopHolding writes what is gathered and makes every later write go
// straight to the socket: for the service's last frames (channel_closed,
// a TLS close_notify) before the connection ends.
func (c *holdConn) stopHolding() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = true
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

// Write gathers p while held, else writes it (after anything gathered).
func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if (c.holding == 0 || c.off) && len(c.buf) == 0 {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.buf = append(c.buf, p...)
	if c.holding == 0 || c.off || len(c.buf) >= holdFlushAt {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// closeFlushTimeout bounds how long Close spends writing what is gathered.
const closeFlushTimeout = 2 * time.Second

// Close writes what is gathered, as the kernel sends bytes already written
// before a close (a channel_closed frame held in a batch must still reach
// the client), then closes the connection. If another goroutine is
// writing (perhaps blocked on a peer that does not read), Close does not
// wait for it: it closes the connection at once, which ends that write, as
// closing a socket does.
func (c *holdConn) Close() error {
	if c.mu.TryLock() {
		c.off = true
		if c.err == nil && len(c.buf) > 0 {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			_ = c.flushLocked()
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

func (c *holdConn) hold() {
	c.mu.Lock()
	c.holding++
	c.mu.Unlock()
}

func (c *holdConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding > 0 {
		c.holding--
	}
	if c.err != nil {
		return c.err
	}
	if c.holding > 0 {
		return nil
	}
	return c.flushLocked()
}

func (c *holdConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if err != nil {
		c.err = err
	}
	if cap(c.buf) > 4*holdFlushAt {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// holdConnOf returns the holdConn under ws, or nil.
func holdConnOf(ws *websocket.Conn) *holdConn {
	nc := ws.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	hc, _ := nc.(*holdConn)
	return hc
}

// batching reports whether the agent gathers its socket writes
// (Config.BatchWrites with Pacing Unpaced).
func (s *Server) batching() bool { return s.cfg.BatchWrites && s.cfg.Pacing == Unpaced }

// holdTarget gathers the writes to the agent's current target connection
// until the returned function is called (with BatchWrites the agent dials
// it as a holdConn).
func (a *agent) holdTarget() (release func()) {
	hc, ok := a.getTarget().(*holdConn)
	if !ok {
		return func() {}
	}
	hc.hold()
	return func() { _ = hc.release() }
}

// holdClient gathers the writes to the session's current client websocket
// until the returned function is called (see holdConn).
func (ss *session) holdClient() (release func()) {
	ss.mu.Lock()
	cc := ss.client
	ss.mu.Unlock()
	if cc == nil {
		return func() {}
	}
	hc := holdConnOf(cc.ws)
	if hc == nil {
		return func() {}
	}
	hc.hold()
	return func() { _ = hc.release() }
}
