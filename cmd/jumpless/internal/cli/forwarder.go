package cli

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
)

// dialer is what the forwarder needs from a tunnel (*tunnel.Tunnel
// satisfies it).
type dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// forwarder accepts connections on local listeners and forwards each to its
// remote address through a dialer. It owns its listeners, connections and
// goroutines; close stops them all and waits.
type forwarder struct {
	d      dialer
	specs  []forwardSpec
	lns    []net.Listener
	errOut io.Writer // per-connection problems, one line each
	cmd    string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	sent, received   atomic.Int64 // bytes local→remote, remote→local
	open, total, bad atomic.Int64 // connections open, accepted, failed to dial
}

// listen binds every spec's local address. On error nothing stays open.
func listen(specs []forwardSpec) ([]net.Listener, error) {
	var lns []net.Listener
	for _, s := range specs {
		ln, err := net.Listen("tcp", s.Listen)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("cannot listen on %s: %w", s.Listen, errors.Unwrap(err))
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// newForwarder takes ownership of lns (one per spec) and starts accepting.
func newForwarder(d dialer, specs []forwardSpec, lns []net.Listener, errOut io.Writer, cmd string) *forwarder {
	ctx, cancel := context.WithCancel(context.Background())
	f := &forwarder{d: d, specs: specs, lns: lns, errOut: errOut, cmd: cmd, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	for i := range lns {
		f.wg.Add(1)
		go f.accept(lns[i], specs[i].Remote)
	}
	return f
}

// addrs returns the actual local addresses ("127.0.0.1:15432").
func (f *forwarder) addrs() []string {
	var out []string
	for _, ln := range f.lns {
		out = append(out, ln.Addr().String())
	}
	return out
}

func (f *forwarder) accept(ln net.Listener, remote string) {
	defer f.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			fmt.Fprintf(f.errOut, "jumpless: %s: accept on %s: %v\n", f.cmd, ln.Addr(), err)
			select {
			case <-time.After(backoff):
			case <-f.ctx.Done():
				return
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !f.track(c) {
			c.Close()
			return
		}
		f.total.Add(1)
		f.open.Add(1)
		f.wg.Add(1)
		go f.handle(c, remote)
	}
}

func (f *forwarder) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// track registers c for close; false once the forwarder is closing.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *forwarder) handle(local net.Conn, remote string) {
	defer f.wg.Done()
	defer f.open.Add(-1)
	defer f.untrack(local)
	rc, err := f.d.DialContext(f.ctx, "tcp", remote)
	if err != nil {
		f.bad.Add(1)
		if f.ctx.Err() == nil {
			fmt.Fprintf(f.errOut, "jumpless: %s: connection from %s to %s failed: %s\n", f.cmd, local.RemoteAddr(), remote, oneLine(err.Error()))
		}
		return
	}
	if !f.track(rc) {
		rc.Close()
		return
	}
	defer f.untrack(rc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(countWriter{rc, &f.sent}, local); err != nil {
			// The tunnel failed under the upload (or the local client
			// reset): the local client must not take the cut for a clean
			// end.
			reset(local)
			rc.Close()
			return
		}
		closeWrite(rc)
	}()
	if _, err := io.Copy(countWriter{local, &f.received}, rc); err != nil {
		// Only the far end's EOF is a clean end (io.Copy returns nil for
		// it); a tunnel that died (tunnel.ErrTunnelDown) or was closed is
		// passed on as a reset, never as a FIN that would make a cut-off
		// stream look complete.
		reset(local)
		rc.Close()
	} else {
		closeWrite(local)
	}
	<-done
}

// reset closes c with a TCP reset (RST) instead of a FIN when it is a TCP
// connection: its peer's next read fails with "connection reset by peer".
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// closeWrite half-closes c (sends EOF, keeps reading) when it supports it.
// Without CloseWrite nothing is done: closing would drop data still on its
// way back; the connection is closed when the other direction ends or the
// forwarder closes. A connection that has CloseWrite but no half-close
// (direct mode: errors.ErrUnsupported) is closed, as AWS's plugin does:
// either side's EOF ends the forwarded connection.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); errors.Is(err, errors.ErrUnsupported) {
			_ = c.Close()
		}
	}
}

// close stops accepting, resets every connection still open (the tunnel is
// going away under it) and waits for the forwarder's goroutines.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	f.cancel()
	for _, ln := range f.lns {
		ln.Close()
	}
	for _, c := range conns {
		// Connections still open are cut: local clients see a reset.
		reset(c)
	}
	f.wg.Wait()
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// progressLine is the live status line shown on a terminal.
func (f *forwarder) progressLine(start time.Time) string {
	return fmt.Sprintf("%s up · conns %d open, %d total · ↑ %s ↓ %s",
		time.Since(start).Round(time.Second), f.open.Load(), f.total.Load(),
		humanBytes(f.sent.Load()), humanBytes(f.received.Load()))
}

// summary is printed when the forwarder closes.
func (f *forwarder) summary() string {
	s := fmt.Sprintf("%d connections, sent %s, received %s", f.total.Load(), humanBytes(f.sent.Load()), humanBytes(f.received.Load()))
	if n := f.bad.Load(); n > 0 {
		s += fmt.Sprintf(", %d failed", n)
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
