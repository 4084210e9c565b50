package aliyun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/aliyun/internal/axt"
	"github.com/jumpless/jumpless/internal/deadline"
)

// maxReadBuffer bounds the bytes received but not yet read; beyond it the
// websocket reader waits (TCP back-pressure towards the server).
const maxReadBuffer = 4 << 20

// ErrClosed is returned by methods of a Conn after Close.
var ErrClosed = net.ErrClosed

// Conn is one TCP connection through Session Manager: one websocket on the
// session's WebSocketUrl. It implements net.Conn. A Conn never returns
// io.EOF: the agent does not signal the target's close, so the end of a
// Conn is Close, an error from the server (*StatusError) or a lost
// websocket (ErrSessionLost).
type Conn struct {
	cfg  Config
	sess *Session
	own  bool // Close also closes sess
	ws   *websocket.Conn
	log  *slog.Logger
	idx  int

	// writes to the websocket
	wmu      sync.Mutex
	seq      uint64
	wbuf     []byte
	lastSent atomic.Int64 // unix nanos of the last message sent

	// upload pacing
	pmu      sync.Mutex // one Write at a time
	rate     atomic.Int64
	nextSend time.Time

	ready     chan struct{} // closed at the first Output or when the hold ends
	readyOnce sync.Once
	hold      *time.Timer // ends the hold; nil without one

	// received bytes
	mu     sync.Mutex
	rbuf   []byte
	roff   int
	err    error // terminal error of the receive side
	rkick  chan struct{}
	rspace chan struct{}

	rdl, wdl deadline.Deadline

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when the connection has ended
	doneOnce  sync.Once
	readDone  chan struct{}
	wg        sync.WaitGroup

	stats struct {
		sent, received atomic.Int64
	}
}

func newConn(ws *websocket.Conn, s *Session, idx int) *Conn {
	c := &Conn{
		cfg:      s.cfg,
		sess:     s,
		ws:       ws,
		idx:      idx,
		log:      s.log.With("conn", idx),
		ready:    make(chan struct{}),
		rkick:    make(chan struct{}, 1),
		rspace:   make(chan struct{}, 1),
		closing:  make(chan struct{}),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
		rdl:      deadline.Make(),
		wdl:      deadline.Make(),
	}
	c.rate.Store(s.cfg.UploadRate)
	c.lastSent.Store(time.Now().UnixNano())
	c.wg.Add(2)
	go c.readLoop()
	go c.keepaliveLoop()
	if s.cfg.HoldFirstWrite < 0 {
		c.markReady()
	} else {
		c.hold = time.AfterFunc(s.cfg.HoldFirstWrite, c.markReady)
	}
	return c
}

func (c *Conn) markReady() { c.readyOnce.Do(func() { close(c.ready) }) }

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// readLoop decodes server messages until the websocket ends.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	defer close(c.readDone)
	var m axt.Message
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(c.lostError(err))
			return
		}
		if err := axt.Decode(b, &m); err != nil {
			c.fail(fmt.Errorf("%w: %v", ErrSessionLost, err))
			return
		}
		switch m.Type {
		case axt.Output:
			if len(m.Payload) == 0 {
				continue
			}
			c.markReady()
			if !c.deliver(m.Payload) {
				return
			}
		case axt.Status:
			code, rest, err := axt.ParseStatus(m.Payload)
			if err != nil {
				c.log.Debug("aliyun: empty Status ignored")
				continue
			}
			switch code {
			case axt.StatusRate:
				bps, err := axt.ParseRate(rest)
				if err != nil {
					c.log.Debug("aliyun: bad rate ignored", "err", err)
					continue
				}
				c.rate.Store(int64(bps))
				c.log.Debug("aliyun: upload rate set by the server", "bps", bps)
			case axt.StatusAborted, axt.StatusClosed, axt.StatusExited:
				c.fail(&StatusError{Code: byte(code), Reason: printable(rest)})
				return
			default:
				c.log.Debug("aliyun: status", "code", code.String())
			}
		default:
			c.log.Debug("aliyun: message ignored", "type", m.Type.String())
		}
	}
}

// printable keeps a reason readable (and short) for errors and logs.
func printable(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	out := make([]byte, 0, len(b))
	for _, ch := range b {
		if ch >= 0x20 && ch < 0x7f {
			out = append(out, ch)
		} else {
			out = append(out, '?')
		}
	}
	return string(out)
}

// deliver appends p to the receive buffer, waiting while it is full. It
// returns false when the Conn is closing.
func (c *Conn) deliver(p []byte) bool {
	for {
		c.mu.Lock()
		if len(c.rbuf)-c.roff < maxReadBuffer {
			if c.roff > 0 && c.roff == len(c.rbuf) {
				c.rbuf, c.roff = c.rbuf[:0], 0
			}
			c.rbuf = append(c.rbuf, p...)
			c.mu.Unlock()
			c.stats.received.Add(int64(len(p)))
			kick(c.rkick)
			return true
		}
		c.mu.Unlock()
		select {
		case <-c.rspace:
		case <-c.closing:
			return false
		}
	}
}

func (c *Conn) lostError(err error) error {
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: the server closed the websocket (code %d %q) without a Status; bytes in flight may be lost", ErrSessionLost, ce.Code, printable([]byte(ce.Text)))
	}
	return fmt.Errorf("%w: %v", ErrSessionLost, err)
}

// fail records the first terminal error and wakes readers and writers.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		if !errors.Is(err, ErrClosed) {
			c.log.Info("aliyun: connection ended", "err", err)
		}
	}
	c.mu.Unlock()
	kick(c.rkick)
	c.markReady()
	c.doneOnce.Do(func() { close(c.done) })
}

func (c *Conn) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// keepaliveLoop sends an empty Input when nothing was sent for
// KeepaliveInterval (the agent ends a channel idle for 180 s; websocket
// pings do not count).
func (c *Conn) keepaliveLoop() {
	defer c.wg.Done()
	iv := c.cfg.KeepaliveInterval
	t := time.NewTimer(iv)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
		}
		idle := time.Since(time.Unix(0, c.lastSent.Load()))
		if idle >= iv {
			if err := c.send(axt.Input, nil); err != nil {
				return
			}
			idle = 0
		}
		t.Reset(iv - idle)
	}
}

// send writes one message; safe for concurrent use.
func (c *Conn) send(t axt.Type, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	m := axt.Message{Type: t, Version: axt.Schema101, Created: uint64(time.Now().UnixMilli()), Seq: c.seq, Payload: payload}
	b, err := m.Append(c.wbuf[:0])
	if err != nil {
		return err
	}
	c.wbuf = b
	c.seq++
	if dl, ok := c.wdl.At(); ok {
		c.ws.SetWriteDeadline(dl)
	} else {
		c.ws.SetWriteDeadline(time.Time{})
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		if deadline.IsClosed(c.wdl.Wait()) {
			return os.ErrDeadlineExceeded
		}
		return c.lostError(err)
	}
	c.lastSent.Store(time.Now().UnixNano())
	return nil
}

// Read reads bytes the target sent. It never returns io.EOF (see Conn).
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if deadline.IsClosed(c.closing) {
			return 0, ErrClosed
		}
		if deadline.IsClosed(c.rdl.Wait()) {
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		if n := len(c.rbuf) - c.roff; n > 0 {
			k := copy(p, c.rbuf[c.roff:])
			c.roff += k
			if c.roff == len(c.rbuf) {
				c.rbuf, c.roff = c.rbuf[:0], 0
			} else {
				kick(c.rkick)
			}
			c.mu.Unlock()
			kick(c.rspace)
			return k, nil
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		c.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-c.rkick:
		case <-c.rdl.Wait():
		}
	}
}

// Write sends p to the target in Input messages of at most 2048 bytes,
// paced to the current upload rate. Writes are held until the target is
// ready (see Config.HoldFirstWrite).
func (c *Conn) Write(p []byte) (int, error) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	select {
	case <-c.ready:
	case <-c.wdl.Wait():
		return 0, os.ErrDeadlineExceeded
	case <-c.closing:
		return 0, ErrClosed
	}
	n := 0
	for n < len(p) {
		if err := c.failed(); err != nil {
			return n, err
		}
		if err := c.pace(); err != nil {
			return n, err
		}
		k := min(len(p)-n, MaxChunk)
		if err := c.send(axt.Input, p[n:n+k]); err != nil {
			return n, err
		}
		n += k
		c.stats.sent.Add(int64(k))
		if iv := c.interval(); iv > 0 {
			c.nextSend = time.Now().Add(iv)
		}
	}
	return n, nil
}

// interval is the pause after a chunk at the current rate (the agent's
// and CLI's integer formula).
func (c *Conn) interval() time.Duration {
	r := c.rate.Load()
	if r < 0 {
		return 0
	}
	return time.Duration(axt.PacingInterval(uint32(min(r, 1<<32-1)), MaxChunk)) * time.Millisecond
}

// pace waits until the next chunk may go.
func (c *Conn) pace() error {
	d := time.Until(c.nextSend)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.wdl.Wait():
		return os.ErrDeadlineExceeded
	case <-c.closing:
		return ErrClosed
	}
}

// Close sends Close (type 3, payload "1"), closes the websocket normally
// and, when this Conn owns its session (Dial), ends the session with
// EndTerminalSession. It is idempotent and bounded by CloseTimeout.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
		defer cancel()
		dl, _ := ctx.Deadline()
		alive := c.failed() == nil
		c.ws.NetConn().SetWriteDeadline(dl) // unblock a write in flight by dl at the latest
		c.wdl.Set(dl)
		close(c.closing) // stops Write, the hold and the keepalive
		if alive {
			if err := c.send(axt.Close, []byte("1")); err == nil {
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), dl)
				// Give the server a moment to answer the close handshake.
				t := time.NewTimer(min(time.Until(dl), time.Second))
				select {
				case <-c.readDone:
				case <-t.C:
				}
				t.Stop()
			}
		}
		if c.hold != nil {
			c.hold.Stop()
		}
		c.ws.Close()
		c.wg.Wait()
		c.fail(ErrClosed)
		c.rdl.Stop()
		c.wdl.Stop()
		c.sess.connClosed(c)
		if c.own && !c.sess.isClosing() {
			c.closeErr = c.sess.closeCtx(ctx)
		}
	})
	return c.closeErr
}

// Stats of one connection.
type ConnStats struct {
	BytesSent, BytesReceived int64
	UploadRate               int64 // bits/s now in force; Unpaced (-1) for none
}

// Stats returns the connection's counters.
func (c *Conn) Stats() ConnStats {
	return ConnStats{BytesSent: c.stats.sent.Load(), BytesReceived: c.stats.received.Load(), UploadRate: c.rate.Load()}
}

// Session returns the session the connection belongs to.
func (c *Conn) Session() *Session { return c.sess }

// ID is the session id ("s-…") the connection belongs to.
func (c *Conn) ID() string { return c.sess.id }

// Done is closed when the connection has ended (Close, a Status from the
// server, a lost websocket); Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error { return c.failed() }

// LocalAddr is the websocket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.ws.LocalAddr() }

// RemoteAddr names the target: "<instance>:<port>" or "<target server>:<port>".
func (c *Conn) RemoteAddr() net.Addr { return c.sess.remoteAddr() }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.wdl.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.Set(t); return nil }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.Set(t); return nil }
