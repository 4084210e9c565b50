package sshx

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

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
// DialContext returns when the server has connected to addr, refused, or
// ctx is done.
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
		if oc, ok := r.err.(*ssh.OpenChannelError); ok {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: fmt.Errorf("sshx: server could not connect to %s: %s (%v)", addr, oc.Message, oc.Reason)}
		}
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: r.err}
	}
	tc := newTunnelConn(c, r.ch, r.reqs, raddr)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		r.ch.Close()
		tc.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: c.closedErr()}
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

// tunnelConn is a direct-tcpip channel as a net.Conn. The user's side is
// one end of a net.Pipe (which provides deadlines); two goroutines copy
// between the other end and the SSH channel, counting bytes.
type tunnelConn struct {
	net.Conn // user end of the pipe
	inner    net.Conn
	ch       ssh.Channel
	c        *Client
	raddr    net.Addr
	once     sync.Once
}

const copyBufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// newTunnelConn starts the copy goroutines; the dial's WaitGroup slot
// (track) is handed to them.
func newTunnelConn(c *Client, ch ssh.Channel, reqs <-chan *ssh.Request, raddr net.Addr) *tunnelConn {
	user, inner := net.Pipe()
	tc := &tunnelConn{Conn: user, inner: inner, ch: ch, c: c, raddr: raddr}
	c.openConns.Add(1)
	c.totalConns.Add(1)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); ssh.DiscardRequests(reqs) }()
	go func() { // server → user
		defer wg.Done()
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf := *bp
		for {
			n, err := ch.Read(buf)
			if n > 0 {
				c.bytesReceived.Add(int64(n))
				if _, werr := inner.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		inner.Close() // user sees EOF after the data
	}()
	go func() { // user → server
		defer wg.Done()
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf := *bp
		for {
			n, err := inner.Read(buf)
			if n > 0 {
				if _, werr := ch.Write(buf[:n]); werr != nil {
					break
				}
				c.bytesSent.Add(int64(n))
			}
			if err != nil {
				break
			}
		}
		ch.Close()
		inner.Close()
	}()
	go func() { // owner of the three above; holds the dial's WaitGroup slot
		wg.Wait()
		c.mu.Lock()
		delete(c.conns, tc)
		c.mu.Unlock()
		c.openConns.Add(-1)
		c.untrack()
	}()
	return tc
}

// RemoteAddr returns the address passed to DialContext.
func (tc *tunnelConn) RemoteAddr() net.Addr { return tc.raddr }

// LocalAddr returns a placeholder address ("sshx:direct-tcpip").
func (tc *tunnelConn) LocalAddr() net.Addr { return localAddr }

// Close closes the connection and its SSH channel.
func (tc *tunnelConn) Close() error {
	err := net.ErrClosed
	tc.once.Do(func() {
		err = tc.Conn.Close()
		tc.ch.Close()
	})
	return err
}
