package ssmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/xtaci/smux"

	"github.com/jumpless/jumpless/ssm/internal/version"
	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Agent constants (reference §6.5, §10; [A] agent/session/config/config.go).
const (
	resendTick        = 100 * time.Millisecond
	initialSRTT       = 100 * time.Millisecond
	initialRTO        = 200 * time.Millisecond
	maxRTO            = time.Second
	clockGranularity  = 10 * time.Millisecond
	rttAlpha          = 1.0 / 8
	rttBeta           = 1.0 / 4
	outgoingCapacity  = 100000
	incomingCapacity  = 100000
	drainPoll         = 10 * time.Millisecond
	pausedLoopSleep   = time.Millisecond
	targetDialTimeout = 10 * time.Second
	// Output texts: the agent marks the session failed with these
	// ([A] sessionplugin.go:111-115, datachannel.go:971-984, port_basic.go:152-157);
	// the service forwards them in channel_closed.Output (inferred).
	handshakeErrPrefix  = "Encountered error while initiating handshake. "
	handshakeTimeoutMsg = handshakeErrPrefix + "Handshake timed out. Please ensure that you have the latest version of the session manager plugin."
)

// Version thresholds for old-agent behaviour.
var (
	versionReackDuplicates = mustVersion("3.2.1041.0") // "Add retry to handle stream data acknowledge messages"
	versionTerminateFlag   = mustVersion("2.3.722.0")  // flag honoured by agents > 2.3.722.0
)

var errNotReady = errors.New("ssmtest: handler not ready") // agent's ErrHandlerNotReady

type outMsg struct {
	seq  int64
	b    []byte
	last time.Time
}

// agent emulates the amazon-ssm-agent session worker of one port session.
type agent struct {
	ss      *session
	srv     *Server
	version []int
	lpf     atomic.Bool // basic LocalPortForwarding mode: lazy re-dial, DisconnectToPort
	isMux   atomic.Bool // smux mode (mux.go)

	in     chan []byte                  // frames from the gateway, read by reader
	hsResp chan *wire.HandshakeResponse // reader → run

	stopCh   chan struct{}
	stopOnce sync.Once
	stopWhy  endReason
	stopOut  string
	stopFail bool

	connected   atomic.Bool // the port session was initialised (first dial / mux set up)
	hsDone      atomic.Bool // the agent's "handshake complete" flag
	hsRespTaken atomic.Bool // a HandshakeResponse was handed over (or the wait timed out)

	mu        sync.Mutex // sequence assignment + send, outgoing buffer, RTO, pause
	seq       int64
	out       []outMsg
	srtt      float64 // ns
	rttvar    float64 // ns
	rto       time.Duration
	rtoPinned bool // Config.AgentRTO: rto is not estimated
	pause     bool

	tmu          sync.Mutex
	target       net.Conn
	targetGone   bool // closed for good (session ending)
	disconnected bool // DisconnectToPort / LPF EOF: re-dial on next Output (LPF)
	newTarget    chan struct{}
	mux          *smux.Session

	// reader-owned
	expected  int64
	pendingHS *wire.HandshakeResponse
	inbuf     map[int64][]byte
}

func newAgent(ss *session) *agent {
	v, _ := parseVersion(ss.srv.cfg.AgentVersion)
	a := &agent{
		ss:        ss,
		srv:       ss.srv,
		version:   v,
		in:        make(chan []byte, 64),
		hsResp:    make(chan *wire.HandshakeResponse, 1),
		stopCh:    make(chan struct{}),
		srtt:      float64(initialSRTT),
		rto:       initialRTO,
		inbuf:     make(map[int64][]byte),
		newTarget: make(chan struct{}, 1),
	}
	if r := ss.srv.cfg.AgentRTO; r > 0 {
		a.rto, a.rtoPinned = r, true
	}
	a.lpf.Store(ss.props["type"] == "LocalPortForwarding")
	return a
}

// deliver hands a frame from the gateway to the agent's reader, blocking
// like TCP back-pressure through MGS; false when the session ended first.
func (a *agent) deliver(b []byte) bool {
	select {
	case a.in <- b:
		return true
	case <-a.ss.ctx.Done():
		return false
	}
}

func (a *agent) start() bool {
	return a.srv.goTracked(a.run) && a.srv.goTracked(a.reader) && a.srv.goTracked(a.resender)
}

// stop asks the session worker to end (first reason wins).
func (a *agent) stop(why endReason, output string, failed bool) {
	a.stopOnce.Do(func() {
		a.stopWhy, a.stopOut, a.stopFail = why, output, failed
		close(a.stopCh)
		a.closeTarget(false)
	})
}

func (a *agent) stopped() bool {
	select {
	case <-a.stopCh:
		return true
	default:
		return false
	}
}

// stopTarget closes the target connection for good (session finished).
func (a *agent) stopTarget() { a.closeTarget(true) }

func (a *agent) closeTarget(forGood bool) {
	a.tmu.Lock()
	t := a.target
	a.target = nil
	var mux *smux.Session
	if forGood {
		a.targetGone = true
		mux, a.mux = a.mux, nil
	}
	a.tmu.Unlock()
	if t != nil {
		_ = t.Close()
	}
	if mux != nil {
		_ = mux.Close()
	}
}

func (a *agent) getTarget() net.Conn {
	a.tmu.Lock()
	defer a.tmu.Unlock()
	return a.target
}

func (a *agent) setTarget(c net.Conn) bool {
	a.tmu.Lock()
	if a.targetGone || a.stopped() {
		a.tmu.Unlock()
		_ = c.Close()
		return false
	}
	a.target = c
	a.disconnected = false
	a.tmu.Unlock()
	a.connected.Store(true)
	select {
	case a.newTarget <- struct{}{}:
	default:
	}
	return true
}

// run is the session worker: session state, handshake, target dial, then the
// target → client loop; at the end it drains and lets the service close the
// channel.
func (a *agent) run() {
	ss := a.ss
	cfg := &a.srv.cfg
	a.sendSessionState()
	deadline := time.NewTimer(time.Until(ss.started.Add(cfg.HandshakeTimeout)))
	defer deadline.Stop()

	// The real agent sends HandshakeRequest as soon as its own data channel is
	// up and retransmits it until the client is there; the emulator sends it
	// when the client's OpenDataChannel arrives (the retransmission that
	// would reach the client), so the handshake is not delayed by an RTO.
	select {
	case <-ss.connected:
	case <-deadline.C:
		a.end(endFailed, handshakeTimeoutMsg, true)
		return
	case <-a.stopCh:
		a.end(a.stopWhy, a.stopOut, a.stopFail)
		return
	case <-ss.ctx.Done():
		return
	}
	params, _ := json.Marshal(wire.SessionTypeParameters{SessionType: wire.SessionTypePort, Properties: ss.props})
	// SessionType first, then the others (the real agent appends
	// KMSEncryption after it: [A] datachannel.go:1014-1036).
	actions := make([]wire.RequestedAction, 0, len(cfg.ExtraHandshakeActions)+1)
	actions = append(actions, wire.RequestedAction{ActionType: "SessionType", ActionParameters: params})
	for _, x := range cfg.ExtraHandshakeActions {
		actions = append(actions, wire.RequestedAction{ActionType: x.ActionType, ActionParameters: x.ActionParameters})
	}
	req, _ := json.Marshal(wire.HandshakeRequest{
		AgentVersion:           cfg.AgentVersion,
		RequestedClientActions: actions,
	})
	a.sendStream(wire.PayloadHandshakeRequest, req, wire.FlagsSYN)

	var resp *wire.HandshakeResponse
	select {
	case resp = <-a.hsResp:
	case <-deadline.C:
		a.hsRespTaken.Store(true)
		a.end(endFailed, handshakeTimeoutMsg, true)
		return
	case <-a.stopCh:
		a.end(a.stopWhy, a.stopOut, a.stopFail)
		return
	case <-ss.ctx.Done():
		return
	}
	var errs []string
	for _, act := range resp.ProcessedClientActions {
		if act.ActionStatus != wire.ActionSuccess {
			errs = append(errs, fmt.Sprintf("%s failed on client with status %v error: %s", act.ActionType, act.ActionStatus, act.Error))
		}
	}
	if len(errs) > 0 {
		a.end(endFailed, handshakeErrPrefix+errs[len(errs)-1], true)
		return
	}
	done, _ := json.Marshal(wire.HandshakeComplete{HandshakeTimeToComplete: int64(time.Since(ss.started)), CustomerMessage: ""})
	a.sendStream(wire.PayloadHandshakeComplete, done, wire.FlagsNone)
	if !a.sleep(cfg.HandshakeDiscardWindow) {
		a.end(a.stopWhy, a.stopOut, a.stopFail)
		return
	}
	a.hsDone.Store(true)
	a.srv.st.handshakes.Add(1)
	a.srv.log.Debug("ssmtest: handshake complete", "session", ss.id, "clientVersion", resp.ClientVersion)

	if msg := a.forbidden(); msg != "" {
		a.srv.log.Info("ssmtest: forwarding refused", "session", ss.id, "output", msg)
		a.end(endFailed, msg, true)
		return
	}
	if !a.sleep(cfg.TargetDialDelay) {
		a.end(a.stopWhy, a.stopOut, a.stopFail)
		return
	}
	var c net.Conn
	var err error
	if mux, keepAlive := a.muxMode(resp.ClientVersion); mux {
		a.isMux.Store(true)
		a.lpf.Store(false)
		c, err = a.startMux(keepAlive)
	} else {
		c, err = a.dial()
	}
	if err != nil {
		a.end(endFailed, "Unable to connect to specified port: "+err.Error(), true)
		return
	}
	if !a.setTarget(c) {
		a.end(a.stopWhy, a.stopOut, a.stopFail)
		return
	}
	why, out, failed := a.writePump(c)
	a.end(why, out, failed)
}

// sleep waits d unless the agent is stopped (false) or the session ends.
func (a *agent) sleep(d time.Duration) bool {
	if d <= 0 {
		return !a.stopped()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a.stopCh:
		return false
	case <-a.ss.ctx.Done():
		return false
	}
}

// targetAddr is the address the agent dials: the remote host document's
// host:portNumber, else Config.Targets[instance] (joined with portNumber
// when it has no port).
func (a *agent) targetAddr() string {
	p := a.ss.props
	if h := p["host"]; h != "" {
		if ip, ok := a.srv.cfg.Hosts[h]; ok {
			h = ip
		}
		return net.JoinHostPort(h, p["portNumber"])
	}
	if _, _, err := net.SplitHostPort(a.ss.addr); err == nil {
		return a.ss.addr
	}
	return net.JoinHostPort(a.ss.addr, p["portNumber"])
}

// forbidden applies the agent's deny list to the remote-host document's
// host ([A] plugins/port/port.go validateParameters): resolve once, refuse
// if any address is listed. It returns the agent's output text, or "".
func (a *agent) forbidden() string {
	h := a.ss.props["host"]
	if h == "" {
		return ""
	}
	name := h
	if ip, ok := a.srv.cfg.Hosts[h]; ok {
		name = ip
	}
	addrs, err := net.DefaultResolver.LookupHost(a.ss.ctx, name)
	if err != nil {
		return "" // the dial fails later, as in the agent
	}
	for _, r := range addrs {
		ip := net.ParseIP(r)
		for _, d := range a.srv.cfg.ForbiddenAddresses {
			if ip != nil && ip.Equal(net.ParseIP(d)) {
				return fmt.Sprintf("Forwarding to IP address %s is forbidden.", h)
			}
		}
	}
	return ""
}

func (a *agent) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: targetDialTimeout}
	c, err := d.DialContext(a.ss.ctx, "tcp", a.targetAddr())
	if err == nil {
		a.srv.st.targetDials.Add(1)
	}
	return c, err
}

// writePump is the agent's target → client loop ([A] port_basic.go:119-149):
// read at most ChunkSize bytes, send one Output message, pace, repeat; skip
// reading while paused.
func (a *agent) writePump(c net.Conn) (endReason, string, bool) {
	cfg := &a.srv.cfg
	st := &a.srv.st
	buf := make([]byte, cfg.ChunkSize)
	var pc pacer
	pc.realistic = cfg.Pacing == Realistic
	for {
		if a.stopped() {
			return a.stopWhy, a.stopOut, a.stopFail
		}
		if a.isPaused() {
			if !a.sleep(pausedLoopSleep) {
				return a.stopWhy, a.stopOut, a.stopFail
			}
			continue
		}
		n, err := c.Read(buf)
		if n > 0 {
			t0 := time.Now()
			p := make([]byte, n)
			copy(p, buf[:n])
			a.sendStream(wire.PayloadOutput, p, wire.FlagsNone)
			st.bytesFromTarget.Add(int64(n))
			pc.pace()
			st.pacedMessages.Add(1)
			st.pacedBytes.Add(int64(n))
			st.pacedNanos.Add(int64(time.Since(t0)))
		}
		if err != nil {
			if a.stopped() {
				return a.stopWhy, a.stopOut, a.stopFail
			}
			a.tmu.Lock()
			disc := a.disconnected
			a.tmu.Unlock()
			if a.lpf.Load() && (disc || errors.Is(err, io.EOF)) {
				// Basic LPF: close, wait for the next client Output, which
				// re-dials ([A] port_basic.go:181-200).
				a.tmu.Lock()
				if a.target == c {
					a.target = nil
				}
				a.disconnected = true
				a.tmu.Unlock()
				_ = c.Close()
				nc := a.waitTarget()
				if nc == nil {
					return a.stopWhy, a.stopOut, a.stopFail
				}
				c = nc
				continue
			}
			// SSH / non-LPF basic: EOF is success, any other read error
			// (including the one DisconnectToPort causes by closing the
			// connection) is a failure without output text
			// ([A] port_basic.go:160-178, port.go:246-255).
			if errors.Is(err, io.EOF) && !disc {
				return endTargetClosed, "", false
			}
			return endTargetClosed, "", true
		}
	}
}

func (a *agent) waitTarget() net.Conn {
	for {
		if t := a.getTarget(); t != nil {
			return t
		}
		select {
		case <-a.newTarget:
		case <-a.stopCh:
			return nil
		case <-a.ss.ctx.Done():
			return nil
		}
	}
}

// end closes the target, waits up to DrainTimeout for unacknowledged output
// ([A] datachannel.go:388-403), then the service closes the channel.
func (a *agent) end(why endReason, output string, failed bool) {
	a.closeTarget(true)
	if why != endServerClosed && why != endChannelClosed && why != endTerminateAPI {
		deadline := time.Now().Add(a.srv.cfg.DrainTimeout)
		for time.Now().Before(deadline) {
			a.mu.Lock()
			n := len(a.out)
			a.mu.Unlock()
			if n == 0 {
				break
			}
			t := time.NewTimer(drainPoll)
			select {
			case <-t.C:
			case <-a.ss.ctx.Done():
				t.Stop()
				return
			}
		}
	}
	a.ss.finish(why, output, failed)
}

func (a *agent) isPaused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pause
}

// control delivers a service message to the agent.
func (a *agent) control(msgType string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch msgType {
	case wire.PausePublication:
		a.pause = true
		a.srv.st.pauses.Add(1)
	case wire.StartPublication:
		a.pause = false
	}
}

// sendStream assigns the next sequence number and sends an
// output_stream_data message; number assignment, buffering and the send are
// atomic, as in the agent ([A] datachannel.go:419-462). While paused the
// message is buffered unsent.
func (a *agent) sendStream(pt wire.PayloadType, payload []byte, flags uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	m := wire.Message{
		MessageType:    wire.OutputStreamData,
		SchemaVersion:  wire.SchemaVersion,
		CreatedDate:    wire.Millis(now),
		SequenceNumber: a.seq,
		Flags:          flags,
		MessageID:      uuid.New(),
		PayloadType:    pt,
	}
	m.SetPayload(payload)
	b, _ := wire.Encode(nil, &m)
	a.seq++
	if len(a.out) < outgoingCapacity {
		a.out = append(a.out, outMsg{seq: m.SequenceNumber, b: b, last: now})
	}
	a.srv.st.agentSent.Add(1)
	if !a.pause {
		a.ss.fromAgent(b)
		if a.ss.socketFull() {
			// KillWebsocket: the service noticed the dead socket and
			// pauses the agent (KillWebsocket sends pause_publication
			// too, a moment later).
			a.pause = true
		}
	}
}

func (a *agent) sendSessionState() {
	p, _ := json.Marshal(wire.AgentSessionStatePayload{SchemaVersion: 1, SessionState: "Connected", SessionID: a.ss.id})
	m := wire.Message{
		MessageType:   wire.AgentSessionState,
		SchemaVersion: wire.SchemaVersion,
		CreatedDate:   wire.Millis(time.Now()),
		Flags:         wire.FlagsAck,
		MessageID:     uuid.New(),
		PayloadType:   wire.PayloadNone,
	}
	m.SetPayload(p)
	b, _ := wire.Encode(nil, &m)
	a.ss.fromAgent(b)
}

func (a *agent) sendAck(m *wire.Message) {
	var pb [256]byte
	p := wire.AppendAck(pb[:0], m.MessageType, m.MessageID, m.SequenceNumber)
	ack := wire.Message{
		MessageType:   wire.Acknowledge,
		SchemaVersion: wire.SchemaVersion,
		CreatedDate:   wire.Millis(time.Now()),
		Flags:         wire.FlagsAck,
		MessageID:     uuid.New(),
		PayloadType:   wire.PayloadNone,
	}
	ack.SetPayload(p)
	b, _ := wire.Encode(make([]byte, 0, wire.HeaderSize+len(p)), &ack)
	a.srv.st.acksSent.Add(1)
	a.ss.fromAgent(b)
}

// resender retransmits the head of the outgoing buffer when its RTO expired,
// checking every 100 ms, forever, except while paused ([A] datachannel.go:468-499).
func (a *agent) resender() {
	t := time.NewTicker(resendTick)
	defer t.Stop()
	for {
		select {
		case <-a.ss.ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		if !a.pause && len(a.out) > 0 && time.Since(a.out[0].last) > a.rto {
			a.out[0].last = time.Now()
			a.srv.st.retrans.Add(1)
			a.ss.fromAgent(a.out[0].b)
		}
		a.mu.Unlock()
	}
}

// reader processes client frames in order, like the agent's websocket reader.
func (a *agent) reader() {
	for {
		select {
		case <-a.ss.ctx.Done():
			return
		case b := <-a.in:
			a.handle(b)
		}
	}
}

func (a *agent) handle(b []byte) {
	var m wire.Message
	if err := wire.Decode(b, &m); err != nil {
		return
	}
	// AgentMessage.Validate: header checks, no digest check.
	if m.CreatedDate == 0 {
		return
	}
	switch m.MessageType {
	case wire.InputStreamData:
		a.handleStream(&m, b)
	case wire.Acknowledge:
		a.handleAck(&m)
	case wire.ChannelClosed:
		a.stop(endChannelClosed, "", false)
	case wire.PausePublication:
		a.control(wire.PausePublication)
	case wire.StartPublication:
		a.control(wire.StartPublication)
	}
}

func (a *agent) handleStream(m *wire.Message, b []byte) {
	a.control(wire.StartPublication) // any stream data clears Pause
	st := &a.srv.st
	switch seq := m.SequenceNumber; {
	case seq == a.expected:
		if err := a.process(m); err != nil {
			if errors.Is(err, errNotReady) {
				st.notReady.Add(1)
			}
			return // no ack, expected unchanged: the client retransmits
		}
		a.sendAck(m)
		a.expected++
		if r := a.pendingHS; r != nil {
			a.pendingHS = nil
			a.hsResp <- r // capacity 1: never blocks
		}
		// Drain the buffer. Like the agent, an error (even "not ready")
		// stops the drain and leaves the message and E in place; it was
		// acked on arrival, so a client will not resend it and the session
		// stalls ([A] datachannel.go:785-811).
		for {
			bb, ok := a.inbuf[a.expected]
			if !ok {
				break
			}
			var mm wire.Message
			if err := wire.Decode(bb, &mm); err != nil {
				break
			}
			if err := a.process(&mm); err != nil {
				if errors.Is(err, errNotReady) {
					st.notReady.Add(1)
				}
				a.srv.log.Info("ssmtest: agent: buffered message not processed; stream stalls like the real agent's", "session", a.ss.id, "seq", mm.SequenceNumber, "error", err)
				break
			}
			delete(a.inbuf, a.expected)
			a.expected++
		}
	case seq > a.expected:
		if len(a.inbuf) < incomingCapacity {
			a.inbuf[seq] = b
			st.oooBuffered.Add(1)
			a.sendAck(m)
		}
	default:
		if compareVersion(a.version, versionReackDuplicates) >= 0 {
			st.dupReacked.Add(1)
			a.sendAck(m)
		}
	}
}

// process handles one in-order client message; errNotReady or another error
// means "do not acknowledge".
func (a *agent) process(m *wire.Message) error {
	st := &a.srv.st
	switch m.PayloadType {
	case wire.PayloadHandshakeResponse:
		var r wire.HandshakeResponse
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			return err
		}
		// The agent hands the response to the waiting handshake over an
		// unbuffered channel; a second one (or one after the timeout)
		// blocks its reader for good ([A] datachannel.go:262-264,887).
		if a.hsRespTaken.CompareAndSwap(false, true) {
			// Handed to run() after the acknowledgement is written: in
			// the real agent the reader's ack and the handshake
			// goroutine's HandshakeComplete race, and the ack normally
			// wins (agent-capture.txt data #8 before #9). The opposite
			// order makes the real plugin's mux mode panic in its reader
			// (an ack arriving between its Initialize and
			// InitializeStreams), so the emulator keeps the usual order.
			a.pendingHS = &r
			return nil
		}
		a.srv.log.Warn("ssmtest: agent: HandshakeResponse nobody waits for; the agent's reader blocks (real agent hazard)", "session", a.ss.id, "seq", m.SequenceNumber)
		<-a.ss.ctx.Done()
		return errNotReady
	case wire.PayloadEncChallengeResponse:
		return nil
	}
	if !a.hsDone.Load() {
		st.discarded.Add(1) // "Handshake still in progress, ignore stream data message"
		return nil
	}
	switch m.PayloadType {
	case wire.PayloadOutput:
		t := a.getTarget()
		if t == nil {
			a.tmu.Lock()
			redial := a.lpf.Load() && a.disconnected && !a.targetGone
			a.tmu.Unlock()
			if !redial {
				return errNotReady
			}
			c, err := a.dial()
			if err != nil {
				a.stop(endFailed, "Unable to connect to specified port: "+err.Error(), true)
				return err
			}
			if !a.setTarget(c) {
				return errNotReady
			}
			t = c
		}
		n, err := t.Write(m.Payload)
		st.bytesToTarget.Add(int64(n))
		return err
	case wire.PayloadFlag:
		// IsConnectionAvailable: the connection exists (a closed one
		// still counts in basic LPF mode, [A] port_basic.go:63-66).
		if !a.connected.Load() || (a.getTarget() == nil && !a.lpf.Load()) {
			return errNotReady
		}
		f, err := wire.ParseFlag(m.Payload)
		if err != nil {
			return nil
		}
		switch f {
		case wire.TerminateSession:
			if compareVersion(a.version, versionTerminateFlag) > 0 {
				a.stop(endTerminateFlag, "", false)
			}
		case wire.DisconnectToPort:
			if a.isMux.Load() {
				return nil // the mux session ignores it ([A] port_mux.go:106-119)
			}
			a.tmu.Lock()
			t := a.target
			a.target = nil
			a.disconnected = true
			a.tmu.Unlock()
			if t != nil {
				_ = t.Close()
			}
		}
		return nil
	}
	return nil
}

func (a *agent) handleAck(m *wire.Message) {
	seq, err := wire.ParseAck(m.Payload)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pause = false // any ack clears Pause
	if err != nil {
		return
	}
	for i := range a.out {
		if a.out[i].seq != seq {
			continue
		}
		a.updateRTO(time.Since(a.out[i].last))
		if i == 0 {
			a.out[0] = outMsg{}
			a.out = a.out[1:]
		} else {
			a.out = append(a.out[:i], a.out[i+1:]...)
		}
		a.srv.st.acksReceived.Add(1)
		return
	}
}

// updateRTO applies reference §6.5 (RFC 6298 without the 1 s floor, 1 s cap).
func (a *agent) updateRTO(sample time.Duration) {
	if a.rtoPinned {
		return // Config.AgentRTO
	}
	r := float64(sample)
	a.rttvar = (1-rttBeta)*a.rttvar + rttBeta*math.Abs(a.srtt-r)
	a.srtt = (1-rttAlpha)*a.srtt + rttAlpha*r
	rto := time.Duration(a.srtt + math.Max(float64(clockGranularity), 4*a.rttvar))
	if rto > maxRTO {
		rto = maxRTO
	}
	a.rto = rto
}

// parseVersion, mustVersion and compareVersion: see package version.
var (
	parseVersion   = version.Parse
	mustVersion    = version.Must
	compareVersion = version.Compare
)
