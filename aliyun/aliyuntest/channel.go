package aliyuntest

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/aliyun/internal/axt"
)

// urlValidity is how long a WebSocketUrl accepts new connections.
const urlValidity = 10 * time.Minute

type session struct {
	id, instance string
	port         int
	target       string
	token        string
	chans        map[*channel]struct{}
	n            int
	ended        bool
	created      time.Time
}

// channel is one client websocket and the emulated agent behind it.
type channel struct {
	s  *Server
	ss *session
	id string
	ws *websocket.Conn

	wmu sync.Mutex
	seq uint64

	mu       sync.Mutex
	target   net.Conn // nil before the dial and after the target closed
	dialed   bool
	redial   bool // the target closed: the next Input re-dials (v578)
	targetWG sync.WaitGroup

	lastIn  atomic.Int64
	stalled atomic.Bool
	stallCh chan struct{}

	closed chan struct{}
	once   sync.Once

	// relay to a real agent (Config.RealAgent)
	relay    bool
	agentWS  *websocket.Conn
	agentSeq int64
}

// serveClient is the client leg: GET /session?sessionId=…&token=….
func (s *Server) serveClient(w http.ResponseWriter, r *http.Request) {
	id, token := r.URL.Query().Get("sessionId"), r.URL.Query().Get("token")
	s.mu.Lock()
	ss, ok := s.sessions[id]
	switch {
	case s.closed:
		s.mu.Unlock()
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return
	case !ok || ss.ended:
		s.mu.Unlock()
		http.Error(w, "unknown or ended session", http.StatusNotFound)
		return
	case token != ss.token:
		s.mu.Unlock()
		http.Error(w, "bad token", http.StatusForbidden)
		return
	case time.Since(ss.created) > urlValidity:
		s.mu.Unlock()
		http.Error(w, "WebSocketUrl expired", http.StatusForbidden)
		return
	}
	ss.n++
	c := &channel{s: s, ss: ss, id: fmt.Sprintf("%s-%03d", ss.id, ss.n), closed: make(chan struct{}), stallCh: make(chan struct{})}
	s.wg.Add(1) // before Unlock: Close waits for this handler
	s.mu.Unlock()
	defer s.wg.Done()
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c.ws = ws
	s.mu.Lock()
	if s.closed || ss.ended {
		s.mu.Unlock()
		ws.Close()
		return
	}
	ss.chans[c] = struct{}{}
	s.mu.Unlock()
	s.stats.connsTotal.Add(1)
	c.lastIn.Store(time.Now().UnixNano())
	s.log.Debug("aliyuntest: channel open", "channel", c.id)
	defer func() {
		c.kill()
		c.targetWG.Wait()
		s.mu.Lock()
		delete(ss.chans, c)
		s.mu.Unlock()
	}()
	if s.cfg.FlowLimit > 0 {
		c.status(axt.StatusRate, nil, uint32(min(s.cfg.FlowLimit, 1<<32-1)))
	}
	if ss.instance == s.cfg.RealAgent {
		c.relay = true
		s.agent.startRelay(c)
		defer s.agent.stopRelay(c)
		c.readClient()
		return
	}
	if s.cfg.DialDelay < 0 {
		// Fast mode: the target is dialled before the first client message
		// is read, so no Input can arrive "before the agent is ready".
		c.mu.Lock()
		err := c.dialLocked()
		c.dialed = true
		c.mu.Unlock()
		if err != nil {
			go c.end("OpenPortFailed") // assumption: what the server relays is not public (v578 reports Open_port_failed)
		}
		c.targetWG.Add(1)
	} else {
		c.targetWG.Add(2)
		go c.dialLater()
	}
	go c.idleTimer()
	c.readClient()
}

// host:port the agent dials.
func (c *channel) targetAddr() string {
	host := c.ss.target
	if ip, ok := c.s.cfg.Hosts[host]; ok && host != "" {
		host = ip
	}
	if host == "" {
		host, _ = c.s.host(c.ss.instance)
	}
	return net.JoinHostPort(host, strconv.Itoa(c.ss.port))
}

func (c *channel) dialLater() {
	defer c.targetWG.Done()
	if d := c.s.cfg.DialDelay; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.closed:
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.dialLocked(); err != nil {
		go c.end("OpenPortFailed")
	}
	c.dialed = true
}

// dialLocked dials the target and starts its reader. c.mu is held.
func (c *channel) dialLocked() error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	c.s.stats.dials.Add(1)
	conn, err := net.DialTimeout("tcp", c.targetAddr(), 10*time.Second)
	if err != nil {
		c.s.log.Debug("aliyuntest: target dial failed", "channel", c.id, "err", err)
		return err
	}
	c.target, c.redial = conn, false
	c.targetWG.Add(1)
	go c.readTarget(conn)
	return nil
}

// readTarget is the agent's port plugin: read ≤ 2048 B, send one Output,
// sleep the pacing interval. A read error closes the target silently (no
// EOF reaches the client) and arms the re-dial.
func (c *channel) readTarget(conn net.Conn) {
	defer c.targetWG.Done()
	buf := make([]byte, axt.ChunkSize)
	rate := uint32(DefaultRate)
	if c.s.cfg.FlowLimit > 0 {
		rate = uint32(min(c.s.cfg.FlowLimit, 1<<32-1))
	}
	iv := time.Duration(axt.PacingInterval(rate, axt.ChunkSize)) * time.Millisecond
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			c.waitStall()
			if c.send(axt.Output, buf[:n]) != nil {
				conn.Close()
				return
			}
			c.s.stats.toClient.Add(int64(n))
			if iv > 0 {
				t := time.NewTimer(iv)
				select {
				case <-t.C:
				case <-c.closed:
					t.Stop()
					conn.Close()
					return
				}
			}
		}
		if err != nil {
			conn.Close()
			c.mu.Lock()
			if c.target == conn {
				c.target, c.redial = nil, true
			}
			c.mu.Unlock()
			return
		}
	}
}

// readClient handles the client's messages until its websocket ends.
func (c *channel) readClient() {
	var m axt.Message
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				c.s.stats.normalCloses.Add(1)
			}
			return
		}
		if axt.Decode(b, &m) != nil || m.Created == 0 {
			continue // the agent drops what does not decode or has no timestamp
		}
		c.lastIn.Store(time.Now().UnixNano())
		if m.Type == axt.Input && len(m.Payload) > 0 {
			c.s.stats.inputs.Add(1)
			for {
				cur := c.s.stats.maxInput.Load()
				if int64(len(m.Payload)) <= cur || c.s.stats.maxInput.CompareAndSwap(cur, int64(len(m.Payload))) {
					break
				}
			}
		}
		if c.relay {
			switch m.Type {
			case axt.Input, axt.Close:
				if m.Type == axt.Input && len(m.Payload) == 0 {
					c.s.stats.keepalives.Add(1)
				}
				if m.Type == axt.Close {
					c.s.stats.closes.Add(1)
				}
				c.waitStall()
				c.relayToAgent(m.Type, m.Payload)
			}
			continue
		}
		switch m.Type {
		case axt.Input:
			if len(m.Payload) == 0 {
				c.s.stats.keepalives.Add(1)
				continue
			}
			c.waitStall()
			if !c.toTarget(m.Payload) {
				return
			}
		case axt.Close:
			c.s.stats.closes.Add(1) // forwarded; the v578 agent ignores it
		}
	}
}

// toTarget writes an Input to the target, re-dialling it if it closed.
func (c *channel) toTarget(p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dialed {
		c.s.stats.dropped.Add(1) // "connect not ready": lost
		return true
	}
	if c.target == nil {
		if !c.redial || c.dialLocked() != nil {
			c.s.stats.dropped.Add(1)
			return true
		}
	}
	if _, err := c.target.Write(p); err != nil {
		c.target.Close()
		c.target, c.redial = nil, true
		return true
	}
	c.s.stats.toTarget.Add(int64(len(p)))
	return true
}

func (c *channel) idleTimer() {
	defer c.targetWG.Done()
	it := c.s.cfg.IdleTimeout
	if it < 0 {
		return
	}
	tick := time.NewTicker(min(it/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-tick.C:
			if time.Since(time.Unix(0, c.lastIn.Load())) > it {
				go c.end("IdleTimeout")
				return
			}
		}
	}
}

func (c *channel) waitStall() {
	for c.stalled.Load() {
		select {
		case <-c.closed:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// send writes one client-leg message (schema 1.01, channel id in the
// header, sequence numbers from 0).
func (c *channel) send(t axt.Type, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	m := axt.Message{Type: t, Version: axt.Schema101, ChannelID: c.id, Created: uint64(time.Now().UnixMilli()), Seq: c.seq, Payload: payload}
	b, err := m.Append(nil)
	if err != nil {
		return err
	}
	c.seq++
	c.ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (c *channel) status(code axt.StatusCode, reason []byte, rate uint32) error {
	p := axt.StatusPayload(code, reason)
	if code == axt.StatusRate {
		p = axt.RatePayload(rate)
	}
	return c.send(axt.Status, p)
}

// end sends Status 5 with reason, closes the websocket normally and the
// target.
func (c *channel) end(reason string) {
	select {
	case <-c.closed:
		return
	default:
	}
	c.status(axt.StatusClosed, []byte(reason), 0)
	c.wmu.Lock()
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	c.kill()
}

// kill drops the websocket and the target without a word.
func (c *channel) kill() {
	c.once.Do(func() {
		close(c.closed)
		if c.ws != nil {
			c.ws.Close()
		}
		c.mu.Lock()
		if c.target != nil {
			c.target.Close()
		}
		if c.agentWS != nil {
			c.agentWS.Close()
		}
		c.mu.Unlock()
	})
}
