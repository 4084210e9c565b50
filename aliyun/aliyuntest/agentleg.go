package aliyuntest

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/aliyun/internal/axt"
	"github.com/jumpless/jumpless/internal/testca"
)

// The server side a real Cloud Assistant agent talks to (protocol §1,
// §3.2; measured §2): point the agent at AgentHost with
// ALIYUN_ASSIST_SERVER_HOST and trust CACertPEM with SSL_CERT_FILE.
// Sessions of Config.RealAgent's instance are then relayed to it instead
// of the emulated agent: the server kicks the agent over its notify
// websocket, answers session/list, and translates between the client
// leg and the agent's 60-byte leg.

type agentLeg struct {
	s   *Server
	ln  net.Listener
	srv *http.Server
	ca  *testca.CA

	mu       sync.Mutex
	notify   *websocket.Conn
	notifyMu sync.Mutex
	notifyUp chan struct{}
	pending  map[string]*channel // channel id → client channel waiting for / using the agent
	statuses []string
}

func (s *Server) startAgentLeg() error {
	ca, err := testca.New("aliyuntest", net.IPv4(127, 0, 0, 1))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	a := &agentLeg{s: s, ln: ln, ca: ca, pending: map[string]*channel{}, notifyUp: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/luban/api/connection_detect", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/luban/notify_server", a.serveNotify)
	mux.HandleFunc("/luban/api/v1/session/list", a.serveSessionList)
	mux.HandleFunc("/luban/api/v1/session/status", a.serveSessionStatus)
	mux.HandleFunc("/luban/session/backend", a.serveBackend)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { // heart-beat, metrics, task/list, ...
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"code":200}`))
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		// The agent's heart-beat tries plain http first (measured): quiet the TLS server's complaint.
		ErrorLog:  log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Leaf}, MinVersion: tls.VersionTLS12}}
	s.agent = a
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		a.srv.ServeTLS(ln, "", "")
	}()
	return nil
}

// AgentHost is the host:port for the real agent's
// ALIYUN_ASSIST_SERVER_HOST ("" unless Config.RealAgent is set).
func (s *Server) AgentHost() string {
	if s.agent == nil {
		return ""
	}
	return s.agent.ln.Addr().String()
}

// CACertPEM is the CA the agent must trust (SSL_CERT_FILE); nil unless
// Config.RealAgent is set.
func (s *Server) CACertPEM() []byte {
	if s.agent == nil {
		return nil
	}
	return s.agent.ca.PEM
}

// AgentConnected is closed when the real agent's notify websocket is up.
func (s *Server) AgentConnected() <-chan struct{} {
	if s.agent == nil {
		return nil
	}
	return s.agent.notifyUp
}

// AgentReports lists the agent's session/status reports
// ("<channel> <status> <errorcode>").
func (s *Server) AgentReports() []string {
	if s.agent == nil {
		return nil
	}
	s.agent.mu.Lock()
	defer s.agent.mu.Unlock()
	return append([]string(nil), s.agent.statuses...)
}

func (a *agentLeg) serveNotify(w http.ResponseWriter, r *http.Request) {
	ws, err := a.s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	a.s.wg.Add(1)
	defer a.s.wg.Done()
	a.mu.Lock()
	if a.notify != nil {
		a.notify.Close()
	}
	a.notify = ws
	select {
	case <-a.notifyUp:
	default:
		close(a.notifyUp)
	}
	a.mu.Unlock()
	for {
		if _, _, err := ws.ReadMessage(); err != nil { // "accept:kick_vm …" replies
			return
		}
	}
}

func (a *agentLeg) kick(verb, channelID string) error {
	a.mu.Lock()
	ws := a.notify
	a.mu.Unlock()
	if ws == nil {
		return fmt.Errorf("no agent connected")
	}
	a.notifyMu.Lock()
	defer a.notifyMu.Unlock()
	ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return ws.WriteMessage(websocket.TextMessage, []byte("kick_vm session "+verb+" "+channelID))
}

func (a *agentLeg) channel(id string) *channel {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending[id]
}

func (a *agentLeg) serveSessionList(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("channelId")
	c := a.channel(id)
	w.Header().Set("Content-Type", "application/json")
	if c == nil {
		w.Write([]byte(`{"code":200,"session":[]}`))
		return
	}
	sess := map[string]any{
		"channelId": id, "cmdContent": "", "portNumber": strconv.Itoa(c.ss.port), "targetHost": c.ss.target,
		"username": "", "websocketUrl": "wss://" + a.ln.Addr().String() + "/luban/session/backend?channelId=" + id,
	}
	if a.s.cfg.FlowLimit > 0 {
		sess["flowLimit"] = a.s.cfg.FlowLimit
	}
	json.NewEncoder(w).Encode(map[string]any{"code": 200, "instanceId": c.ss.instance, "session": []any{sess}})
}

func (a *agentLeg) serveSessionStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, status, code := q.Get("channelId"), q.Get("status"), q.Get("errorcode")
	a.mu.Lock()
	a.statuses = append(a.statuses, id+" "+status+" "+code)
	a.mu.Unlock()
	if c := a.channel(id); c != nil && status != "Success" {
		go c.end(code)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"code":200}`))
}

// serveBackend is the agent's session websocket: relay it to the client.
func (a *agentLeg) serveBackend(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("channelId")
	c := a.channel(id)
	if c == nil {
		http.Error(w, "unknown or finished channel", http.StatusNotFound)
		return
	}
	ws, err := a.s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	a.s.wg.Add(1)
	defer a.s.wg.Done()
	c.mu.Lock()
	if c.agentWS != nil {
		c.agentWS.Close()
	}
	c.agentWS = ws
	c.mu.Unlock()
	select {
	case <-c.closed:
		ws.Close()
		return
	default:
	}
	var m axt.AgentMessage
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if axt.DecodeAgent(b, &m) != nil {
			continue
		}
		if m.Type == axt.Output && len(m.Payload) > 0 {
			c.waitStall()
			if c.send(axt.Output, m.Payload) != nil {
				return
			}
			c.s.stats.toClient.Add(int64(len(m.Payload)))
		}
	}
}

// relayToAgent forwards one client message to the agent's websocket.
// Without an agent websocket yet the message is lost, as Input before the
// agent is ready is (pessimistic).
func (c *channel) relayToAgent(t axt.Type, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agentWS == nil {
		if len(p) > 0 {
			c.s.stats.dropped.Add(1)
		}
		return
	}
	m := axt.AgentMessage{Type: t, ChannelID: c.id, Created: uint64(time.Now().UnixMilli()), Seq: c.agentSeq, Payload: p}
	c.agentSeq++
	b, err := m.Append(nil)
	if err != nil {
		return
	}
	c.agentWS.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if c.agentWS.WriteMessage(websocket.BinaryMessage, b) == nil && t == axt.Input {
		c.s.stats.toTarget.Add(int64(len(p)))
	}
}

// startRelay registers c with the agent leg and kicks the agent.
func (a *agentLeg) startRelay(c *channel) {
	a.mu.Lock()
	a.pending[c.id] = c
	a.mu.Unlock()
	if err := a.kick("start", c.id); err != nil {
		go c.end("AgentTimeout")
	}
}

// stopRelay tells the agent the channel ended and forgets it.
func (a *agentLeg) stopRelay(c *channel) {
	a.mu.Lock()
	delete(a.pending, c.id)
	a.mu.Unlock()
	a.kick("stop", c.id)
	c.mu.Lock()
	if c.agentWS != nil {
		c.agentWS.Close()
	}
	c.mu.Unlock()
}

func (a *agentLeg) close() {
	a.srv.Close()
	a.mu.Lock()
	if a.notify != nil {
		a.notify.Close()
	}
	a.mu.Unlock()
}
