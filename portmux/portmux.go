package portmux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"

	"github.com/jumpless/jumpless/link"
)

// Defaults.
const (
	// DefaultStreamBuffer is the per-stream receive buffer when
	// Config.StreamBuffer is zero: 20 s of one session's realistic rate
	// (≈ 0.7 MiB/s) plus headroom.
	DefaultStreamBuffer = 16 << 20
	// DefaultConnectErrorWait is how long a stream that ended before any
	// byte arrived waits for a late ConnectToPortError flag.
	DefaultConnectErrorWait = 250 * time.Millisecond
)

var (
	// ErrSessionDown is wrapped by every error of a Conn whose session
	// ended (the cause is wrapped too).
	ErrSessionDown = errors.New("portmux: port session ended")
	// ErrNoHalfClose is returned by Conn.CloseWrite: smux streams of AWS
	// port sessions have no half-close (§8.4). It also matches
	// errors.ErrUnsupported.
	ErrNoHalfClose error = noHalfClose{}
)

type noHalfClose struct{}

func (noHalfClose) Error() string {
	return "portmux: no half-close in port sessions: the agent closes the target connection on either side's FIN; close the connection instead"
}
func (noHalfClose) Is(target error) bool { return target == errors.ErrUnsupported }

// Config configures Client. Every zero value selects a documented default.
type Config struct {
	// Addr is the address the session's streams reach ("host:port" as the
	// instance resolves it), for errors and Conn.RemoteAddr. Required.
	Addr string

	// SessionID names the session in errors and logs. Empty: none.
	SessionID string

	// KeepAlive sends smux keep-alive frames every 10 s and closes the
	// session after 30 s without a frame, as AWS's plugin does for agents
	// ≤ 3.1.1511.0 (§8.1). False: disabled (the agent then disables its own).
	KeepAlive bool

	// StreamBuffer bounds the bytes received for one stream and not yet
	// Read. Zero: DefaultStreamBuffer.
	StreamBuffer int

	// ConnectErrors delivers one value per ConnectToPortError flag (see
	// link.PortMode). Nil: none are reported.
	ConnectErrors <-chan struct{}

	// ConnectErrorWait: see DefaultConnectErrorWait. Zero: that default.
	ConnectErrorWait time.Duration

	// Logger receives debug logs. Nil: none.
	Logger *slog.Logger
}

// Session is the client side of one mux port session.
type Session struct {
	cfg      Config
	l        net.Conn
	linkDone <-chan struct{} // the link's Done, if it has one
	linkErr  chan error      // the first read error of the link
	mux      *smux.Session
	log      *slog.Logger
	done     chan struct{}
	wg       sync.WaitGroup

	mu        sync.Mutex
	connErrs  int           // ConnectToPortError flags not yet given to a stream
	errKick   chan struct{} // closed and replaced when connErrs grows
	err       error         // why the session ended
	closed    bool
	closeOnce sync.Once

	open       atomic.Int64
	total      atomic.Int64
	pending    atomic.Int64
	bytesIn    atomic.Int64
	bytesOut   atomic.Int64
	connFailed atomic.Int64
}

// Stats is a snapshot of a Session's activity.
type Stats struct {
	OpenConns      int64 // streams open now
	TotalConns     int64 // streams opened since Client
	ConnectErrors  int64 // streams the agent could not connect
	BytesSent      int64 // bytes written by Conns
	BytesReceived  int64 // bytes read by Conns
	PendingOpening int64 // Open calls in progress
}

// Client starts the smux v1 client over l, a port session in mux mode. The
// Session owns l: Close closes it.
func Client(l net.Conn, cfg Config) (*Session, error) {
	if cfg.Addr == "" {
		return nil, errors.New("portmux: Config.Addr is required")
	}
	if cfg.StreamBuffer < 0 || cfg.ConnectErrorWait < 0 {
		return nil, errors.New("portmux: Config.StreamBuffer and ConnectErrorWait must not be negative")
	}
	if cfg.StreamBuffer == 0 {
		cfg.StreamBuffer = DefaultStreamBuffer
	}
	if cfg.ConnectErrorWait == 0 {
		cfg.ConnectErrorWait = DefaultConnectErrorWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sc := smux.DefaultConfig() // the values AWS's plugin and agent use (§8.4)
	sc.Version = 1
	sc.KeepAliveDisabled = !cfg.KeepAlive
	sc.KeepAliveInterval = 10 * time.Second
	sc.KeepAliveTimeout = 30 * time.Second
	sc.MaxFrameSize = 32768
	sc.MaxReceiveBuffer = 4 << 20
	sc.MaxStreamBuffer = 65536
	s := &Session{cfg: cfg, l: l, log: cfg.Logger, done: make(chan struct{}), errKick: make(chan struct{})}
	s.linkErr = make(chan error, 1)
	mux, err := smux.Client(eofIsDown{l, s.linkErr}, sc)
	if err != nil {
		return nil, fmt.Errorf("portmux: %w", err)
	}
	s.mux = mux
	if dl, ok := l.(interface{ Done() <-chan struct{} }); ok {
		s.linkDone = dl.Done()
	}
	s.wg.Go(s.watch)
	return s, nil
}

// eofIsDown makes a link's io.EOF (the session ended without a reason)
// an error, so that smux never hands io.EOF to a stream for a dead session.
// It also reports the first read error to the session's watcher (smux does
// not close its session when its connection fails).
type eofIsDown struct {
	net.Conn
	failed chan<- error
}

func (c eofIsDown) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		err = errLinkEOF
	}
	if err != nil {
		select {
		case c.failed <- err:
		default:
		}
	}
	return n, err
}

var errLinkEOF = errors.New("session ended without a reason")

// watch counts ConnectToPortError flags and records the session's end.
func (s *Session) watch() {
	for {
		select {
		case _, ok := <-s.cfg.ConnectErrors:
			if !ok {
				s.cfg.ConnectErrors = nil
				continue
			}
			s.mu.Lock()
			s.connErrs++
			close(s.errKick)
			s.errKick = make(chan struct{})
			s.mu.Unlock()
		case <-s.mux.CloseChan():
			s.end(s.cause())
			return
		case <-s.linkDone:
			// smux does not close itself when its connection fails.
			s.end(s.cause())
			s.mux.Close()
			return
		case err := <-s.linkErr:
			cause := s.cause()
			if _, generic := cause.(genericClose); generic {
				cause = err
			}
			s.end(cause)
			s.mux.Close()
			return
		}
	}
}

// cause explains a closed smux session: the link's error if it has one.
func (s *Session) cause() error {
	if dc, ok := s.l.(interface{ Err() error }); ok {
		if err := dc.Err(); err != nil {
			return err
		}
	}
	if s.mux.IsClosed() {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return net.ErrClosed
		}
	}
	return genericClose{}
}

// genericClose is the cause when nothing more telling is known.
type genericClose struct{}

func (genericClose) Error() string { return "smux session closed" }

func (s *Session) end(cause error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = cause
	}
	s.mu.Unlock()
	s.closeOnce.Do(func() { close(s.done) })
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session is up, then why it ended.
func (s *Session) Err() error {
	select {
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.err
	default:
		return nil
	}
}

// downErr wraps err (a stream's failure) as a session-down error when the
// session is gone; it prefers the link's own cause (e.g. a
// *link.ForbiddenError) to what smux saw.
func (s *Session) downErr(err error) error {
	if !s.isDown() && !errors.Is(err, errLinkEOF) {
		return err
	}
	cause := s.cause()
	var fe *link.ForbiddenError
	var ce *link.ConnectError
	if errors.As(cause, &fe) || errors.As(cause, &ce) {
		return cause
	}
	return fmt.Errorf("%w (session %s to %s): %w", ErrSessionDown, s.cfg.SessionID, s.cfg.Addr, cause)
}

// isDown reports whether the session or its link has ended.
func (s *Session) isDown() bool {
	if s.mux.IsClosed() || len(s.linkErr) > 0 {
		return true
	}
	select {
	case <-s.done:
		return true
	case <-s.linkDone:
		return true
	default:
		return false
	}
}

// Load is the number of open and opening streams.
func (s *Session) Load() int64 { return s.open.Load() + s.pending.Load() }

// Stats returns a snapshot.
func (s *Session) Stats() Stats {
	return Stats{
		OpenConns: s.open.Load(), TotalConns: s.total.Load(), ConnectErrors: s.connFailed.Load(),
		BytesSent: s.bytesOut.Load(), BytesReceived: s.bytesIn.Load(), PendingOpening: s.pending.Load(),
	}
}

// Open opens a stream: the agent dials Config.Addr for it. It returns once
// the stream's SYN is queued; the agent does not confirm the connect, so a
// failed connect is reported by the Conn's Read (and by Ready) as a
// *link.ConnectError.
func (s *Session) Open(ctx context.Context) (*Conn, error) {
	s.pending.Add(1)
	defer s.pending.Add(-1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("portmux: %w", net.ErrClosed)
	}
	s.mu.Unlock()
	type res struct {
		st  *smux.Stream
		err error
	}
	// OpenStream only waits for its SYN to be written to the link, which
	// back-pressure can delay; bound that by ctx.
	ch := make(chan res, 1)
	s.wg.Go(func() {
		st, err := s.mux.OpenStream()
		ch <- res{st, err}
	})
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		s.wg.Go(func() {
			if r := <-ch; r.st != nil {
				r.st.Close()
			}
		})
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, s.downErr(fmt.Errorf("portmux: open stream: %w", r.err))
	}
	c := newConn(s, r.st)
	s.open.Add(1)
	s.total.Add(1)
	s.wg.Go(c.pump)
	return c, nil
}

// takeConnectError consumes one pending ConnectToPortError, waiting up to
// ConnectErrorWait for one to arrive.
func (s *Session) takeConnectError() bool {
	timer := time.NewTimer(s.cfg.ConnectErrorWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.connErrs > 0 {
			s.connErrs--
			s.mu.Unlock()
			s.connFailed.Add(1)
			return true
		}
		kick := s.errKick
		s.mu.Unlock()
		select {
		case <-kick:
		case <-timer.C:
			return false
		case <-s.done:
			return false
		}
	}
}

// Close closes every stream, the smux session and the link. It is
// idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	_ = s.mux.Close() // closes the link too
	err := s.l.Close()
	s.end(net.ErrClosed)
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
