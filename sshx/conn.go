package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialAddr is the net.Addr of a dialed "host:port" whose host is a name
// (far-side resolution): Network "tcp", String "host:port".
type dialAddr string

func (a dialAddr) Network() string { return "tcp" }
func (a dialAddr) String() string  { return string(a) }

// remoteAddr returns the RemoteAddr for a dialed host and port: a
// *net.TCPAddr for IP literals, else a dialAddr.
func remoteAddr(host string, port int) net.Addr {
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port)))
	}
	return dialAddr(net.JoinHostPort(host, strconv.Itoa(port)))
}

// localAddr is the LocalAddr of tunnel connections.
var localAddr net.Addr = dialAddr("sshx:direct-tcpip")

// directTCPIPMsg is the RFC 4254 §7.2 "direct-tcpip" channel open payload.
type directTCPIPMsg struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// DialContext opens a direct-tcpip channel to addr ("host:port"; the host
// is resolved by the SSH server, so private DNS names work) and returns it
// as a net.Conn. network must be "tcp", "tcp4" or "tcp6". The conn's
// RemoteAddr is addr (a *net.TCPAddr when the host is an IP literal), it
// supports deadlines, and its bytes are counted in Stats.
//
// Like a *net.TCPConn, the conn also has a CloseWrite method
// (interface{ CloseWrite() error }): it sends the SSH channel EOF after
// all data written before it, so the far end sees end of input, while the
// conn keeps reading the reply. When the far end half-closes, Read returns
// io.EOF after the data received before it and Write keeps working.
//
// DialContext returns when the server has connected to addr, refused, or
// ctx is done. When the server could not open the connection, the error is
// a *net.OpError wrapping a *DialError (which wraps the
// *ssh.OpenChannelError); it matches ErrConnectFailed when the server
// could not reach addr.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("sshx: network %q not supported (use tcp)", network)}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		p, lerr := net.DefaultResolver.LookupPort(ctx, network, portStr)
		if lerr != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("sshx: bad port in %q", addr)}
		}
		port = uint64(p)
	}
	if err := ctx.Err(); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: remoteAddr(host, int(port)), Err: err}
	}
	raddr := remoteAddr(host, int(port))
	if !c.track() {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: c.closedErr()}
	}
	payload := ssh.Marshal(&directTCPIPMsg{Host: host, Port: uint32(port), OriginHost: "127.0.0.1", OriginPort: 0})

	type result struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		ch, reqs, err := c.ssh.OpenChannel("direct-tcpip", payload)
		resc <- result{ch, reqs, err}
	}()
	var r result
	select {
	case r = <-resc:
	case <-ctx.Done():
		// The open goroutine is owned by the client's WaitGroup (track):
		// it closes the channel if it arrives after we gave up.
		go func() {
			defer c.untrack()
			if r := <-resc; r.err == nil {
				r.ch.Close()
				ssh.DiscardRequests(r.reqs)
			}
		}()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: context.Cause(ctx)}
	}
	if r.err != nil {
		c.untrack()
		var oc *ssh.OpenChannelError
		if errors.As(r.err, &oc) {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: &DialError{Addr: addr, Reason: oc.Reason, Message: oc.Message, Err: oc}}
		}
		// Any other failure means the connection ended under the dial.
		err := c.recordedErr()
		if err == nil {
			err = lostError(r.err)
		}
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: err}
	}
	tc := newTunnelConn(c, r.ch, r.reqs, raddr)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		err := c.closedErr()
		tc.abort(err)
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: err}
	}
	c.conns[tc] = struct{}{}
	c.mu.Unlock()
	c.log.Debug("sshx: direct-tcpip open", "addr", addr)
	return tc, nil
}

// track registers an in-flight dial with the client's WaitGroup, unless the
// client is closed.
func (c *Client) track() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

func (c *Client) untrack() { c.wg.Done() }

func (c *Client) closedErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// closeLinger bounds how long a closed connection keeps sending the data
// its user wrote before Close to a peer that does not read it.
const closeLinger = 10 * time.Second

// errWriteAfterCloseWrite is returned by Write after CloseWrite.
var errWriteAfterCloseWrite = errors.New("sshx: write after CloseWrite")

// tunnelConn is a direct-tcpip channel as a net.Conn with deadlines and
// half-close.
//
// Two pumps own the SSH channel's data streams: the read pump copies
// channel data into rbuf, the write pump sends what Write put into wbuf
// (then the EOF CloseWrite asked for). User Read and Write only touch the
// buffers under mu, so they can wait on a sync.Cond that the pumps, Close
// and the deadline timers broadcast: a deadline interrupts a blocked Read
// or Write without disturbing the channel. A third goroutine (see
// newTunnelConn) drains channel requests and, when the channel is gone,
// waits for the pumps and unregisters the conn.
type tunnelConn struct {
	c     *Client
	ch    ssh.Channel
	raddr net.Addr

	mu sync.Mutex

	// read side
	rbuf  ring
	rerr  error     // why the read pump stopped: io.EOF (far end EOF or channel closed) or the read error
	rdone bool      // the read pump has exited
	rcond sync.Cond // user Read waits: data, rerr, deadline, Close
	rpump sync.Cond // read pump waits: space, Close, abort
	rdl   deadline

	stage [readStage]byte // the read pump's buffer while rbuf is released
	rring bool            // the read pump is reading into a segment of rbuf

	// write side
	wbuf    ring
	wbusy   bool      // a Write is copying; serialises concurrent Writes
	werr    error     // sticky write error: send failure, channel gone, client closed
	wshut   bool      // CloseWrite was called
	eofSent bool      // the write pump has sent (or failed to send) the EOF
	eofErr  error     // the error sending the EOF
	wdone   bool      // the write pump has exited
	wcond   sync.Cond // user Write and CloseWrite wait: space, EOF sent, werr, deadline, Close
	wpump   sync.Cond // write pump waits: data, CloseWrite, Close, werr
	wdl     deadline
	linger  *time.Timer // forces the channel closed if flushing after Close stalls

	closed bool // Close was called
	dead   bool // the client aborted the conn (Client.Close or a dead transport)

	pumps sync.WaitGroup
}

// deadline is one direction's deadline and its timer, which wakes cond's
// waiters when it passes. Fields are guarded by tunnelConn.mu.
type deadline struct {
	tc    *tunnelConn
	cond  *sync.Cond
	at    time.Time
	timer *time.Timer // created on first use, then Reset: no allocation per call
}

// expired reports whether the deadline has passed. It reads the clock only
// when a deadline is set.
func (d *deadline) expired() bool {
	return !d.at.IsZero() && !time.Now().Before(d.at)
}

// set changes the deadline (mu held).
func (d *deadline) set(t time.Time) {
	d.at = t
	if t.IsZero() {
		if d.timer != nil {
			d.timer.Stop()
		}
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		if d.timer != nil {
			d.timer.Stop()
		}
		d.cond.Broadcast()
		return
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(dur, d.fire)
	} else {
		d.timer.Reset(dur)
	}
}

// fire runs when the timer expires: it wakes the waiters, who check the
// clock themselves, and re-arms the timer if the deadline moved later.
func (d *deadline) fire() {
	d.tc.mu.Lock()
	if !d.tc.closed && !d.at.IsZero() {
		if dur := time.Until(d.at); dur > 0 {
			d.timer.Reset(dur)
		}
	}
	d.cond.Broadcast()
	d.tc.mu.Unlock()
}

// stop stops the timer (mu held).
func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// newTunnelConn starts the pumps and the owner goroutine; the dial's
// WaitGroup slot (track) is handed to the owner.
func newTunnelConn(c *Client, ch ssh.Channel, reqs <-chan *ssh.Request, raddr net.Addr) *tunnelConn {
	tc := &tunnelConn{c: c, ch: ch, raddr: raddr}
	tc.rcond.L = &tc.mu
	tc.rpump.L = &tc.mu
	tc.wcond.L = &tc.mu
	tc.wpump.L = &tc.mu
	tc.rdl = deadline{tc: tc, cond: &tc.rcond}
	tc.wdl = deadline{tc: tc, cond: &tc.wcond}
	c.openConns.Add(1)
	c.totalConns.Add(1)
	tc.pumps.Add(2)
	go tc.readLoop()
	go tc.writeLoop()
	go func() { // owner: holds the dial's WaitGroup slot
		ssh.DiscardRequests(reqs) // returns when the channel is closed (by either side, or the connection died)
		tc.channelGone()
		tc.pumps.Wait()
		c.mu.Lock()
		delete(c.conns, tc)
		c.mu.Unlock()
		c.openConns.Add(-1)
		c.untrack()
	}()
	return tc
}

// readStage is the size of the read pump's own buffer. The pump reads into
// it, not into a segment of the 64 KiB ring, whenever its last read did not
// fill its buffer (the channel had no more data, so this read will likely
// wait) or nothing is buffered. So an idle connection waits with no ring:
// the first bytes that arrive take one from the pool, and Read returns it
// once drained. During a bulk transfer reads that fill the stage go on
// into the ring: one small copy per SSH packet.
const readStage = 1024

// readLoop is the read pump: channel → rbuf.
func (tc *tunnelConn) readLoop() {
	defer tc.pumps.Done()
	tc.mu.Lock()
	more := false // the last read filled its buffer
	for {
		for tc.rbuf.bp != nil && tc.rbuf.full() && !tc.closed && !tc.dead {
			tc.rpump.Wait()
		}
		if tc.closed || tc.dead {
			break
		}
		staged := tc.rbuf.n == 0 || !more
		var seg []byte
		if staged {
			tc.rbuf.release()
			seg = tc.stage[:]
			if tc.rbuf.bp != nil { // still holds data: read no more than fits
				seg = seg[:min(len(seg), len(tc.rbuf.buf)-tc.rbuf.n)]
			}
		} else {
			seg = tc.rbuf.writable() // only this goroutine writes to it while mu is released
			tc.rring = true
		}
		tc.mu.Unlock()
		n, err := tc.ch.Read(seg)
		if n > 0 {
			tc.c.bytesReceived.Add(int64(n))
		}
		if err != nil {
			// x/crypto/ssh reports the end of the whole connection to
			// every channel as io.EOF too (only the far end's EOF or close
			// may read as io.EOF), or as the transport's raw error when
			// the window adjustment after a read failed: either way the
			// client's reason is the answer (endReason). Not after this
			// conn's own Close or abort, which the loop ends on anyway.
			tc.mu.Lock()
			ours := tc.closed || tc.dead
			tc.mu.Unlock()
			if !ours {
				err = tc.c.endReason(err)
			}
		}
		more = n == len(seg)
		tc.mu.Lock()
		tc.rring = false
		if staged && n > 0 && !tc.closed {
			tc.rbuf.take()
			tc.rbuf.write(seg[:n]) // fits: the ring was empty or had len(seg) free
		} else if !staged {
			tc.rbuf.n += n
		}
		if err != nil {
			if tc.rerr == nil {
				tc.rerr = err
			}
			if err != io.EOF && (tc.werr == nil || tc.werr == io.ErrClosedPipe) {
				tc.werr = err // the connection is gone: writes fail too
				tc.wcond.Broadcast()
				tc.wpump.Broadcast()
			}
			tc.rcond.Broadcast()
			break
		}
		if n > 0 {
			tc.rcond.Broadcast()
		}
	}
	tc.rdone = true
	if tc.closed {
		tc.releaseRead()
	}
	tc.mu.Unlock()
}

// writeLoop is the write pump: wbuf → channel, then the EOF if CloseWrite
// was called. After Close it flushes what was written before, then closes
// the channel.
func (tc *tunnelConn) writeLoop() {
	defer tc.pumps.Done()
	tc.mu.Lock()
	for tc.werr == nil {
		if tc.wbuf.n > 0 {
			seg := tc.wbuf.readable() // Write only appends to the free part while mu is released
			tc.mu.Unlock()
			n, err := tc.ch.Write(seg)
			if n > 0 {
				tc.c.bytesSent.Add(int64(n))
			}
			tc.mu.Lock()
			tc.wbuf.consume(n)
			tc.wbuf.release() // sent everything: an idle conn holds no ring
			tc.wcond.Broadcast()
			if err != nil && tc.werr == nil {
				if cerr := tc.c.recordedErr(); cerr != nil {
					err = cerr // the transport's failure, as the client recorded it
				}
				tc.werr = writeErr(err)
			}
			continue
		}
		if tc.closed {
			break
		}
		if tc.wshut && !tc.eofSent {
			tc.mu.Unlock()
			err := tc.ch.CloseWrite()
			tc.mu.Lock()
			tc.eofSent, tc.eofErr = true, err
			tc.wcond.Broadcast()
			continue
		}
		tc.wpump.Wait()
	}
	tc.wdone = true
	if !tc.eofSent { // a CloseWrite still waiting fails with why the pump stopped
		tc.eofSent, tc.eofErr = true, tc.werr
		if tc.eofErr == nil {
			tc.eofErr = net.ErrClosed
		}
	}
	tc.wbuf.drop()
	if tc.linger != nil {
		tc.linger.Stop()
	}
	tc.wcond.Broadcast()
	tc.mu.Unlock()
	tc.ch.Close()
}

// writeErr maps a channel write error: io.EOF means the channel is closed.
func writeErr(err error) error {
	if err == io.EOF {
		return io.ErrClosedPipe
	}
	return err
}

// channelGone is called when the SSH channel is closed: writes fail from
// now on (with the client's reason when the whole connection ended); reads
// return what was received, then io.EOF or that reason.
func (tc *tunnelConn) channelGone() {
	cerr := tc.c.recordedErr()
	tc.mu.Lock()
	if tc.werr == nil {
		tc.werr = io.ErrClosedPipe
		if cerr != nil {
			tc.werr = cerr
		}
	}
	tc.wpump.Broadcast()
	tc.wcond.Broadcast()
	tc.mu.Unlock()
}

// abort ends the conn because the client is closing: the pumps stop,
// unsent data is dropped, and Write and Read (after the data already
// received) return err — never io.EOF, which means the far end closed.
func (tc *tunnelConn) abort(err error) {
	tc.mu.Lock()
	tc.dead = true
	if tc.werr == nil {
		tc.werr = err
	}
	if tc.rerr == nil {
		tc.rerr = err
	}
	tc.rcond.Broadcast()
	tc.rpump.Broadcast()
	tc.wcond.Broadcast()
	tc.wpump.Broadcast()
	tc.mu.Unlock()
	tc.ch.Close() // unblocks a pump stuck in the channel
}

// releaseRead returns rbuf to the pool once both the user (Close) and the
// read pump are done with it (mu held).
func (tc *tunnelConn) releaseRead() {
	tc.rbuf.drop()
}

func (tc *tunnelConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: localAddr, Addr: tc.raddr, Err: err}
}

// Read reads data received from the far end. After the far end's EOF or
// close it returns io.EOF once the received data is read. When the
// connection ended otherwise it returns, after the received data, a
// *net.OpError wrapping the client's reason: ErrClosed (matching
// net.ErrClosed) after Client.Close, ErrKeepaliveTimeout, or
// ErrConnectionLost with the transport's error.
func (tc *tunnelConn) Read(p []byte) (int, error) {
	tc.mu.Lock()
	for {
		if tc.closed {
			tc.mu.Unlock()
			return 0, tc.opErr("read", net.ErrClosed)
		}
		if tc.rdl.expired() {
			tc.mu.Unlock()
			return 0, tc.opErr("read", os.ErrDeadlineExceeded)
		}
		if tc.rbuf.n > 0 {
			n := tc.rbuf.read(p)
			if !tc.rring {
				tc.rbuf.release() // drained: an idle conn holds no ring
			}
			tc.rpump.Signal()
			tc.mu.Unlock()
			return n, nil
		}
		if err := tc.rerr; err != nil {
			tc.mu.Unlock()
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, tc.opErr("read", err)
		}
		if len(p) == 0 {
			tc.mu.Unlock()
			return 0, nil
		}
		tc.rcond.Wait()
	}
}

// Write queues p for the far end. It returns once all of p is buffered
// (the write pump sends it in order), or with the count buffered so far
// when the write deadline passes, the conn is closed or half-closed, or
// sending failed.
func (tc *tunnelConn) Write(p []byte) (int, error) {
	tc.mu.Lock()
	for tc.wbusy && !tc.closed && tc.werr == nil && !tc.wshut && !tc.wdl.expired() {
		tc.wcond.Wait()
	}
	n := 0
	var err error
	for {
		if tc.closed {
			err = net.ErrClosed
			break
		}
		if tc.wshut {
			err = errWriteAfterCloseWrite
			break
		}
		if tc.werr != nil {
			err = tc.werr
			break
		}
		if tc.wdl.expired() {
			err = os.ErrDeadlineExceeded
			break
		}
		if n == len(p) {
			break
		}
		tc.wbuf.take()
		if !tc.wbuf.full() {
			n += tc.wbuf.write(p[n:])
			tc.wpump.Signal()
			continue
		}
		tc.wbusy = true
		tc.wcond.Wait()
	}
	if tc.wbusy {
		tc.wbusy = false
		tc.wcond.Broadcast()
	}
	tc.mu.Unlock()
	if err != nil {
		return n, tc.opErr("write", err)
	}
	return n, nil
}

// CloseWrite half-closes the conn: it sends the SSH channel EOF after all
// data written before it, so the far end reads end of input, while Read
// keeps returning the far end's data. It waits until the EOF is sent,
// bounded by the write deadline (on timeout the EOF stays queued). Write
// fails after it. Calling it again returns the first call's result.
func (tc *tunnelConn) CloseWrite() error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.closed {
		return tc.opErr("close", net.ErrClosed)
	}
	if !tc.wshut {
		tc.wshut = true
		tc.wpump.Signal()
	}
	for !tc.eofSent {
		if tc.closed {
			return tc.opErr("close", net.ErrClosed)
		}
		if tc.wdl.expired() {
			return tc.opErr("close", os.ErrDeadlineExceeded)
		}
		tc.wcond.Wait()
	}
	if tc.eofErr != nil {
		return tc.opErr("close", writeErr(tc.eofErr))
	}
	return nil
}

// RemoteAddr returns the address passed to DialContext.
func (tc *tunnelConn) RemoteAddr() net.Addr { return tc.raddr }

// LocalAddr returns a placeholder address ("sshx:direct-tcpip").
func (tc *tunnelConn) LocalAddr() net.Addr { return localAddr }

// SetDeadline sets the read and write deadlines.
func (tc *tunnelConn) SetDeadline(t time.Time) error { return tc.setDeadlines(t, true, true) }

// SetReadDeadline sets the deadline for Read; it interrupts a blocked Read.
func (tc *tunnelConn) SetReadDeadline(t time.Time) error { return tc.setDeadlines(t, true, false) }

// SetWriteDeadline sets the deadline for Write and CloseWrite; it
// interrupts one blocked on a full buffer. Data already accepted stays
// queued.
func (tc *tunnelConn) SetWriteDeadline(t time.Time) error { return tc.setDeadlines(t, false, true) }

// setDeadlines sets the read and/or write deadline to t.
func (tc *tunnelConn) setDeadlines(t time.Time, read, write bool) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.closed {
		return tc.opErr("set", net.ErrClosed)
	}
	if read {
		tc.rdl.set(t)
	}
	if write {
		tc.wdl.set(t)
	}
	return nil
}

// Close closes the connection: blocked Reads and Writes return, unread
// data is dropped, and data already written is still sent (for at most
// closeLinger if the far end does not read it) before the SSH channel is
// closed. It does not wait for that. A second Close returns an error
// wrapping net.ErrClosed.
func (tc *tunnelConn) Close() error {
	tc.mu.Lock()
	if tc.closed {
		tc.mu.Unlock()
		return tc.opErr("close", net.ErrClosed)
	}
	tc.closed = true
	tc.rdl.stop()
	tc.wdl.stop()
	if !tc.wdone && tc.werr == nil && tc.wbuf.n > 0 {
		tc.linger = time.AfterFunc(closeLinger, func() { tc.ch.Close() })
	}
	if tc.rdone {
		tc.releaseRead()
	}
	wdone := tc.wdone
	tc.rcond.Broadcast()
	tc.rpump.Broadcast()
	tc.wcond.Broadcast()
	tc.wpump.Broadcast()
	tc.mu.Unlock()
	if wdone {
		tc.ch.Close()
	}
	return nil
}
