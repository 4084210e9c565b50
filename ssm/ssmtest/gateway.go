package ssmtest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// maxPendingFrames bounds the frames the gateway holds for a disconnected
// client (the agent's own outgoing buffer holds 100000).
const maxPendingFrames = 100000

// openTimeout bounds the wait for the OpenDataChannel frame after the
// websocket upgrade.
const openTimeout = 10 * time.Second

// endReason says how a session ended.
type endReason int

const (
	endTargetClosed  endReason = iota // target EOF (SSH document) or DisconnectToPort
	endFailed                         // dial failure, handshake timeout/failure, target error
	endTerminateFlag                  // client's TerminateSession flag
	endTerminateAPI                   // TerminateSession API
	endChannelClosed                  // CloseChannel (service-side channel_closed)
	endServerClosed                   // Server.Close
	endTimeout                        // IdleTimeout / MaxSessionDuration
)

// Outputs of service-side timeouts. The texts are what the AWS console and
// CLI show for these events (external; not in either AWS repository).
const (
	IdleTimeoutOutput = "Your session timed out due to inactivity and has been terminated."
	MaxDurationOutput = "Your session has reached the maximum session duration and has been terminated."
)

// clientConn is one client websocket attached to a session.
type clientConn struct {
	ws         *websocket.Conn
	wmu        sync.Mutex
	once       sync.Once
	stalled    atomic.Bool   // StallWebsocket: the path is a black hole
	dying      atomic.Bool   // KillWebsocket: frames cross into a dead socket
	peerClosed chan struct{} // closed when the reader stops (client close frame or error)
	lost       atomic.Int64  // frames (both directions) lost while dying
	lostAt     atomic.Int64  // unix nanos of the last one
	limit      int64         // KillLoss: frames the dying socket holds
	full       atomic.Bool   // the dying socket holds limit frames: the service has noticed
}

// errStalled is what write returns on a stalled websocket: the frame went
// into the black hole.
var errStalled = errors.New("ssmtest: websocket stalled")

// loseInSocket counts a frame lost in the dying socket.
func (c *clientConn) loseInSocket() {
	if c.lost.Add(1) == c.limit {
		c.full.Store(true)
		c.close() // the socket's buffers are full: it dies now
	}
	c.lostAt.Store(time.Now().UnixNano())
}

// errDying is what write returns on a dying websocket: the frame went into
// the kernel buffers of a socket that is about to die.
var errDying = errors.New("ssmtest: websocket dying")

func (c *clientConn) write(b []byte) error {
	if c.stalled.Load() {
		return errStalled
	}
	if c.dying.Load() {
		c.loseInSocket()
		return errDying
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// pingHandler answers PINGs like gorilla/websocket's default handler (and
// MGS), except on a stalled websocket, whose PINGs vanish.
func (c *clientConn) pingHandler(data string) error {
	if c.stalled.Load() || c.dying.Load() {
		return nil
	}
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	var ne net.Error
	if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
		return nil
	}
	return err
}

// close drops the TCP connection without a close frame, as both AWS peers do.
func (c *clientConn) close() { c.once.Do(func() { _ = c.ws.Close() }) }

// session is one Session Manager session: the service's view (token, client
// websocket) and the emulated agent.
type session struct {
	srv      *Server
	id       string
	target   string
	document string
	props    map[string]string
	addr     string
	started  time.Time
	ctx      context.Context
	cancel   context.CancelFunc
	agent    sessionAgent // the emulated agent, or a real one attached through MGS (mgs.go)

	mu        sync.Mutex
	token     string
	client    *clientConn
	clientID  string
	connected chan struct{} // closed when the first client websocket is accepted
	everConn  bool
	ended     bool
	endOnce   sync.Once

	lastData   atomic.Int64     // unix nanos of the last stream data crossing the gateway
	pending    [][]byte         // frames held for a disconnected client (BufferWhileDisconnected)
	unackedOut map[int64][]byte // output frames forwarded to the client and not acknowledged by it (BufferWhileDisconnected)
	flushing   bool             // pending is being written to a new websocket

	// strict-mode state (gateway reader; guarded by mu for reconnects)
	highestSeq  int64 // highest client input_stream_data seq seen (-1: none)
	hcDelivered bool  // HandshakeComplete written to the client
	hrDelivered bool  // HandshakeRequest written to the client
	frameIndex  int64
}

func (s *Server) newSession(target, doc string, props map[string]string, addr string, real *agentConn) (*session, error) {
	ss := &session{
		srv:        s,
		id:         "ssmtest-" + randHex(9)[:17],
		target:     target,
		document:   doc,
		props:      props,
		addr:       addr,
		started:    time.Now(),
		token:      newToken(),
		connected:  make(chan struct{}),
		highestSeq: -1,
		unackedOut: make(map[int64][]byte),
	}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	if real != nil {
		ss.agent = newRemoteAgent(ss, real)
	} else {
		ss.agent = newAgent(ss)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ss.cancel()
		return nil, errors.New("ssmtest: server closed")
	}
	s.sessions[ss.id] = ss
	s.mu.Unlock()
	s.st.sessionsStarted.Add(1)
	s.st.sessionsOpen.Add(1)
	if !ss.agent.start() {
		ss.finish(endServerClosed, "", false)
		return nil, errors.New("ssmtest: server closed")
	}
	ss.lastData.Store(time.Now().UnixNano())
	if s.cfg.IdleTimeout > 0 || s.cfg.MaxSessionDuration > 0 {
		s.goTracked(ss.watchTimeouts)
	}
	s.log.Info("ssmtest: session started", "session", ss.id, "target", target, "document", doc)
	return ss, nil
}

// watchTimeouts enforces IdleTimeout and MaxSessionDuration.
func (ss *session) watchTimeouts() {
	cfg := &ss.srv.cfg
	tick := time.Second
	for _, d := range []time.Duration{cfg.IdleTimeout / 4, cfg.MaxSessionDuration / 4} {
		if d > 0 && d < tick {
			tick = d
		}
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case now := <-t.C:
			if cfg.MaxSessionDuration > 0 && now.Sub(ss.started) >= cfg.MaxSessionDuration {
				ss.finish(endTimeout, MaxDurationOutput, false)
				return
			}
			if cfg.IdleTimeout > 0 && now.Sub(time.Unix(0, ss.lastData.Load())) >= cfg.IdleTimeout {
				ss.finish(endTimeout, IdleTimeoutOutput, false)
				return
			}
		}
	}
}

func (ss *session) streamURL() string {
	return ss.srv.StreamURL(ss.id)
}

func (ss *session) currentToken() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.token
}

// newToken issues a fresh token (ResumeSession); the previous one stops
// working. ok is false once the session has ended.
func (ss *session) newToken() (string, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return "", false
	}
	ss.token = newToken()
	return ss.token, true
}

func (ss *session) isEnded() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.ended
}

// serveDataChannel is the MGS data-channel endpoint:
// GET /v1/data-channel/<sessionId>?role=publish_subscribe, upgraded to a
// websocket whose first frame must be a text OpenDataChannel with the
// session's current token.
func (s *Server) serveDataChannel(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/data-channel/")
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		s.st.wsRejected.Add(1)
		return // Upgrade already answered with an HTTP error
	}
	ok := s.goTracked(func() { s.runDataChannel(id, ws) })
	if !ok {
		_ = ws.Close()
	}
}

func (s *Server) runDataChannel(id string, ws *websocket.Conn) {
	cc := &clientConn{ws: ws, peerClosed: make(chan struct{})}
	stop := context.AfterFunc(s.ctx, cc.close)
	defer stop()
	defer cc.close()

	_ = ws.SetReadDeadline(time.Now().Add(openTimeout))
	mt, first, err := ws.ReadMessage()
	if err != nil {
		s.st.wsRejected.Add(1)
		return
	}
	ss := s.session(id)
	var open wire.OpenDataChannel
	reason := ""
	switch {
	case mt != websocket.TextMessage:
		reason = "first frame is not a text frame"
	case json.Unmarshal(first, &open) != nil:
		reason = "first frame is not OpenDataChannel JSON"
	case open.MessageSchemaVersion != "1.0":
		reason = "MessageSchemaVersion is not 1.0"
	case ss == nil:
		reason = "unknown session"
	case !ss.checkToken(open.TokenValue):
		reason = "invalid or superseded token"
	}
	if reason != "" {
		s.st.wsRejected.Add(1)
		s.log.Info("ssmtest: data channel refused", "session", id, "reason", reason)
		if ss != nil && s.cfg.Strict && mt != websocket.TextMessage {
			ss.violation(0, RuleOpenDataChannel, reason)
		}
		return
	}
	_ = ws.SetReadDeadline(time.Time{})
	ws.SetPingHandler(cc.pingHandler)
	if !ss.attach(cc, open.ClientID) {
		s.st.wsRejected.Add(1)
		return
	}
	s.st.wsAccepted.Add(1)
	s.log.Info("ssmtest: data channel open", "session", id, "clientVersion", open.ClientVersion)
	defer func() {
		// Through a black hole the service does not see the client go
		// away either: it keeps the stalled websocket until a reconnect
		// replaces it or the session ends.
		if !cc.stalled.Load() {
			ss.detach(cc)
		}
	}()

	for {
		mt, b, err := ws.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				s.st.wsClosedNormally.Add(1)
			}
			close(cc.peerClosed)
			return
		}
		if cc.stalled.Load() {
			s.st.framesStalled.Add(1)
			continue
		}
		if cc.dying.Load() {
			cc.loseInSocket()
			s.st.framesLostInSocket.Add(1)
			continue
		}
		s.st.framesFromClient.Add(1)
		ss.fromClient(mt, b)
	}
}

func (ss *session) checkToken(tok string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return !ss.ended && subtle.ConstantTimeCompare([]byte(tok), []byte(ss.token)) == 1
}

// attach makes cc the session's client websocket. A previous one is closed.
// The service tells the agent with start_publication that its peer is back.
func (ss *session) attach(cc *clientConn, clientID string) bool {
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return false
	}
	old := ss.client
	ss.client = cc
	ss.clientID = clientID
	first := !ss.everConn
	ss.everConn = true
	buffering := ss.srv.cfg.BufferWhileDisconnected
	if buffering {
		ss.flushing = true
		if !first {
			ss.pending = ss.replayList()
		}
	}
	ss.mu.Unlock()
	if old != nil {
		old.close()
	}
	if buffering {
		ss.flushPending(cc)
	}
	if first {
		close(ss.connected)
	} else {
		ss.agent.control(wire.StartPublication)
	}
	return true
}

// flushPending writes the frames the gateway held for the disconnected
// client (Config.BufferWhileDisconnected) to cc, in order, then lets new
// frames through.
func (ss *session) flushPending(cc *clientConn) {
	for {
		ss.mu.Lock()
		if ss.client != cc { // replaced meanwhile: its attach flushes
			ss.mu.Unlock()
			return
		}
		p := ss.pending
		ss.pending = nil
		if len(p) == 0 {
			ss.flushing = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		for i, b := range p {
			if err := cc.write(b); err != nil {
				ss.mu.Lock()
				ss.pending = append(p[i:], ss.pending...)
				if ss.client == cc {
					ss.flushing = false
				}
				ss.mu.Unlock()
				return
			}
			ss.srv.st.framesToClient.Add(1)
			ss.srv.st.framesReplayed.Add(1)
		}
	}
}

// replayList returns what the gateway replays to a reconnected client: every
// output_stream_data frame it forwarded that the client has not acknowledged
// (in sequence order), then the other held frames. ss.mu must be held.
func (ss *session) replayList() [][]byte {
	seqs := make([]int64, 0, len(ss.unackedOut))
	for seq := range ss.unackedOut {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	out := make([][]byte, 0, len(seqs)+len(ss.pending))
	for _, seq := range seqs {
		out = append(out, ss.unackedOut[seq])
	}
	for _, b := range ss.pending {
		var m wire.Message
		if wire.Decode(b, &m) == nil && m.MessageType != wire.OutputStreamData {
			out = append(out, b)
		}
	}
	return out
}

// hold keeps b for the next client websocket (Config.BufferWhileDisconnected);
// ss.mu must be held. It reports false when the buffer is full.
func (ss *session) hold(b []byte) bool {
	if len(ss.pending) >= maxPendingFrames {
		return false
	}
	ss.pending = append(ss.pending, b)
	ss.srv.st.framesBuffered.Add(1)
	return true
}

// detach forgets cc if it is still the session's websocket; the service then
// pauses the agent (pause_publication: "remote data channel is inactive").
func (ss *session) detach(cc *clientConn) {
	ss.mu.Lock()
	was := ss.client == cc
	if was {
		ss.client = nil
	}
	ended := ss.ended
	ss.mu.Unlock()
	if was && !ended {
		ss.srv.log.Info("ssmtest: client websocket gone; pausing agent", "session", ss.id)
		ss.agent.control(wire.PausePublication)
	}
}

// fromClient handles one frame read from the client websocket: strict checks
// on the bytes as the client sent them, then faults, then the agent.
func (ss *session) fromClient(mt int, b []byte) {
	var m wire.Message
	err := wire.Decode(b, &m)
	if ss.srv.cfg.Strict {
		ss.checkClientFrame(mt, b, &m, err)
	}
	if err != nil {
		ss.srv.st.framesMalformed.Add(1)
		ss.srv.log.Debug("ssmtest: malformed client frame dropped", "session", ss.id, "error", err)
		return
	}
	if mt != websocket.BinaryMessage && mt != websocket.TextMessage {
		return
	}
	if l := ss.srv.log; l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("ssmtest: frame from client", "session", ss.id, "type", m.MessageType, "seq", m.SequenceNumber, "payloadType", int(m.PayloadType), "len", len(m.Payload))
	}
	if m.MessageType == wire.InputStreamData {
		ss.lastData.Store(time.Now().UnixNano())
	}
	if m.MessageType == wire.Acknowledge && ss.srv.cfg.BufferWhileDisconnected {
		if seq, err := wire.ParseAckSeq(m.Payload); err == nil {
			ss.mu.Lock()
			delete(ss.unackedOut, seq)
			ss.mu.Unlock()
		}
	}
	ss.srv.faultsFor(ToAgent).apply(ss, ToAgent, b, &m, ss.deliverToAgent)
}

// deliverToAgent hands a frame to the agent's reader (blocking, like TCP
// back-pressure through MGS).
func (ss *session) deliverToAgent(b []byte) {
	if ss.agent.deliver(b) {
		ss.srv.st.framesToAgent.Add(1)
	}
}

// fromAgent takes a frame the agent sends to the client. The gateway consumes
// agent_session_state (MGS-only); everything else crosses the gateway.
func (ss *session) fromAgent(b []byte) {
	ss.srv.st.framesFromAgent.Add(1)
	var m wire.Message
	if err := wire.Decode(b, &m); err != nil {
		ss.srv.st.framesLost.Add(1)
		return
	}
	if m.MessageType == wire.AgentSessionState {
		ss.srv.st.agentSessionState.Add(1)
		return
	}
	if m.MessageType == wire.OutputStreamData {
		ss.lastData.Store(time.Now().UnixNano())
	}
	ss.srv.faultsFor(ToClient).apply(ss, ToClient, b, &m, ss.writeClient)
}

// writeClient writes a frame to the current client websocket; without one
// the frame is lost (MGS cannot deliver it).
func (ss *session) writeClient(b []byte) {
	ss.mu.Lock()
	cc := ss.client
	if cc != nil && !ss.hcDelivered && len(b) >= wire.HeaderSize {
		var m wire.Message
		if wire.Decode(b, &m) == nil && m.MessageType == wire.OutputStreamData {
			switch m.PayloadType {
			case wire.PayloadHandshakeComplete:
				ss.hcDelivered = true
			case wire.PayloadHandshakeRequest:
				ss.hrDelivered = true
			}
		}
	}
	if ss.srv.cfg.BufferWhileDisconnected {
		var m wire.Message
		if wire.Decode(b, &m) == nil && m.MessageType == wire.OutputStreamData && len(ss.unackedOut) < maxPendingFrames {
			ss.unackedOut[m.SequenceNumber] = b
		}
	}
	if ss.srv.cfg.BufferWhileDisconnected && (cc == nil || ss.flushing) {
		held := ss.hold(b)
		ss.mu.Unlock()
		if !held {
			ss.srv.st.framesLost.Add(1)
		}
		return
	}
	ss.mu.Unlock()
	if cc == nil {
		ss.srv.st.framesLost.Add(1)
		return
	}
	if l := ss.srv.log; l.Enabled(context.Background(), slog.LevelDebug) {
		var m wire.Message
		if wire.Decode(b, &m) == nil {
			l.Debug("ssmtest: frame to client", "session", ss.id, "type", m.MessageType, "seq", m.SequenceNumber, "payloadType", int(m.PayloadType), "len", len(m.Payload))
		}
	}
	if err := cc.write(b); err != nil {
		if errors.Is(err, errStalled) {
			ss.srv.st.framesStalled.Add(1)
			return
		}
		if errors.Is(err, errDying) {
			ss.srv.st.framesLostInSocket.Add(1)
			return
		}
		held := false
		if ss.srv.cfg.BufferWhileDisconnected {
			ss.mu.Lock()
			held = !ss.ended && ss.hold(b)
			ss.mu.Unlock()
		}
		if !held {
			ss.srv.st.framesLost.Add(1)
		}
		return
	}
	ss.srv.st.framesToClient.Add(1)
}

// channelClosed sends the service's channel_closed message to the client,
// bypassing faults.
func (ss *session) channelClosed(output string) {
	ss.mu.Lock()
	cc := ss.client
	ss.mu.Unlock()
	if cc == nil {
		return
	}
	now := time.Now()
	id := uuid.New()
	p, _ := json.Marshal(wire.ChannelClosedPayload{
		MessageID:     id.String(),
		CreatedDate:   strconv.FormatUint(wire.Millis(now), 10),
		DestinationID: ss.target,
		SessionID:     ss.id,
		MessageType:   wire.ChannelClosed,
		SchemaVersion: 1,
		Output:        output,
	})
	m := wire.Message{
		MessageType:   wire.ChannelClosed,
		SchemaVersion: wire.SchemaVersion,
		CreatedDate:   wire.Millis(now),
		Flags:         wire.FlagsNone,
		MessageID:     id,
		PayloadType:   wire.PayloadNone,
	}
	m.SetPayload(p)
	b, _ := wire.Encode(nil, &m)
	if cc.write(b) == nil {
		ss.srv.st.controlToClient.Add(1)
	}
}

// finish ends the session once: the service sends channel_closed (unless the
// server is closing) and closes the client websocket; the agent stops.
func (ss *session) finish(why endReason, output string, failed bool) {
	ss.endOnce.Do(func() {
		ss.mu.Lock()
		ss.ended = true
		ss.mu.Unlock()
		st := &ss.srv.st
		st.sessionsOpen.Add(-1)
		st.sessionsEnded.Add(1)
		if why == endTerminateAPI || why == endTerminateFlag {
			st.sessionsTerminated.Add(1)
		}
		if failed {
			st.sessionsFailed.Add(1)
		}
		if why != endServerClosed {
			ss.channelClosed(output)
		}
		ss.srv.log.Info("ssmtest: session ended", "session", ss.id, "reason", int(why), "output", output)
		ss.cancel()
		ss.agent.stopTarget()
		ss.mu.Lock()
		cc := ss.client
		ss.client = nil
		ss.mu.Unlock()
		if cc != nil {
			if why != endServerClosed {
				// channel_closed was the last frame: half-close, so that
				// the client reads it before the end of the stream (an
				// abrupt close with the client's frames unread would send
				// a reset, and the client's kernel would drop it), and
				// give the client's own close (a close frame after its
				// terminate flag, or its socket close) a moment, as a
				// server completing a close handshake.
				if hc := holdConnOf(cc.ws); hc != nil {
					_ = hc.stopHolding() // channel_closed leaves now, and the close below with it
				}
				if cw, ok := cc.ws.UnderlyingConn().(interface{ CloseWrite() error }); ok {
					cc.wmu.Lock()
					_ = cw.CloseWrite()
					cc.wmu.Unlock()
				}
				if !ss.srv.goTracked(func() {
					t := time.NewTimer(time.Second)
					defer t.Stop()
					select {
					case <-cc.peerClosed:
					case <-t.C:
					case <-ss.srv.ctx.Done():
					}
					cc.close()
				}) {
					cc.close()
				}
			} else {
				cc.close()
			}
		}
		ss.srv.forget(ss.id)
	})
}

// KillWebsocket abruptly closes the client websocket of the session id (""
// = every session), as a network failure would. First the socket dies:
// frames in either direction are lost in its buffers, up to Config.KillLoss
// frames (see there); then the service notices, pauses the agent and
// closes the connection. Frames the agent sends while the client is away
// are lost too, unless Config.BufferWhileDisconnected keeps them. The
// session stays alive: the client resumes with ResumeSession and a redial
// of the same StreamUrl. It returns how many websockets it closed, once
// they are closed.
func (s *Server) KillWebsocket(sessionID string) int {
	n := 0
	sessions := s.matching(sessionID)
	dying := make(map[*session]*clientConn) // may have closed itself (full)
	if loss := s.cfg.KillLoss; loss >= 0 {
		if loss == 0 {
			loss = DefaultKillLoss
		}
		for _, ss := range sessions {
			ss.mu.Lock()
			cc, ended := ss.client, ss.ended
			ss.mu.Unlock()
			if cc != nil && !ended {
				cc.lostAt.Store(time.Now().UnixNano())
				cc.limit = int64(loss)
				cc.dying.Store(true)
				dying[ss] = cc
			}
		}
		deadline := time.Now().Add(2 * time.Second)
		for _, cc := range dying {
			for !cc.full.Load() && time.Now().Before(deadline) &&
				time.Since(time.Unix(0, cc.lostAt.Load())) < 100*time.Millisecond {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	for _, ss := range sessions {
		// The service sees its end of the connection go away at once: it
		// detaches the client and pauses the agent before the socket
		// closes, so only frames already in the socket buffers are lost.
		ss.mu.Lock()
		cc := ss.client
		if d := dying[ss]; d != nil && (cc == nil || cc == d) {
			cc = d
		}
		if cc == ss.client {
			ss.client = nil
		}
		ended := ss.ended
		ss.mu.Unlock()
		if cc != nil {
			if !ended {
				ss.agent.control(wire.PausePublication)
			}
			cc.close()
			n++
			s.st.wsKilled.Add(1)
		}
	}
	return n
}

// StallWebsocket turns the client websocket of session id ("" = every
// session) into a black hole, as a dead network path (a NAT or firewall that
// silently drops the flow) does: the TCP connection stays open, but from now
// on nothing crosses it in either direction. Frames and PINGs from the
// client are discarded unanswered, frames for the client are lost (counted
// in Stats.FramesStalled), and the service notices nothing — it neither
// pauses the agent nor sees the client close its end. The session stays
// alive: a client that detects the dead socket (e.g. by a ping timeout)
// resumes with ResumeSession and a redial, which replaces the stalled
// websocket. It returns how many websockets it stalled.
func (s *Server) StallWebsocket(sessionID string) int {
	n := 0
	for _, ss := range s.matching(sessionID) {
		ss.mu.Lock()
		cc := ss.client
		ss.mu.Unlock()
		if cc != nil && !cc.stalled.Swap(true) {
			n++
			s.st.wsStalled.Add(1)
		}
	}
	return n
}

// PausePublication sends pause_publication to the agent of session id (""
// = every session): it stops reading the target and buffers output unsent
// and stops retransmitting. Like the real agent, any stream data or
// acknowledge it receives from the client clears the pause again.
func (s *Server) PausePublication(sessionID string) {
	for _, ss := range s.matching(sessionID) {
		ss.agent.control(wire.PausePublication)
	}
}

// StartPublication sends start_publication to the agent of session id (""
// = every session), clearing a pause.
func (s *Server) StartPublication(sessionID string) {
	for _, ss := range s.matching(sessionID) {
		ss.agent.control(wire.StartPublication)
	}
}

// CloseChannel ends session id ("" = every session) from the service side,
// mid-stream: channel_closed with output to the client and to the agent,
// which stops at once.
func (s *Server) CloseChannel(sessionID, output string) {
	for _, ss := range s.matching(sessionID) {
		ss.finish(endChannelClosed, output, false)
	}
}

// socketFull reports whether the client's dying socket holds all it can
// (KillWebsocket): the service has noticed the loss, and the agent must
// stop sending as if paused. Called with the agent's lock held.
func (ss *session) socketFull() bool {
	ss.mu.Lock()
	cc := ss.client
	ss.mu.Unlock()
	return cc != nil && cc.full.Load()
}
