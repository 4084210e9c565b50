package ssm

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/internal/deadline"
	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Stats are counters of one session. Byte and message counts are of stream
// data (payload type Output), first transmissions only.
type Stats struct {
	BytesSent        int64 // payload bytes handed to the data channel
	BytesReceived    int64 // payload bytes accepted from the agent
	MessagesSent     int64 // data messages sent (first transmissions)
	MessagesReceived int64 // data messages accepted
	AcksSent         int64 // acknowledgements sent, duplicates' included
	AcksReceived     int64 // acknowledgements received
	Retransmissions  int64 // messages sent again (timeout, fast retransmit, reconnect)
	Duplicates       int64 // received messages already accepted (re-acknowledged)
	OutOfOrder       int64 // messages parked in the reorder buffer
	DroppedUnacked   int64 // received messages dropped unacknowledged (reorder buffer or ack backlog full); the agent resends them
	MalformedDropped int64 // frames dropped because they failed to decode or validate
	Reconnects       int64 // data-channel WebSockets re-established
	Unacked          int   // messages currently awaiting acknowledgement
	RTO              time.Duration
	SRTT             time.Duration
}

// Addr is the address of either end of a Session.
type Addr struct {
	SessionID string
	Target    string // empty for the local end
	Port      int
}

// Network returns "ssm".
func (a Addr) Network() string { return "ssm" }

// String returns "target:port", or "ssm-session/<id>" for the local end.
func (a Addr) String() string {
	if a.Target == "" {
		return "ssm-session/" + a.SessionID
	}
	return a.Target + ":" + strconv.Itoa(a.Port)
}

// Session is one Session Manager session carrying a single TCP stream to
// the target (AWS-StartSSHSession and other single-stream port documents).
// It implements net.Conn; it is safe for concurrent use.
type Session struct {
	cfg       Config
	api       API
	release   func()
	log       *slog.Logger
	id        string
	streamURL string
	clientID  string

	ctx    context.Context // session lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup // supervisor and retransmit timer

	wkick  chan struct{} // wakes the writer
	rkick  chan struct{} // wakes Read
	wspace chan struct{} // wakes Write (write buffer drained)
	rspace chan struct{} // wakes the websocket reader (read buffer drained)
	hsDone chan struct{} // closed at HandshakeComplete
	hsFail chan struct{} // closed when the handshake failed
	done   chan struct{}
	rdl    deadline.Deadline
	wdl    deadline.Deadline

	closeOnce sync.Once
	closeErr  error

	progress atomic.Int64 // unix nanos of the agent's last stream message that made progress (LastProgress)

	mu           sync.Mutex
	conn         *wsConn // nil while reconnecting
	agentVersion string
	properties   map[string]string
	sawSession   bool // a Port SessionType action was accepted
	handshook    bool
	hsErr        error
	holdReleased bool
	holdTimer    *time.Timer
	paused       bool
	closing      bool  // Close was called
	err          error // terminal error, set once

	pending     []byte // written, not yet sent
	poff        int
	nextSeq     int64
	win         sendWindow
	fastFrom    int64 // next sequence number to consider for fast retransmit
	resendQ     fifo[*outMsg]
	ackQ        fifo[ackItem]
	ctrlQ       fifo[ctrlItem]
	free        []*outMsg
	rto         rtoEstimator
	expected    int64
	dupCredited int64 // highest duplicate sequence number counted as progress
	reorder     map[int64]inMsg
	rbuf        []byte // accepted, not yet Read
	roff        int
	st          Stats
	lastBackoff time.Time

	// owned by whoever holds wtok (the writer goroutine, or the reader
	// sending acknowledgements inline)
	wtok       sync.Mutex
	rng        *rand.ChaCha8
	ackPayload []byte
	ackFrame   []byte

	ackInline bool // reader goroutine only: it sends the acks of this frame itself
}

// maxAckQueue bounds acknowledgements waiting for the writer; beyond it new
// data messages are dropped unacknowledged (the agent resends them).
const maxAckQueue = 1 << 20

// Dial starts a session on cfg.Target, opens its data channel and completes
// the agent handshake. ctx bounds all of that; it does not bound the
// returned session. On any failure after StartSession succeeded, Dial calls
// TerminateSession (with a fresh context bounded by cfg.CloseTimeout) and
// leaves no goroutine or connection behind.
//
// cfg is checked first, as by [Config.Validate]; a bad Config costs no
// network call. A tag selector target ("tag:Name=etl-bastion"), or an
// instance id with cfg.CheckTarget, is resolved and checked first with
// DescribeInstanceInformation (see [ResolveTarget]); its errors are
// [*TargetError]s and no session is started for them.
//
// Cancelling ctx never loses a session: once the StartSession request may
// have reached the service, Dial waits for its response (at most
// cfg.CloseTimeout after ctx is done, StartSessionTimeout in all) and
// terminates the session it names before returning ctx's error.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ssm: dial %s: %w", c.Target, err)
	}
	api, release := c.API, func() {}
	if api == nil {
		// Ask the local provider first: its failure is not the service's
		// answer and must not read like one. (Anonymous credentials make
		// the SDK send unsigned requests; they have nothing to retrieve.)
		anonymous := aws.IsCredentialsProvider(c.AWS.Credentials, aws.AnonymousCredentials{})
		if _, err := c.AWS.Credentials.Retrieve(ctx); err != nil && !anonymous {
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("ssm: dial %s: %w", c.Target, cerr)
			}
			return nil, &CredentialsError{Err: err}
		}
		api, release = newAPI(&c)
	}
	if IsSelector(c.Target) || c.CheckTarget || c.StartStopped {
		inst, err := resolveTarget(ctx, api, &c)
		if err != nil {
			release()
			return nil, err
		}
		c.Logger.Debug("ssm: target resolved", "target", c.Target, "instance", inst.ID)
		c.Target = inst.ID
	}
	pre := startPredial(ctx, &c) // the data channel's TCP and TLS, during StartSession
	out, err := startSessionOwned(ctx, api, &c)
	if err != nil {
		pre.discard()
		release()
		return nil, err
	}
	s := newSession(c, api, release, aws.ToString(out.SessionId), aws.ToString(out.StreamUrl))
	s.log.Debug("ssm: session started", "session", s.id, "target", c.Target)
	err = s.open(ctx, aws.ToString(out.TokenValue), pre)
	pre.discard() // closes it unless the data channel took it
	if err != nil {
		s.abort(err)
		return nil, err
	}
	return s, nil
}

func newSession(c Config, api API, release func(), id, streamURL string) *Session {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		cfg:       c,
		api:       api,
		release:   release,
		log:       c.Logger.With("session", id),
		id:        id,
		streamURL: streamURL,
		clientID:  uuid.NewString(),
		ctx:       ctx,
		cancel:    cancel,
		wkick:     make(chan struct{}, 1),
		rkick:     make(chan struct{}, 1),
		wspace:    make(chan struct{}, 1),
		rspace:    make(chan struct{}, 1),
		hsDone:    make(chan struct{}),
		hsFail:    make(chan struct{}),
		done:      make(chan struct{}),
		rdl:       deadline.Make(),
		wdl:       deadline.Make(),
		rto:       newRTO(c.MinRTO, c.MaxRTO),
		reorder:   make(map[int64]inMsg),
		rng:       rand.NewChaCha8(seed),
	}
	return s
}

// open dials the data channel and waits for the handshake.
func (s *Session) open(ctx context.Context, token string, pre *predial) error {
	c, err := s.dialWS(ctx, token, pre)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("ssm: dial session %s: %w", s.id, ctx.Err())
		}
		return &DataChannelError{SessionID: s.id, Err: err}
	}
	s.wg.Add(2)
	go s.supervise(c)
	go s.retransmitLoop()

	t := time.NewTimer(s.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-s.hsDone:
		return nil
	case <-s.hsFail:
		s.mu.Lock()
		err := s.hsErr
		s.mu.Unlock()
		// Give the response that tells the agent why a moment to be delivered.
		s.drain(ctx, time.Second, false)
		return err
	case <-s.done:
		s.mu.Lock()
		err, hsErr := s.err, s.hsErr
		s.mu.Unlock()
		if hsErr != nil {
			// Our handshake failure ended the session (the agent closed the
			// channel on our response) before this select saw hsFail: that
			// failure is the reason.
			return hsErr
		}
		return &HandshakeError{SessionID: s.id, Reason: "the session ended before the handshake completed", Err: err}
	case <-ctx.Done():
		return fmt.Errorf("ssm: dial session %s: %w", s.id, ctx.Err())
	case <-t.C:
		return &HandshakeError{SessionID: s.id, Timeout: true,
			Reason: fmt.Sprintf("the agent did not complete the handshake within %v; check that the SSM agent on %s is running, connected and up to date", s.cfg.HandshakeTimeout, s.cfg.Target)}
	}
}

// abort tears down a session that Dial will not return and terminates it
// at the service.
func (s *Session) abort(err error) {
	s.fail(err)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	if terr := terminateSession(ctx, s.api, s.id); terr != nil {
		s.log.Warn("ssm: TerminateSession after failed dial", "err", terr)
	}
	s.rdl.Stop()
	s.wdl.Stop()
	s.release()
}

// fail ends the session with err (the first error wins).
func (s *Session) fail(err error) {
	s.mu.Lock()
	s.failLocked(err)
	s.mu.Unlock()
}

func (s *Session) failLocked(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	close(s.done)
	if s.conn != nil {
		if s.closing {
			// Close is under way: say goodbye and let runConn close the
			// socket once the peer has (see there), so that no unread
			// frame turns the close into a reset that drops the goodbye.
			// The goodbye goes before s.cancel: the cancel wakes
			// runConn and the writer, which close the socket at once
			// unless the goodbye has been said (under load they won
			// that race and the service saw 1006).
			s.conn.goodbye()
		} else {
			s.conn.fail(err)
		}
	}
	s.cancel()
	if s.holdTimer != nil {
		s.holdTimer.Stop()
	}
	kick(s.rkick)
	kick(s.wspace)
	kick(s.wkick)
}

// kick wakes the waiter on c without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Target returns the target instance id.
func (s *Session) Target() string { return s.cfg.Target }

// AgentVersion returns the agent version from its HandshakeRequest.
func (s *Session) AgentVersion() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agentVersion
}

// Done returns a channel that is closed when the session has ended (Close,
// channel_closed from the service, or an unrecoverable data-channel loss).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it is open. After Close it
// is ErrClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// LastProgress returns when the data channel last received a stream data
// message from the agent that made progress; the zero time if none yet.
// Progress is a message not received before (in order or parked out of
// order), or a duplicate with a higher sequence number than every
// duplicate counted before: the agent resends a message whose
// acknowledgement was lost, only the oldest unacknowledged one, so while
// our acknowledgements get through its duplicates climb. Resending the same
// messages again (an agent that hears nothing from us) is not progress.
//
// While it keeps moving the session is alive even if the stream is stalled
// behind a gap: after a WebSocket loss the agent repairs lost messages one
// per 100 ms to 1 s (reference §6.5), so a protocol running over the
// session (SSH keepalives, package sshx) may wait minutes for a reply that
// is queued behind the repair. sshx.Client consults it for that reason.
func (s *Session) LastProgress() time.Time {
	if n := s.progress.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Unacked = s.win.n
	st.RTO = s.rto.rto
	st.SRTT = s.rto.srtt
	return st
}

// LocalAddr returns the local end: an Addr naming the session.
func (s *Session) LocalAddr() net.Addr { return Addr{SessionID: s.id} }

// RemoteAddr returns target:port as an Addr.
func (s *Session) RemoteAddr() net.Addr {
	return Addr{SessionID: s.id, Target: s.cfg.Target, Port: s.cfg.PortNumber}
}

// SetDeadline sets the read and write deadlines.
func (s *Session) SetDeadline(t time.Time) error {
	s.rdl.Set(t)
	s.wdl.Set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read; expired Reads return an error
// matching os.ErrDeadlineExceeded.
func (s *Session) SetReadDeadline(t time.Time) error { s.rdl.Set(t); return nil }

// SetWriteDeadline sets the deadline for Write; expired Writes return an
// error matching os.ErrDeadlineExceeded.
func (s *Session) SetWriteDeadline(t time.Time) error { s.wdl.Set(t); return nil }

// Read reads stream bytes from the target. Once the session has ended it
// returns the bytes already received, then why it ended: never io.EOF,
// because the service's channel_closed does not say whether the target
// closed the connection or the session was terminated (by TerminateSession,
// a timeout, or the agent); a short stream must not look complete. The
// error is a *ChannelClosedError (matching ErrSessionTerminated) after
// channel_closed, one matching ErrSessionGone or ErrReconnect when the data
// channel was lost for good, or ErrClosed (matching net.ErrClosed) after
// Close.
func (s *Session) Read(p []byte) (int, error) {
	for {
		if deadline.IsClosed(s.rdl.Wait()) {
			return 0, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return 0, ErrClosed
		}
		if n := len(s.rbuf) - s.roff; n > 0 {
			k := copy(p, s.rbuf[s.roff:])
			s.roff += k
			if s.roff == len(s.rbuf) {
				s.rbuf = s.rbuf[:0]
				s.roff = 0
			} else {
				kick(s.rkick) // more for a concurrent reader
			}
			s.mu.Unlock()
			kick(s.rspace)
			return k, nil
		}
		if s.err != nil {
			err := s.readErrLocked()
			s.mu.Unlock()
			return 0, err
		}
		s.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-s.rkick:
		case <-s.rdl.Wait():
		case <-s.done:
		}
	}
}

func (s *Session) readErrLocked() error { return s.err }

// Write queues p for the target. It blocks while the write buffer is full.
// The bytes are sent in messages of up to Config.MaxPayload bytes as soon as
// the handshake, the first-write hold and the send window allow.
func (s *Session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if deadline.IsClosed(s.wdl.Wait()) {
			return n, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return n, ErrClosed
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return n, err
		}
		if space := s.cfg.WriteBuffer - (len(s.pending) - s.poff); space > 0 {
			k := min(space, len(p))
			if len(s.pending)+k > cap(s.pending) && s.poff > 0 {
				m := copy(s.pending, s.pending[s.poff:])
				s.pending = s.pending[:m]
				s.poff = 0
			}
			s.pending = append(s.pending, p[:k]...)
			n += k
			p = p[k:]
			s.mu.Unlock()
			kick(s.wkick)
			continue
		}
		s.mu.Unlock()
		select {
		case <-s.wspace:
		case <-s.wdl.Wait():
		case <-s.done:
		}
	}
	return n, nil
}

// Close ends the session: it waits (bounded) for written data to be
// acknowledged, sends the TerminateSession flag, calls the TerminateSession
// API and releases everything. It is idempotent; later calls return the
// first call's result. The whole call is bounded by Config.CloseTimeout.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Session) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	s.mu.Lock()
	alive := s.err == nil
	s.closing = true
	s.mu.Unlock()
	kick(s.rkick)
	kick(s.wspace)
	if alive {
		s.drain(ctx, min(s.cfg.CloseTimeout/2, 2*time.Second), true)
		s.mu.Lock()
		if s.err == nil {
			if s.cfg.DisconnectOnClose {
				s.ctrlQ.push(ctrlItem{ptype: wire.PayloadFlag, payload: wire.FlagPayload(wire.DisconnectToPort)})
			}
			s.ctrlQ.push(ctrlItem{ptype: wire.PayloadFlag, payload: wire.FlagPayload(wire.TerminateSession)})
		}
		s.mu.Unlock()
		kick(s.wkick)
		s.drain(ctx, min(s.cfg.CloseTimeout/4, time.Second), false)
		// A clean goodbye: a close frame (1000) after the flag, so the
		// gateway sees a normal closure rather than 1006.
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		if c != nil {
			c.goodbye()
		}
	}
	err := terminateSession(ctx, s.api, s.id)
	s.fail(ErrClosed)
	s.wg.Wait()
	s.rdl.Stop()
	s.wdl.Stop()
	s.release()
	if err != nil {
		s.log.Debug("ssm: TerminateSession", "err", err)
	}
	return err
}

// drain waits up to d for everything queued to be sent and acknowledged
// (including, with data, the write buffer).
func (s *Session) drain(ctx context.Context, d time.Duration, data bool) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		s.mu.Lock()
		empty := s.win.n == 0 && s.ctrlQ.len() == 0 && (!data || len(s.pending) == s.poff)
		dead := s.err != nil
		s.mu.Unlock()
		if empty || dead {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// newID returns a random (version 4) message id. Holder of wtok only.
func (s *Session) newID() uuid.UUID {
	var u uuid.UUID
	binary.LittleEndian.PutUint64(u[:8], s.rng.Uint64())
	binary.LittleEndian.PutUint64(u[8:], s.rng.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

var _ net.Conn = (*Session)(nil)

// wsConn is one data-channel WebSocket and the goroutines using it.
type wsConn struct {
	ws   *websocket.Conn
	bc   *batchConn // the socket under ws (and its TLS)
	dead chan struct{}

	lastDeadline time.Time // last write-deadline extension (holder of Session.wtok)

	draining atomic.Bool // a write failed: the reader only drains what is left
	once     sync.Once
	byeOnce  sync.Once
	saidBye  atomic.Bool
	err      error
}

func newWSConn(ws *websocket.Conn, bc *batchConn) *wsConn {
	return &wsConn{ws: ws, bc: bc, dead: make(chan struct{})}
}

// goodbye sends a close frame (1000, normal closure), once, bounded by a
// short deadline: the session is over, the socket is about to close.
func (c *wsConn) goodbye() {
	c.byeOnce.Do(func() {
		c.saidBye.Store(true)
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(200*time.Millisecond))
	})
}

// drainTime bounds how long the reader may still take frames already
// received after a write on the socket failed.
const drainTime = 200 * time.Millisecond

// drain gives the reader drainTime to read what is left in the socket; it
// reports false if the connection is already dead.
func (c *wsConn) drain() bool {
	select {
	case <-c.dead:
		return false
	default:
	}
	if !c.draining.Swap(true) {
		_ = c.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(drainTime))
	}
	return true
}

// fail marks the connection dead and closes the socket.
func (c *wsConn) fail(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.dead)
		_ = c.ws.Close()
	})
}
