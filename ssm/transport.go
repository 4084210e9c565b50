package ssm

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// maxFrame bounds one incoming WebSocket frame.
const maxFrame = 16 << 20

// goodbyeWait bounds the wait for the peer to close after our close frame.
const goodbyeWait = 500 * time.Millisecond

// fastRetransmitGap: a message is presumed lost once a message sent this
// many sequence numbers later has been acknowledged (acks are per message,
// so this works like SACK-based loss detection).
const fastRetransmitGap = 3

// dialWS dials the session's original StreamUrl and sends OpenDataChannel
// with token (reference §3).
func (s *Session) dialWS(ctx context.Context, token string, pre *predial) (*wsConn, error) {
	var bc *batchConn
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 45 * time.Second,
		ReadBufferSize:   64 << 10,
		WriteBufferSize:  16 << 10,
		// The writer batches frames in the socket's own buffer (batchConn);
		// gorilla/websocket adds TLS (wss) on top of it.
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			bc = newBatchConn(c)
			return bc, nil
		},
	}
	if s.cfg.RootCAs != nil {
		d.TLSClientConfig = &tls.Config{RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	}
	if conn, pbc, ok := pre.take(ctx, s.streamURL); ok {
		// Opened during StartSession (predial); TLS, if any, is done.
		dial := func(context.Context, string, string) (net.Conn, error) {
			bc = pbc
			return conn, nil
		}
		d.Proxy = nil
		if strings.HasPrefix(s.streamURL, "wss:") {
			d.NetDialTLSContext = dial
		} else {
			d.NetDialContext = dial
		}
	}
	ws, resp, err := d.DialContext(ctx, s.streamURL, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	open, err := json.Marshal(wire.OpenDataChannel{
		MessageSchemaVersion: "1.0",
		RequestID:            uuid.NewString(),
		TokenValue:           token,
		ClientID:             s.clientID,
		ClientVersion:        s.cfg.ClientVersion,
	})
	if err != nil {
		_ = ws.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	_ = ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	err = ws.WriteMessage(websocket.TextMessage, open)
	_ = ws.SetWriteDeadline(time.Time{})
	if !stop() || err != nil {
		_ = ws.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("sending OpenDataChannel: %w", err)
	}
	if bc == nil { // cannot happen: gorilla dials through NetDialContext
		_ = ws.Close()
		return nil, errors.New("ssm: websocket dialed without the batching conn")
	}
	return newWSConn(ws, bc), nil
}

// supervise runs the data channel for the session's lifetime: it runs one
// WebSocket until it breaks, then resumes the session on a new one.
func (s *Session) supervise(c *wsConn) {
	defer s.wg.Done()
	first := true
	for {
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			_ = c.ws.Close()
			return
		}
		s.conn = c
		s.paused = false
		if !first {
			s.st.Reconnects++
			s.requeueAllLocked()
		}
		s.mu.Unlock()
		first = false

		err := s.runConn(c)

		s.mu.Lock()
		s.conn = nil
		closing := s.closing
		s.mu.Unlock()
		if s.ctx.Err() != nil || closing {
			// Close is under way (it ends the session with ErrClosed):
			// nothing to resume.
			return
		}
		s.log.Warn("ssm: data channel lost, resuming", "err", err)
		c, err = s.reconnect()
		if err != nil {
			s.fail(err)
			return
		}
		s.log.Info("ssm: data channel resumed")
	}
}

// reconnect obtains a fresh token with ResumeSession and redials the
// original StreamUrl, retrying with back-off for up to ResumeTimeout.
func (s *Session) reconnect() (*wsConn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ResumeTimeout)
	defer cancel()
	delay := 100 * time.Millisecond
	var last error
	for {
		tok, err := resumeSession(ctx, s.api, s.id)
		if errors.Is(err, ErrSessionGone) {
			return nil, err
		}
		if err == nil {
			c, derr := s.dialWS(ctx, tok, nil)
			if derr == nil {
				return c, nil
			}
			err = &DataChannelError{SessionID: s.id, Err: derr}
		}
		if s.ctx.Err() != nil {
			return nil, ErrClosed
		}
		last = err
		s.log.Warn("ssm: resume attempt failed", "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if s.ctx.Err() != nil {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("%w (session %s, gave up after %v): %w", ErrReconnect, s.id, s.cfg.ResumeTimeout, last)
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// requeueAllLocked queues every sent, unacknowledged message for resending
// on a new WebSocket, in sequence order.
func (s *Session) requeueAllLocked() {
	for s.resendQ.len() > 0 {
		s.resendQ.pop().queued = false
	}
	s.win.each(func(m *outMsg) {
		if m.sends > 0 {
			m.queued = true
			s.resendQ.push(m)
		}
	})
	kick(s.wkick)
}

// runConn runs the reader, writer and pinger of c until c breaks or the
// session ends.
func (s *Session) runConn(c *wsConn) error {
	var wg sync.WaitGroup
	readerDone := make(chan struct{})
	run := func(f func(*wsConn) error, reader bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f(c)
			if err == nil {
				err = errors.New("stopped")
			}
			if reader {
				close(readerDone)
			} else if c.saidBye.Load() && s.ctx.Err() != nil {
				// The session ended after our close frame: runConn closes
				// the socket once the peer has (or after goodbyeWait).
				return
			} else if c.drain() {
				// The socket broke under a write, but frames the peer sent
				// before it went away may still be in the receive buffer
				// (channel_closed with the reason, data): let the reader
				// take them before the socket is closed.
				select {
				case <-readerDone:
				case <-c.dead:
				case <-s.ctx.Done():
				}
			}
			c.fail(err)
		}()
	}
	run(s.readLoop, true)
	run(s.writeLoop, false)
	if s.cfg.PingInterval > 0 {
		run(s.pingLoop, false)
	}
	select {
	case <-c.dead:
	case <-s.ctx.Done():
		if c.saidBye.Load() {
			// After our close frame, wait (briefly) for the peer to close
			// and the reader to take everything left: closing a socket
			// with unread data sends a reset, which can drop the goodbye.
			t := time.NewTimer(goodbyeWait)
			select {
			case <-c.dead:
			case <-t.C:
			}
			t.Stop()
		}
		c.fail(ErrClosed)
	}
	wg.Wait()
	return c.err
}

// pingLoop sends WebSocket pings; the reader's deadline (extended by pongs
// and frames) notices a dead socket.
func (s *Session) pingLoop(c *wsConn) error {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return nil
		case <-t.C:
		}
		if err := c.ws.WriteControl(websocket.PingMessage, []byte("keepalive"), time.Now().Add(10*time.Second)); err != nil {
			return err
		}
	}
}

// readLoop reads frames and dispatches them.
func (s *Session) readLoop(c *wsConn) error {
	ws := c.ws
	ws.SetReadLimit(maxFrame)
	var lastExtend time.Time
	extend := func() {
		if s.cfg.PingInterval > 0 && !c.draining.Load() {
			lastExtend = time.Now()
			_ = ws.SetReadDeadline(lastExtend.Add(s.cfg.PingTimeout))
		}
	}
	extend()
	ws.SetPongHandler(func(string) error { extend(); return nil })
	buf := make([]byte, 0, 4096)
	var m wire.Message
	for {
		t0 := time.Now()
		typ, r, err := ws.NextReader()
		if err != nil {
			return err
		}
		// A frame that did not arrive in a burst (the reader waited for it,
		// as with every message of a paced agent) is acknowledged by this
		// goroutine right away instead of waking the writer for it.
		s.ackInline = time.Since(t0) >= inlineAckWait
		if buf, err = readAll(r, buf[:0]); err != nil {
			return err
		}
		if s.cfg.PingInterval > 0 && time.Since(lastExtend) > time.Second {
			extend()
		}
		if typ != websocket.BinaryMessage && typ != websocket.TextMessage {
			continue
		}
		waited, err := s.handleFrame(c, buf, &m)
		if err != nil {
			return err
		}
		if s.ackInline {
			s.ackInline = false
			if err := s.sendAcksInline(c); err != nil {
				return err
			}
		}
		if waited {
			extend()
		}
	}
}

// inlineAckWait: a frame the reader waited at least this long for is
// acknowledged by the reader itself (see readLoop). Frames of a burst
// arrive within microseconds of each other; their acknowledgements are left
// to the writer, which sends all that are ready in one write.
const inlineAckWait = 100 * time.Microsecond

// sendAcksInline writes the queued acknowledgements from the reader
// goroutine when the writer is idle, saving its wake-up; otherwise the
// writer is woken to send them in its batch.
//
// The reader must never block on a socket the peer is not reading while the
// peer waits for us to read (the agent's writer holds the lock its reader
// needs): so it writes only while none of our data is in flight or queued.
// Then all that can stand in the peer's receive buffer are acknowledgements
// of its own messages, which its reader drains, so the write cannot wait for
// long; with data in flight the writer sends, and the reader keeps reading.
func (s *Session) sendAcksInline(c *wsConn) error {
	s.mu.Lock()
	n := s.ackQ.len()
	quiet := s.win.n == 0 && len(s.pending) == s.poff && s.resendQ.len() == 0 && s.ctrlQ.len() == 0
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	if !quiet || !s.wtok.TryLock() {
		kick(s.wkick)
		return nil
	}
	defer s.wtok.Unlock()
	return s.writeBatch(c, true)
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// handleFrame processes one received frame. It reports whether it had to
// wait for buffer space; an error means the connection must be dropped.
func (s *Session) handleFrame(c *wsConn, b []byte, m *wire.Message) (waited bool, err error) {
	derr := wire.Decode(b, m)
	if derr == nil {
		derr = m.Validate()
	}
	if derr != nil {
		s.mu.Lock()
		s.st.MalformedDropped++
		s.mu.Unlock()
		s.log.Debug("ssm: dropped malformed frame", "len", len(b), "err", derr)
		return false, nil
	}
	switch m.MessageType {
	case wire.Acknowledge:
		s.handleAck(m)
	case wire.OutputStreamData:
		return s.handleData(c, m)
	case wire.ChannelClosed:
		s.handleChannelClosed(m)
	case wire.PausePublication:
		s.mu.Lock()
		s.paused = true
		s.mu.Unlock()
		s.log.Debug("ssm: pause_publication")
	case wire.StartPublication:
		s.mu.Lock()
		s.paused = false
		s.mu.Unlock()
		kick(s.wkick)
	default:
		s.log.Debug("ssm: ignored message", "type", m.MessageType)
	}
	return false, nil
}

func (s *Session) handleAck(m *wire.Message) {
	seq, err := wire.ParseAckSeq(m.Payload)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.st.MalformedDropped++
		return
	}
	s.st.AcksReceived++
	wasPaused := s.paused
	s.paused = false
	om := s.win.ack(seq)
	if om == nil {
		if wasPaused {
			kick(s.wkick)
		}
		return
	}
	if om.sends == 1 {
		s.rto.sample(now.Sub(om.sentAt))
	}
	s.rto.acked(om.sentAt)
	// Per-message acks: anything sent well before an acknowledged message and
	// still unacknowledged was most likely lost. Resend it now rather than
	// after a timeout; a spurious resend only costs a re-acked duplicate.
	if limit := seq - fastRetransmitGap; s.fastFrom <= limit {
		for q := max(s.fastFrom, s.win.base); q <= limit; q++ {
			if x := s.win.get(q); x != nil && !x.queued && x.sends > 0 && x.sentAt.Before(om.sentAt) {
				x.queued = true
				s.resendQ.push(x)
			}
		}
		s.fastFrom = limit + 1
	}
	if om.pooled {
		om.sentAt = time.Time{}
		s.free = append(s.free, om)
	}
	kick(s.wkick)
}

// handleData applies the receive rules for output_stream_data (reference
// §6.3, with the agent's improvements): accept in order, park out of order,
// re-acknowledge duplicates; acknowledge everything accepted at once.
func (s *Session) handleData(c *wsConn, m *wire.Message) (waited bool, err error) {
	seq := m.SequenceNumber
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = false
	if s.ackQ.len() >= maxAckQueue {
		// The writer cannot keep up (the websocket is not draining). Never
		// stop reading for that: the peer's sender may be blocked on us and
		// its ack processing on its sender, which would deadlock both ends.
		// Drop the message unacknowledged instead; the agent resends it.
		s.st.DroppedUnacked++
		return false, nil
	}
	switch {
	case seq < s.expected:
		s.st.Duplicates++
		s.creditDuplicateLocked(seq)
		s.queueAckLocked(seq, m.MessageID)
		return waited, nil
	case seq > s.expected:
		if _, ok := s.reorder[seq]; ok {
			s.st.Duplicates++
			s.creditDuplicateLocked(seq)
			s.queueAckLocked(seq, m.MessageID)
			return waited, nil
		}
		if len(s.reorder) >= s.cfg.ReorderBuffer {
			s.st.DroppedUnacked++
			return waited, nil
		}
		s.progress.Store(time.Now().UnixNano())
		s.reorder[seq] = inMsg{ptype: m.PayloadType, buf: parkPayload(m.Payload)}
		s.st.OutOfOrder++
		s.queueAckLocked(seq, m.MessageID)
		return waited, nil
	}
	s.progress.Store(time.Now().UnixNano())
	w, err := s.waitRoomLocked(c, m.PayloadType, len(m.Payload))
	waited = waited || w
	if err != nil {
		return waited, err
	}
	s.queueAckLocked(seq, m.MessageID)
	s.expected++
	s.deliverLocked(m.PayloadType, m.Payload)
	for {
		im, ok := s.reorder[s.expected]
		if !ok {
			break
		}
		w, err := s.waitRoomLocked(c, im.ptype, len(*im.buf))
		waited = waited || w
		if err != nil {
			return waited, err
		}
		delete(s.reorder, s.expected)
		s.expected++
		s.deliverLocked(im.ptype, *im.buf)
		if im.ptype == wire.PayloadOutput {
			releasePayload(im.buf) // deliverLocked copied it into rbuf
		}
	}
	return waited, nil
}

// creditDuplicateLocked counts a duplicate as progress (LastProgress) when
// its sequence number is above every duplicate counted before. The agent
// retransmits only the head of its unacknowledged messages, so while our
// acknowledgements reach it each duplicate names a higher number than the
// last (after a WebSocket loss it resends the messages whose
// acknowledgements died, in order); a peer resending the same messages
// over and over, because nothing of ours gets through, adds nothing and
// the session stops making progress.
func (s *Session) creditDuplicateLocked(seq int64) {
	if seq > s.dupCredited {
		s.dupCredited = seq
		s.progress.Store(time.Now().UnixNano())
	}
}

// waitRoomLocked waits until an Output payload of n bytes fits the read
// buffer. Meanwhile the websocket is not read (back-pressure on the agent)
// but acknowledgements already queued keep flowing.
func (s *Session) waitRoomLocked(c *wsConn, pt wire.PayloadType, n int) (waited bool, err error) {
	if pt != wire.PayloadOutput {
		return false, nil
	}
	for {
		buffered := len(s.rbuf) - s.roff
		if buffered == 0 || buffered+n <= s.cfg.ReadBuffer || s.closing || s.err != nil {
			return waited, nil
		}
		waited = true
		if err := s.waitSpaceLocked(c); err != nil {
			return true, err
		}
	}
}

func (s *Session) waitSpaceLocked(c *wsConn) error {
	if s.ackQ.len() > 0 {
		kick(s.wkick) // acknowledgements queued inline must not wait for the space
	}
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-s.rspace:
		return nil
	case <-c.dead:
		return c.err
	case <-s.done:
		return ErrClosed
	}
}

func (s *Session) queueAckLocked(seq int64, id [16]byte) {
	s.ackQ.push(ackItem{seq: seq, id: id})
	if !s.ackInline { // else the reader sends it after the frame (sendAcksInline)
		kick(s.wkick)
	}
}

// deliverLocked hands an in-order payload to its consumer.
func (s *Session) deliverLocked(pt wire.PayloadType, p []byte) {
	switch pt {
	case wire.PayloadOutput:
		if len(p) == 0 {
			return
		}
		if s.roff > 0 && len(s.rbuf)+len(p) > cap(s.rbuf) {
			k := copy(s.rbuf, s.rbuf[s.roff:])
			s.rbuf = s.rbuf[:k]
			s.roff = 0
		}
		s.rbuf = append(s.rbuf, p...)
		s.st.BytesReceived += int64(len(p))
		s.st.MessagesReceived++
		if s.handshook && !s.holdReleased {
			s.releaseHoldLocked("first byte from the agent")
		}
		kick(s.rkick)
	case wire.PayloadHandshakeRequest:
		s.onHandshakeRequestLocked(p)
	case wire.PayloadHandshakeComplete:
		s.onHandshakeCompleteLocked(p)
	case wire.PayloadEncChallengeRequest:
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "the agent sent an encryption challenge; KMS-encrypted sessions are not supported (port sessions are never encrypted)"})
	case wire.PayloadFlag:
		f, err := wire.ParseFlag(p)
		s.log.Debug("ssm: flag from agent", "flag", f, "err", err)
		if err == nil && s.cfg.OnFlag != nil {
			s.cfg.OnFlag(Flag(f))
		}
	default:
		s.log.Debug("ssm: ignored payload", "type", pt, "len", len(p))
	}
}

func (s *Session) handleChannelClosed(m *wire.Message) {
	var cc wire.ChannelClosedPayload
	if len(m.Payload) > 0 {
		if err := json.Unmarshal(m.Payload, &cc); err != nil {
			s.log.Debug("ssm: unreadable channel_closed payload", "err", err)
		}
	}
	s.log.Info("ssm: channel closed by the service", "output", cc.Output)
	s.fail(&ChannelClosedError{SessionID: s.id, Output: cc.Output})
}

// job is one frame for the writer.
type job struct {
	ack   bool
	ackIt ackItem
	msg   *outMsg // data to encode (fresh) or frame to resend
	fresh bool    // msg.frame holds only the payload at HeaderSize..
	n     int     // payload length of a fresh data message
}

// nextAckLocked picks the next acknowledgement, if any.
func (s *Session) nextAckLocked() (job, bool) {
	if s.ackQ.len() == 0 {
		return job{}, false
	}
	it := s.ackQ.pop()
	s.st.AcksSent++
	return job{ack: true, ackIt: it}, true
}

// nextJobLocked picks the next frame: acknowledgements first, then resends,
// then control messages, then new data.
func (s *Session) nextJobLocked(now time.Time) (job, bool) {
	if j, ok := s.nextAckLocked(); ok {
		return j, true
	}
	if s.paused || s.err != nil {
		return job{}, false
	}
	for s.resendQ.len() > 0 {
		m := s.resendQ.pop()
		m.queued = false
		if m.acked {
			continue
		}
		m.sends++
		m.sentAt = now
		s.st.Retransmissions++
		return job{msg: m}, true
	}
	if s.ctrlQ.len() > 0 {
		it := s.ctrlQ.pop()
		m := &outMsg{seq: s.nextSeq, sends: 1, sentAt: now}
		s.nextSeq++
		m.frame = s.encodeLocked(nil, it.ptype, m.seq, it.payload, now)
		s.win.push(m)
		return job{msg: m}, true
	}
	if !s.handshook || !s.holdReleased || s.hsErr != nil || s.win.n >= s.cfg.SendWindow {
		return job{}, false
	}
	n := min(len(s.pending)-s.poff, s.cfg.MaxPayload)
	if n == 0 {
		return job{}, false
	}
	var m *outMsg
	if k := len(s.free); k > 0 {
		m = s.free[k-1]
		s.free = s.free[:k-1]
	} else {
		m = &outMsg{pooled: true, frame: make([]byte, 0, wire.HeaderSize+s.cfg.MaxPayload)}
	}
	m.seq, m.sends, m.sentAt, m.queued, m.acked = s.nextSeq, 1, now, false, false
	s.nextSeq++
	m.frame = m.frame[:wire.HeaderSize+n]
	copy(m.frame[wire.HeaderSize:], s.pending[s.poff:s.poff+n])
	s.poff += n
	if s.poff == len(s.pending) {
		s.pending = s.pending[:0]
		s.poff = 0
	}
	s.win.push(m)
	s.st.BytesSent += int64(n)
	s.st.MessagesSent++
	kick(s.wspace)
	return job{msg: m, fresh: true, n: n}, true
}

// encodeLocked encodes an input_stream_data message. Writer only.
func (s *Session) encodeLocked(dst []byte, pt wire.PayloadType, seq int64, payload []byte, now time.Time) []byte {
	h := wire.Message{
		MessageType:    wire.InputStreamData,
		SchemaVersion:  wire.SchemaVersion,
		CreatedDate:    wire.Millis(now),
		SequenceNumber: seq,
		Flags:          wire.FlagsNone,
		MessageID:      s.newID(),
		PayloadType:    pt,
	}
	h.SetPayload(payload)
	out, _ := wire.Encode(dst, &h)
	return out
}

// writeLoop writes data-channel frames to c: it wakes when there is work
// and writes everything ready in one batch (writeBatch). The reader writes
// some acknowledgements itself (sendAcksInline); the write token (wtok)
// keeps one writer of data frames at a time.
func (s *Session) writeLoop(c *wsConn) error {
	for {
		s.wtok.Lock()
		err := s.writeBatch(c, false)
		s.wtok.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-s.wkick:
		case <-c.dead:
			return nil
		}
	}
}

// writeBatch writes every frame that is ready (acksOnly: every queued
// acknowledgement) and returns when none is left. Frames that are ready
// together leave together: it holds c's batchConn while it has frames and
// releases it (one write(2)) when the queue is drained. Acknowledgements
// lead every batch (nextJobLocked), so they never wait behind data queued
// after them. The caller holds s.wtok.
func (s *Session) writeBatch(c *wsConn, acksOnly bool) error {
	batching := false
	for {
		now := time.Now()
		s.mu.Lock()
		var j job
		var ok bool
		if acksOnly {
			j, ok = s.nextAckLocked()
		} else {
			j, ok = s.nextJobLocked(now)
		}
		s.mu.Unlock()
		if !ok {
			if !batching {
				return nil
			}
			batching = false
			if err := c.bc.release(); err != nil {
				return err
			}
			continue // jobs may have arrived during the write
		}
		if !batching {
			batching = true
			c.bc.hold()
		}
		var frame []byte
		switch {
		case j.ack:
			frame = s.encodeAck(j.ackIt, now)
		case j.fresh:
			// The payload is already in place; encode the header around it.
			j.msg.frame = s.encodeLocked(j.msg.frame[:0], wire.PayloadOutput, j.msg.seq, j.msg.frame[wire.HeaderSize:wire.HeaderSize+j.n], now)
			frame = j.msg.frame
		default:
			frame = j.msg.frame
		}
		if now.Sub(c.lastDeadline) > time.Second {
			c.lastDeadline = now
			_ = c.ws.SetWriteDeadline(now.Add(s.cfg.PingTimeout + time.Second))
		}
		if err := c.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			// Frames written before the failure may be gathered in the
			// batch: let them go (one of them can be Close's goodbye, after
			// which gorilla refuses frames with ErrCloseSent).
			_ = c.bc.release()
			return err
		}
	}
}

// encodeAck builds an acknowledge frame in the writer's reused buffers.
func (s *Session) encodeAck(it ackItem, now time.Time) []byte {
	s.ackPayload = wire.AppendAck(s.ackPayload[:0], wire.OutputStreamData, it.id, it.seq)
	h := wire.Message{
		MessageType:   wire.Acknowledge,
		SchemaVersion: wire.SchemaVersion,
		CreatedDate:   wire.Millis(now),
		Flags:         wire.FlagsAck,
		MessageID:     s.newID(),
		PayloadType:   wire.PayloadNone,
		Payload:       s.ackPayload,
	}
	h.PayloadLength = uint32(len(h.Payload))
	h.PayloadDigest = sha256.Sum256(h.Payload)
	s.ackFrame, _ = wire.Encode(s.ackFrame[:0], &h)
	return s.ackFrame
}

// retransmitLoop resends messages whose retransmission timer expired and
// backs the timer off (RFC 6298 §5). An expired message is resent at once
// when a message sent after it was acknowledged (it was lost: RACK, RFC 8985
// §6.2); otherwise the path may only be slow (acknowledgements queued behind
// data), so only the earliest such message is resent, once per timeout
// period, as RFC 6298 §5.4 does — resending the whole window into a queue
// would only lengthen it.
func (s *Session) retransmitLoop() {
	defer s.wg.Done()
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		next := s.expireLocked(time.Now())
		s.mu.Unlock()
		t.Reset(max(next, 5*time.Millisecond))
	}
}

// expireLocked queues the messages whose retransmission timer expired at
// now (see retransmitLoop) and returns when to look again.
func (s *Session) expireLocked(now time.Time) (next time.Duration) {
	next = 100 * time.Millisecond
	if s.conn == nil || s.paused {
		return next
	}
	expired := false
	rto := s.rto.rto
	probe := now.Sub(s.lastBackoff) >= rto // may resend one message without evidence of loss
	s.win.each(func(m *outMsg) {
		if m.queued || m.sends == 0 {
			return
		}
		left := m.sentAt.Add(rto).Sub(now)
		switch {
		case left > 0:
			next = min(next, left)
			return
		case m.sentAt.Before(s.rto.ackedXmit): // lost
		case probe:
			probe = false
		default:
			next = min(next, max(s.lastBackoff.Add(rto).Sub(now), 0))
			return
		}
		m.queued = true
		s.resendQ.push(m)
		expired = true
	})
	if expired {
		// Back off once per timeout period, not once per expired message
		// (RFC 6298 §5.5 treats one timer).
		if now.Sub(s.lastBackoff) >= rto {
			s.rto.backoff()
			s.lastBackoff = now
		}
		kick(s.wkick)
	}
	return next
}
