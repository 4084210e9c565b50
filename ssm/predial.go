package ssm

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// predial is the data channel's network connection (TCP, and TLS for
// wss), opened while StartSession runs to the host the StreamUrl is
// expected to name. When the StreamUrl names that host, the WebSocket
// handshake starts on it at once: the two round trips of TCP and TLS are
// spent in parallel with StartSession's instead of after it. When it does
// not (or the dial failed), the connection is closed unused and the
// WebSocket is dialed as usual; a wrong guess costs one idle connection,
// never an error.
type predial struct {
	scheme, addr string // "ws" or "wss"; host:port
	cancel       context.CancelFunc
	done         chan struct{}
	conn         net.Conn // after done: the TLS conn (wss) or bc (ws)
	bc           *batchConn
	err          error
	taken        bool
}

// streamGuess returns where the StreamUrl of c's sessions probably points:
// for AWS's endpoints "ssm.<region>.<domain>" it is
// "ssmmessages.<region>.<domain>"; for any other endpoint (the emulator,
// LocalStack) the endpoint's own host. ok is false when there is no
// endpoint to guess from.
func streamGuess(c *Config) (scheme, addr string, ok bool) {
	ep := c.Endpoint
	if ep == "" && c.AWS.BaseEndpoint != nil {
		ep = *c.AWS.BaseEndpoint
	}
	if ep == "" {
		if c.API != nil || c.AWS.Region == "" {
			return "", "", false
		}
		ep = "https://ssm." + c.AWS.Region + ".amazonaws.com"
	}
	u, err := url.Parse(ep)
	if err != nil || u.Hostname() == "" {
		return "", "", false
	}
	host, port := u.Hostname(), u.Port()
	switch u.Scheme {
	case "https":
		scheme = "wss"
		if port == "" {
			port = "443"
		}
	case "http":
		scheme = "ws"
		if port == "" {
			port = "80"
		}
	default:
		return "", "", false
	}
	if rest, ok := strings.CutPrefix(host, "ssm."); ok {
		host = "ssmmessages." + rest
	}
	return scheme, net.JoinHostPort(host, port), true
}

// startPredial starts dialing the guessed data-channel host, unless there
// is no guess or a proxy would be used for it (gorilla/websocket then
// dials the proxy). It returns nil when it does not dial.
func startPredial(ctx context.Context, c *Config) *predial {
	scheme, addr, ok := streamGuess(c)
	if !ok {
		return nil
	}
	httpScheme := "https"
	if scheme == "ws" {
		httpScheme = "http"
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: httpScheme, Host: addr}}); p != nil || err != nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	p := &predial{scheme: scheme, addr: addr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var nd net.Dialer
		nc, err := nd.DialContext(pctx, "tcp", addr)
		if err != nil {
			p.err = err
			return
		}
		bc := newBatchConn(nc)
		if scheme == "ws" {
			p.conn, p.bc = bc, bc
			return
		}
		host, _, _ := net.SplitHostPort(addr)
		tc := tls.Client(bc, &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12, ServerName: host})
		if err := tc.HandshakeContext(pctx); err != nil {
			_ = nc.Close()
			p.err = err
			return
		}
		p.conn, p.bc = tc, bc
	}()
	return p
}

// take returns the pre-dialed connection if streamURL names its host,
// waiting for the dial to finish (bounded by ctx). ok is false otherwise.
func (p *predial) take(ctx context.Context, streamURL string) (conn net.Conn, bc *batchConn, ok bool) {
	if p == nil || p.taken {
		return nil, nil, false
	}
	u, err := url.Parse(streamURL)
	if err != nil || u.Scheme != p.scheme {
		return nil, nil, false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443"}[u.Scheme]
	}
	if net.JoinHostPort(u.Hostname(), port) != p.addr {
		return nil, nil, false
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, nil, false
	}
	if p.err != nil {
		return nil, nil, false
	}
	p.taken = true
	return p.conn, p.bc, true
}

// discard stops the dial and closes the connection unless it was taken. It
// waits for the dialing goroutine.
func (p *predial) discard() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	if !p.taken && p.conn != nil {
		_ = p.conn.Close()
	}
}
