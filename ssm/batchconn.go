package ssm

import (
	"net"
	"sync"
)

// batchFlushAt is the buffered size at which a batch is written even though
// the writer has more frames ready: it bounds the batch's memory and lets
// the first frames leave while the rest are encoded.
const batchFlushAt = 64 << 10

// batchConn is the data channel's network connection (under TLS and the
// WebSocket framing). While the session's writer holds it, writes are
// gathered in memory and leave in one write(2) when the writer has no more
// frames ready (release) or batchFlushAt bytes are gathered; otherwise, as
// for gorilla/websocket's handshake and control frames written by other
// goroutines, each write goes straight to the socket.
//
// Without it every WebSocket frame (one per 1 KiB data message and one per
// acknowledgement) costs its own system call. The order of bytes is the
// order of Write calls, so frames never interleave.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     []byte
	err     error // sticky: the first failed flush
}

func newBatchConn(c net.Conn) *batchConn { return &batchConn{Conn: c} }

// Write buffers p while the writer holds the conn, else writes it (after
// anything still buffered).
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding && len(c.buf) == 0 {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.buf = append(c.buf, p...)
	if !c.holding || len(c.buf) >= batchFlushAt {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// hold starts a batch: writes are gathered until release.
func (c *batchConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// release ends a batch and writes what was gathered.
func (c *batchConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if err != nil {
		c.err = err
	}
	if cap(c.buf) > 4*batchFlushAt {
		c.buf = nil // one oversized frame: do not keep its buffer
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
