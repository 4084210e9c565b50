package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// Client is an SSH client connection over a caller-supplied net.Conn. It is
// safe for concurrent use.
type Client struct {
	ssh  *ssh.Client
	conn net.Conn
	cfg  Config
	log  *slog.Logger

	done      chan struct{} // closed when the SSH connection has ended
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
	// errFromTransport: err is a read or write failure of the transport
	// (transportConn), which the server's disconnect message may replace.
	errFromTransport bool
	wg               sync.WaitGroup // keepalive, waiter, per-channel goroutines

	mu     sync.Mutex
	conns  map[*tunnelConn]struct{}
	closed bool

	probeMu   sync.Mutex
	probeNext *probe // the liveness probe round callers join (not sent yet)
	probeBusy bool   // a caller is running probe rounds

	bytesSent, bytesReceived atomic.Int64
	openConns, totalConns    atomic.Int64
}

// Stats are cumulative counters of a Client's direct-tcpip connections.
type Stats struct {
	BytesSent     int64 // payload bytes written to the server over all channels
	BytesReceived int64 // payload bytes read from the server over all channels
	OpenConns     int64 // connections open now
	TotalConns    int64 // connections opened since NewClient
}

// NewClient runs the SSH handshake and authentication over conn (for
// instance an SSM session) and returns a client. addr names the server: it
// is passed to x/crypto/ssh and, unless cfg.HostKeyAlias is set, looked up
// in cfg.KnownHostsFile.
//
// NewClient honours ctx and cfg.HandshakeTimeout during the handshake. On
// any failure it closes conn and leaves no goroutine behind. Errors: see
// errors.go (*HostKeyError, *AuthError, *KeyError, ErrNoHostKeyCheck, ...).
func NewClient(ctx context.Context, conn net.Conn, addr string, cfg Config) (*Client, error) {
	c, err := newClient(ctx, conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func newClient(ctx context.Context, conn net.Conn, addr string, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	host := cfg.HostKeyAlias
	if host == "" {
		host = addr
	}
	hkcb, algos, err := hostKeyCallback(&cfg, host)
	if err != nil {
		return nil, err
	}
	auth, err := cfg.authSetup()
	if err != nil {
		return nil, err
	}
	defer auth.close() // the agent is only needed during authentication

	cc := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{auth.authMethod()},
		HostKeyCallback:   hkcb,
		HostKeyAlgorithms: algos,
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(hctx, func() { conn.Close() })
	log.Debug("sshx: handshake", "addr", addr, "user", cfg.User, "host_key_name", host)
	tc := &transportConn{Conn: conn}
	sc, chans, reqs, err := ssh.NewClientConn(tc, addr, cc)
	if !stop() {
		// The context ended during the handshake and conn was closed.
		if sc != nil {
			sc.Close()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sshx: handshake with %s: %w", addr, context.Cause(ctx))
		}
		return nil, fmt.Errorf("sshx: handshake with %s: no answer within HandshakeTimeout %v: %w", addr, cfg.HandshakeTimeout, context.DeadlineExceeded)
	}
	if err != nil {
		return nil, classifyHandshakeError(err, cfg.User, auth.methods)
	}
	c := &Client{
		ssh:   ssh.NewClient(sc, chans, reqs),
		conn:  conn,
		cfg:   cfg,
		log:   log,
		done:  make(chan struct{}),
		conns: make(map[*tunnelConn]struct{}),
	}
	tc.setClient(c)
	log.Info("sshx: connected", "addr", addr, "user", cfg.User, "server_version", string(sc.ServerVersion()))
	c.wg.Add(1)
	go c.wait()
	if cfg.KeepaliveInterval > 0 {
		c.wg.Add(1)
		go c.keepalive(cfg.KeepaliveInterval, cfg.KeepaliveTimeout)
	}
	return c, nil
}

// classifyHandshakeError turns x/crypto/ssh handshake errors into typed ones.
func classifyHandshakeError(err error, user string, methods []string) error {
	var he *HostKeyError
	if errors.As(err, &he) {
		return he
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return &AuthError{User: user, Methods: methods, Err: err}
	}
	return fmt.Errorf("sshx: handshake: %w", err)
}

// wait owns the end of the connection: it records why it ended and closes
// Done.
func (c *Client) wait() {
	defer c.wg.Done()
	err := c.ssh.Wait()
	if errors.Is(err, io.EOF) {
		err = io.EOF
	}
	if isDisconnect(err) {
		// The server said why it ended the connection. A transport
		// failure recorded before (writing to the socket the server
		// closed after its message) is only a consequence: the server's
		// reason replaces it.
		c.errMu.Lock()
		if c.err == nil || c.errFromTransport {
			c.err = lostError(err)
		}
		c.errMu.Unlock()
	}
	c.setErr(lostError(err))
	c.shutdown()
	c.log.Info("sshx: disconnected", "err", c.Err())
	close(c.done)
}

// setErr records the first reason the client ended.
func (c *Client) setErr(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
}

// closeWith ends the connection, recording err as the reason unless one is
// already set. It does not wait for goroutines.
func (c *Client) closeWith(err error) {
	c.setErr(err)
	c.shutdown()
}

func (c *Client) shutdown() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*tunnelConn, 0, len(c.conns))
	for tc := range c.conns {
		conns = append(conns, tc)
	}
	c.mu.Unlock()
	err := c.closedErr()
	for _, tc := range conns {
		tc.abort(err) // also unblocks a pump stuck on a user who stopped reading
	}
	c.ssh.Close()
}

// Close closes every channel and the SSH connection (and with it the
// underlying net.Conn), and waits for the client's goroutines. It is
// idempotent; after it Err returns ErrClosed unless the connection had
// already failed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeWith(ErrClosed)
		c.wg.Wait()
	})
	<-c.done
	return nil
}

// Done returns a channel closed when the connection has ended (Close,
// keepalive timeout, or the server or transport going away).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, then why it ended: ErrClosed
// after Close, an error wrapping ErrKeepaliveTimeout, or an error matching
// ErrConnectionLost that wraps the transport's error.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Stats returns the connection counters. It is cheap (atomic loads).
func (c *Client) Stats() Stats {
	return Stats{
		BytesSent:     c.bytesSent.Load(),
		BytesReceived: c.bytesReceived.Load(),
		OpenConns:     c.openConns.Load(),
		TotalConns:    c.totalConns.Load(),
	}
}

// SSHClient returns the underlying x/crypto/ssh client, for sessions or
// other channel types. Closing it closes c.
func (c *Client) SSHClient() *ssh.Client { return c.ssh }

// recordedErr returns why the client is ending, or nil while it is up. Unlike
// Err it does not wait for Done: the transport's failure is known here the
// moment the transport reports it, before x/crypto/ssh closes the channels.
func (c *Client) recordedErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// probe is one round of aliveAfter: a global request and its outcome.
type probe struct {
	done  chan struct{}
	alive bool
}

// aliveAfter reports whether the SSH connection was still up after the
// call began: it sends a global request (keepalive@openssh.com, which every
// server answers, OpenSSH with a failure) and waits for the answer.
// x/crypto/ssh handles the server's messages in order, so an answer proves
// that what came before it (a channel's EOF) was not the connection ending;
// false means the connection has ended. Callers that arrive while a
// request is in flight share the next one: it is sent after they called.
func (c *Client) aliveAfter() bool {
	c.probeMu.Lock()
	if c.probeNext == nil {
		c.probeNext = &probe{done: make(chan struct{})}
	}
	mine := c.probeNext
	if c.probeBusy {
		c.probeMu.Unlock()
		<-mine.done
		return mine.alive
	}
	c.probeBusy = true
	c.probeMu.Unlock()
	// This caller runs rounds until nobody waits for one; each ends when
	// the server answers or the connection ends.
	for {
		c.probeMu.Lock()
		r := c.probeNext
		c.probeNext = nil
		if r == nil {
			c.probeBusy = false
			c.probeMu.Unlock()
			break
		}
		c.probeMu.Unlock()
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		r.alive = err == nil
		close(r.done)
	}
	return mine.alive
}

// endReason is why the connection ended for a channel whose read failed
// with err when no reason was recorded yet. x/crypto/ssh closes every
// channel (reads return io.EOF, or the raw error of a failed window
// adjustment) before Wait reports why the connection ended, for instance
// when the server sent SSH_MSG_DISCONNECT, which the transport read without
// error: so an unexplained end is checked with aliveAfter. If the
// connection is up, err stands (io.EOF: the far end's EOF or close).
// Otherwise the answer is the client's reason, never io.EOF.
func (c *Client) endReason(err error) error {
	if cerr := c.recordedErr(); cerr != nil {
		return cerr
	}
	if c.aliveAfter() {
		return err
	}
	if cerr := c.recordedErr(); cerr != nil {
		return cerr // a transport write failed; the read side may still run
	}
	// The request failed because the connection layer ended, so Wait
	// returns and wait records the reason.
	<-c.done
	return c.Err()
}

// transportConn is the net.Conn under the SSH connection. It records the
// first read or write error as the client's reason before x/crypto/ssh sees
// it, so that the channels it then closes report that reason instead of a
// clean io.EOF.
type transportConn struct {
	net.Conn
	mu sync.Mutex
	c  *Client // nil during the handshake
}

func (t *transportConn) setClient(c *Client) {
	t.mu.Lock()
	t.c = c
	t.mu.Unlock()
}

func (t *transportConn) failed(err error) {
	t.mu.Lock()
	c := t.c
	t.mu.Unlock()
	if c != nil {
		c.errMu.Lock()
		if c.err == nil {
			c.err = lostError(err)
			c.errFromTransport = true
		}
		c.errMu.Unlock()
	}
}

// isDisconnect reports whether err is x/crypto/ssh's error for the
// server's SSH_MSG_DISCONNECT (an unexported type; its message is
// "ssh: disconnect, reason N: ...").
func isDisconnect(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "ssh: disconnect, reason ")
}

func (t *transportConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if err != nil {
		t.failed(err)
	}
	return n, err
}

func (t *transportConn) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	if err != nil {
		t.failed(err)
	}
	return n, err
}
