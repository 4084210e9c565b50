package ssmtest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Gateway mode: the service side of MGS (message gateway service) for a real
// amazon-ssm-agent that dials in, as ../shared/docs/ssm-real-peers.md §3.3
// describes and the agent's source ([A] agent/session/controlchannel,
// agent/session/datachannel, agent/session/service) implements:
//
//   - POST /v1/control-channel/<instance> and POST /v1/data-channel/<session>
//     (CreateControlChannel, CreateDataChannel; SigV4 for "ssmmessages"):
//     HTTP 201 with an XML body holding a token.
//   - GET /v1/control-channel/<instance>?role=subscribe&stream=input, a
//     SigV4-signed websocket whose first frame is a text
//     OpenControlChannel with that token. StartSession for the instance then
//     sends interactive_shell on it; agent_task_complete is answered with
//     agent_task_acknowledge; a session ended by the service (TerminateSession,
//     CloseChannel, timeouts, Close) sends channel_closed on it.
//   - GET /v1/data-channel/<session>?role=publish_subscribe with a SigV4
//     Authorization header is the agent's end of the data channel; frames are
//     relayed verbatim between it and the client's websocket.

// sessionAgent is the agent side of one session as the gateway sees it: the
// emulated agent (agent.go) or a real agent attached through MGS.
type sessionAgent interface {
	// start begins the session on the agent; false if it cannot.
	start() bool
	// deliver hands the agent a frame the client sent; false if the frame
	// did not reach it.
	deliver(b []byte) bool
	// control passes a service message (pause_publication,
	// start_publication) to the agent.
	control(msgType string)
	// stopTarget ends the agent's side of a finished session.
	stopTarget()
}

const (
	mgsService            = "ssmmessages"
	topicStartSession     = "aws.ssm.startSession"
	agentTaskComplete     = "agent_task_complete"
	agentTaskAcknowledge  = "agent_task_acknowledge"
	interactiveShell      = "interactive_shell"
	sessionOwnerARN       = "arn:aws:iam::123456789012:user/ssmtest"
	alreadyTerminatedText = "Session is already terminated" // the agent stops retrying CreateDataChannel on this ([A] datachannel.go)
)

// mgsState holds the real agents' control channels.
type mgsState struct {
	mu      sync.Mutex
	tokens  map[string]string     // instance → control-channel token (CreateControlChannel)
	agents  map[string]*agentConn // instance → its current control channel
	changed chan struct{}         // closed and replaced when agents changes
	// tasks holds the real-agent sessions the agent has not reported
	// complete yet, by session id (= TaskId). It does not depend on the
	// server's session map, which may forget ended sessions.
	tasks map[string]*remoteAgent
}

// agentConn is a real agent's control channel.
type agentConn struct {
	instance string
	version  string
	ws       *websocket.Conn
	wmu      sync.Mutex
	once     sync.Once
}

func (c *agentConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (c *agentConn) close() { c.once.Do(func() { _ = c.ws.Close() }) }

// agent returns the connected real agent of instance, or nil.
func (m *mgsState) agent(instance string) *agentConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.agents[instance]
}

// notify wakes WaitAgent callers; m.mu must be held.
func (m *mgsState) notify() {
	if m.changed != nil {
		close(m.changed)
	}
	m.changed = make(chan struct{})
}

// Agents returns the instance ids of the real agents whose control channel
// is connected (gateway mode), sorted.
func (s *Server) Agents() []string {
	s.mgs.mu.Lock()
	defer s.mgs.mu.Unlock()
	ids := make([]string, 0, len(s.mgs.agents))
	for id := range s.mgs.agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// WaitAgent waits until a real agent for instance has its control channel
// connected (gateway mode) and returns the AgentVersion it announced.
func (s *Server) WaitAgent(ctx context.Context, instance string) (version string, err error) {
	for {
		s.mgs.mu.Lock()
		if a := s.mgs.agents[instance]; a != nil {
			s.mgs.mu.Unlock()
			return a.version, nil
		}
		if s.mgs.changed == nil {
			s.mgs.changed = make(chan struct{})
		}
		ch := s.mgs.changed
		s.mgs.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return "", fmt.Errorf("ssmtest: no agent for %s connected its control channel: %w", instance, ctx.Err())
		case <-s.ctx.Done():
			return "", errors.New("ssmtest: server closed")
		}
	}
}

// mgsError answers an MGS REST call with an error. The body shape of MGS's
// errors is not known; the agent only logs it.
func (s *Server) mgsError(w http.ResponseWriter, status int, code, msg string) {
	s.st.apiErrors.Add(1)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<%s><Message>%s</Message></%s>", code, xmlEscape(msg), code)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// writeToken answers CreateControlChannel/CreateDataChannel: HTTP 201 with
// an XML body (any root element name works, [A] service.go).
func writeToken(w http.ResponseWriter, root, token string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusCreated)
	_, _ = fmt.Fprintf(w, "<%s><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>%s</TokenValue></%s>", root, xmlEscape(token), root)
}

// checkMGSRequest verifies an agent's SigV4 (service ssmmessages). It answers
// the request itself and returns false when the signature is not valid.
func (s *Server) checkMGSRequest(w http.ResponseWriter, r *http.Request, body []byte) bool {
	s.st.apiRequests.Add(1)
	if aerr := s.verifySigV4(r, body, mgsService); aerr != nil {
		s.log.Info("ssmtest: MGS request refused", "path", r.URL.Path, "error", aerr.code)
		s.mgsError(w, http.StatusForbidden, aerr.code, aerr.message)
		return false
	}
	return true
}

func readMGSBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err == nil && len(b) > maxAPIBody {
		err = errors.New("body too large")
	}
	return b, err
}

// serveControlChannel handles CreateControlChannel (POST) and the control
// channel websocket (GET) of a real agent.
func (s *Server) serveControlChannel(w http.ResponseWriter, r *http.Request) {
	instance := strings.TrimPrefix(r.URL.Path, "/v1/control-channel/")
	if instance == "" || strings.Contains(instance, "/") {
		s.mgsError(w, http.StatusNotFound, "NotFound", "no such control channel")
		return
	}
	switch r.Method {
	case http.MethodPost:
		body, err := readMGSBody(r)
		if err != nil {
			s.mgsError(w, http.StatusBadRequest, "SerializationException", err.Error())
			return
		}
		if !s.checkMGSRequest(w, r, body) {
			return
		}
		tok := newToken()
		s.mgs.mu.Lock()
		if s.mgs.tokens == nil {
			s.mgs.tokens = make(map[string]string)
		}
		s.mgs.tokens[instance] = tok
		s.mgs.mu.Unlock()
		writeToken(w, "CreateControlChannelResponse", tok)
	case http.MethodGet:
		if !s.checkMGSRequest(w, r, nil) {
			return
		}
		ws, err := s.up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &agentConn{instance: instance, ws: ws}
		if !s.goTracked(func() { s.runControlChannel(c) }) {
			_ = ws.Close()
		}
	default:
		s.mgsError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

// openControlChannel is the agent's first control-channel frame.
type openControlChannel struct {
	MessageSchemaVersion string
	RequestID            string `json:"RequestId"`
	TokenValue           string
	AgentVersion         string
	PlatformType         string
}

func (s *Server) runControlChannel(c *agentConn) {
	stop := context.AfterFunc(s.ctx, c.close)
	defer stop()
	defer c.close()
	_ = c.ws.SetReadDeadline(time.Now().Add(openTimeout))
	mt, first, err := c.ws.ReadMessage()
	if err != nil {
		return
	}
	var open openControlChannel
	s.mgs.mu.Lock()
	want := s.mgs.tokens[c.instance]
	s.mgs.mu.Unlock()
	if mt != websocket.TextMessage || json.Unmarshal(first, &open) != nil || want == "" ||
		subtle.ConstantTimeCompare([]byte(open.TokenValue), []byte(want)) != 1 {
		s.st.wsRejected.Add(1)
		s.log.Info("ssmtest: control channel refused", "instance", c.instance)
		return
	}
	_ = c.ws.SetReadDeadline(time.Time{})
	c.version = open.AgentVersion
	s.mgs.mu.Lock()
	if s.mgs.agents == nil {
		s.mgs.agents = make(map[string]*agentConn)
	}
	old := s.mgs.agents[c.instance]
	s.mgs.agents[c.instance] = c
	s.mgs.notify()
	s.mgs.mu.Unlock()
	if old != nil {
		old.close()
	}
	s.st.agentsConnected.Add(1)
	s.log.Info("ssmtest: agent control channel open", "instance", c.instance, "agentVersion", open.AgentVersion, "platform", open.PlatformType)
	defer func() {
		s.mgs.mu.Lock()
		if s.mgs.agents[c.instance] == c {
			delete(s.mgs.agents, c.instance)
			s.mgs.notify()
		}
		s.mgs.mu.Unlock()
		s.log.Info("ssmtest: agent control channel closed", "instance", c.instance)
	}()
	for {
		mt, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if mt != websocket.BinaryMessage {
			continue
		}
		var m wire.Message
		if err := wire.Decode(b, &m); err != nil {
			s.log.Info("ssmtest: malformed control-channel frame", "instance", c.instance, "error", err)
			continue
		}
		if m.MessageType == agentTaskComplete {
			s.taskComplete(c, &m)
		} else {
			s.log.Debug("ssmtest: control-channel message ignored", "instance", c.instance, "type", m.MessageType)
		}
	}
}

// taskCompletePayload is the agent's agent_task_complete payload.
type taskCompletePayload struct {
	SchemaVersion   int
	TaskID          string `json:"TaskId"`
	Topic           string
	FinalTaskStatus string
	Output          string
}

// taskComplete acknowledges an agent_task_complete (the agent resends it
// about once a second until acknowledged) and ends the session.
func (s *Server) taskComplete(c *agentConn, m *wire.Message) {
	var p taskCompletePayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		s.log.Info("ssmtest: bad agent_task_complete", "instance", c.instance, "error", err)
		return
	}
	ack, _ := json.Marshal(struct {
		SchemaVersion int    `json:"SchemaVersion"`
		MessageID     string `json:"MessageId"`
		TaskID        string `json:"TaskId"`
		Topic         string `json:"Topic"`
	}{1, m.MessageID.String(), p.TaskID, p.Topic})
	if err := c.write(controlMessage(agentTaskAcknowledge, ack)); err != nil {
		return
	}
	s.mgs.mu.Lock()
	ra := s.mgs.tasks[p.TaskID]
	delete(s.mgs.tasks, p.TaskID) // the agent resends until acknowledged: count once
	s.mgs.mu.Unlock()
	if ra == nil {
		return
	}
	ra.completed.Store(true)
	ss := ra.ss
	s.st.agentTasksCompleted.Add(1)
	why := endTargetClosed
	if ra.termFlag.Load() {
		why = endTerminateFlag
	}
	failed := p.FinalTaskStatus != "Success"
	s.log.Info("ssmtest: agent completed session", "session", ss.id, "status", p.FinalTaskStatus)
	ss.finish(why, p.Output, failed)
}

// controlMessage encodes a service → agent message of msgType.
func controlMessage(msgType string, payload []byte) []byte {
	now := time.Now()
	m := wire.Message{
		MessageType:   msgType,
		SchemaVersion: wire.SchemaVersion,
		CreatedDate:   wire.Millis(now),
		Flags:         wire.FlagsNone,
		MessageID:     uuid.New(),
		PayloadType:   wire.PayloadNone,
	}
	m.SetPayload(payload)
	b, _ := wire.Encode(nil, &m)
	return b
}

// remoteAgent is the real agent's side of one session.
type remoteAgent struct {
	ss  *session
	ctl *agentConn

	completed atomic.Bool // agent_task_complete received
	termFlag  atomic.Bool // the client sent the TerminateSession flag

	mu    sync.Mutex
	token string      // data-channel token (CreateDataChannel)
	dc    *clientConn // the agent's data-channel websocket; nil while not connected
}

func newRemoteAgent(ss *session, c *agentConn) *remoteAgent {
	return &remoteAgent{ss: ss, ctl: c}
}

// Document contents sent in interactive_shell: AWS's documents as the agent
// receives them (properties hold {{ parameter }} references the agent
// resolves against Parameters).
var documentContents = map[string]string{
	DocStartSSHSession: `{"schemaVersion":"1.0","description":"Document to start SSH session","sessionType":"Port",` +
		`"parameters":{"portNumber":{"type":"String","description":"(Optional) Port number of SSH server on the instance","allowedPattern":"^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$","default":"22"}},` +
		`"properties":{"portNumber":"{{ portNumber }}"}}`,
	DocStartPortForwardingSession: `{"schemaVersion":"1.0","description":"Document to start port forwarding session over Session Manager","sessionType":"Port",` +
		`"parameters":{"portNumber":{"type":"String","description":"(Optional) Port number of the server on the instance","allowedPattern":"^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$","default":"80"},` +
		`"localPortNumber":{"type":"String","description":"(Optional) Port number on local machine to forward traffic to. An open port is chosen at run-time if not provided","allowedPattern":"^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$","default":"0"}},` +
		`"properties":{"portNumber":"{{ portNumber }}","type":"LocalPortForwarding","localPortNumber":"{{ localPortNumber }}"}}`,
	DocStartPortForwardingToRemoteHost: `{"schemaVersion":"1.0","description":"Document to start port forwarding session over Session Manager to a remote host","sessionType":"Port",` +
		`"parameters":{"host":{"type":"String","description":"(Required) The IP address or hostname of the remote host"},` +
		`"portNumber":{"type":"String","description":"(Optional) Port number of the server on the instance","allowedPattern":"^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$","default":"80"},` +
		`"localPortNumber":{"type":"String","description":"(Optional) Port number on local machine to forward traffic to. An open port is chosen at run-time if not provided","allowedPattern":"^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$","default":"0"}},` +
		`"properties":{"host":"{{ host }}","portNumber":"{{ portNumber }}","type":"LocalPortForwarding","localPortNumber":"{{ localPortNumber }}"}}`,
}

// start sends interactive_shell on the agent's control channel: Content is a
// JSON *string* holding the document and plain-string parameters
// (a ["22"] list makes the agent's Port plugin fail, ssm-real-peers.md §3.3).
func (a *remoteAgent) start() bool {
	ss := a.ss
	params := make(map[string]string, len(ss.props))
	for k, v := range ss.props {
		if k != "type" {
			params[k] = v
		}
	}
	content, _ := json.Marshal(struct {
		DocumentContent json.RawMessage
		DocumentName    string
		Parameters      map[string]string
		RunAsUser       string
		SessionID       string `json:"SessionId"`
		SessionOwner    string
	}{json.RawMessage(documentContents[ss.document]), ss.document, params, "", ss.id, sessionOwnerARN})
	payload, _ := json.Marshal(struct {
		Content       string
		SchemaVersion int
		TaskID        string `json:"TaskId"`
		Topic         string
	}{string(content), 1, ss.id, topicStartSession})
	m := &ss.srv.mgs
	m.mu.Lock()
	if m.tasks == nil {
		m.tasks = make(map[string]*remoteAgent)
	}
	m.tasks[ss.id] = a
	m.mu.Unlock()
	if err := a.ctl.write(controlMessage(interactiveShell, payload)); err != nil {
		m.mu.Lock()
		delete(m.tasks, ss.id)
		m.mu.Unlock()
		ss.srv.log.Info("ssmtest: interactive_shell not sent", "session", ss.id, "error", err)
		return false
	}
	return true
}

// deliver relays a client frame to the agent's data channel. A frame sent
// while the agent is not connected, or into a socket that fails, is lost:
// the client's retransmission repairs it.
func (a *remoteAgent) deliver(b []byte) bool {
	var m wire.Message
	if wire.Decode(b, &m) == nil && m.MessageType == wire.InputStreamData && m.PayloadType == wire.PayloadFlag {
		if f, err := wire.ParseFlag(m.Payload); err == nil && f == wire.TerminateSession {
			a.termFlag.Store(true)
		}
	}
	a.mu.Lock()
	dc := a.dc
	a.mu.Unlock()
	if dc == nil || dc.write(b) != nil {
		a.ss.srv.st.framesLostToAgent.Add(1)
		return false
	}
	return true
}

// control relays pause_publication/start_publication to the agent's data
// channel (flags 3, a small payload: ssm-protocol.md §5.3).
func (a *remoteAgent) control(msgType string) {
	a.mu.Lock()
	dc := a.dc
	a.mu.Unlock()
	if dc == nil {
		return
	}
	now := time.Now()
	m := wire.Message{
		MessageType:   msgType,
		SchemaVersion: wire.SchemaVersion,
		CreatedDate:   wire.Millis(now),
		Flags:         wire.FlagsAck,
		MessageID:     uuid.New(),
		PayloadType:   wire.PayloadNone,
	}
	m.SetPayload([]byte(`{"MessageType":"` + msgType + `"}`))
	b, _ := wire.Encode(nil, &m)
	if msgType == wire.PausePublication {
		a.ss.srv.st.pauses.Add(1)
	}
	_ = dc.write(b)
}

// stopTarget tells the agent that the service ended the session
// (channel_closed on the control channel), unless the agent ended it.
func (a *remoteAgent) stopTarget() {
	if a.completed.Load() {
		return
	}
	ss := a.ss
	p, _ := json.Marshal(wire.ChannelClosedPayload{
		MessageID:     uuid.NewString(),
		CreatedDate:   strconv.FormatUint(wire.Millis(time.Now()), 10),
		DestinationID: ss.target,
		SessionID:     ss.id,
		MessageType:   wire.ChannelClosed,
		SchemaVersion: 1,
		Output:        "",
	})
	_ = a.ctl.write(controlMessage(wire.ChannelClosed, p))
}

// routeDataChannel sends /v1/data-channel/ requests to the client's
// endpoint (gateway.go) or, for the agent's SigV4-signed ones, to
// CreateDataChannel and the agent's data-channel websocket.
func (s *Server) routeDataChannel(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost:
		s.createDataChannel(w, r)
	case r.Header.Get("Authorization") != "":
		s.serveAgentDataChannel(w, r)
	default:
		s.serveDataChannel(w, r)
	}
}

// remoteSession returns the session id and its real agent.
func (s *Server) remoteSession(id string) (*session, *remoteAgent) {
	if ss := s.session(id); ss != nil {
		ra, _ := ss.agent.(*remoteAgent)
		return ss, ra
	}
	// An ended session the server no longer holds, whose agent has not
	// reported it complete yet.
	s.mgs.mu.Lock()
	ra := s.mgs.tasks[id]
	s.mgs.mu.Unlock()
	if ra == nil {
		return nil, nil
	}
	return ra.ss, ra
}

func (s *Server) createDataChannel(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/data-channel/")
	body, err := readMGSBody(r)
	if err != nil {
		s.mgsError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	if !s.checkMGSRequest(w, r, body) {
		return
	}
	ss, ra := s.remoteSession(id)
	switch {
	case ra == nil:
		s.mgsError(w, http.StatusNotFound, "ResourceNotFound", "no session "+id+" for an agent")
		return
	case ss.isEnded():
		s.mgsError(w, http.StatusBadRequest, "BadRequest", alreadyTerminatedText)
		return
	}
	tok := newToken()
	ra.mu.Lock()
	ra.token = tok
	ra.mu.Unlock()
	writeToken(w, "CreateDataChannelResponse", tok)
}

// openAgentDataChannel is the agent's first data-channel frame.
type openAgentDataChannel struct {
	MessageSchemaVersion string
	RequestID            string `json:"RequestId"`
	TokenValue           string
	ClientInstanceID     string `json:"ClientInstanceId"`
	ClientID             string `json:"ClientId"`
}

func (s *Server) serveAgentDataChannel(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/data-channel/")
	if !s.checkMGSRequest(w, r, nil) {
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	if !s.goTracked(func() { s.runAgentDataChannel(id, ws) }) {
		_ = ws.Close()
	}
}

func (s *Server) runAgentDataChannel(id string, ws *websocket.Conn) {
	dc := &clientConn{ws: ws}
	stop := context.AfterFunc(s.ctx, dc.close)
	defer stop()
	defer dc.close()
	_ = ws.SetReadDeadline(time.Now().Add(openTimeout))
	mt, first, err := ws.ReadMessage()
	if err != nil {
		return
	}
	ss, ra := s.remoteSession(id)
	var open openAgentDataChannel
	ok := ra != nil && mt == websocket.TextMessage && json.Unmarshal(first, &open) == nil && open.ClientInstanceID == ss.target
	if ok {
		ra.mu.Lock()
		ok = ra.token != "" && subtle.ConstantTimeCompare([]byte(open.TokenValue), []byte(ra.token)) == 1
		ra.mu.Unlock()
	}
	if !ok || ss.isEnded() {
		s.st.wsRejected.Add(1)
		s.log.Info("ssmtest: agent data channel refused", "session", id)
		return
	}
	_ = ws.SetReadDeadline(time.Time{})
	ra.mu.Lock()
	old := ra.dc
	ra.dc = dc
	ra.mu.Unlock()
	if old != nil {
		old.close()
	}
	s.st.agentDataChannels.Add(1)
	s.log.Info("ssmtest: agent data channel open", "session", id)
	defer func() {
		ra.mu.Lock()
		if ra.dc == dc {
			ra.dc = nil
		}
		ra.mu.Unlock()
	}()
	for {
		mt, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if mt != websocket.BinaryMessage {
			continue
		}
		ss.fromAgent(b)
	}
}

// AgentConfig returns an amazon-ssm-agent.json that points a real agent at
// this server in gateway mode: container mode (only the session manager
// part runs: no registration, health pings or document polling), the custom
// identity instanceID in the server's region with the SDK's default
// credential chain (give the agent the server's Credentials, e.g. as
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, with
// AWS_EC2_METADATA_DISABLED=true), and every endpoint at URL. The agent
// speaks only https/wss to MGS, so the server needs Config.TLS; the agent
// trusts the CA through SSL_CERT_FILE (CACertPEM). Put the file in a
// configuration folder beside the agent's binaries (ssm-agent-worker and
// ssm-session-worker there too), or at /etc/amazon/ssm in a container.
func (s *Server) AgentConfig(instanceID string) []byte {
	r := s.cfg.Region
	cfg := map[string]any{
		"Mgs":   map[string]any{"Region": r, "Endpoint": s.url, "StopTimeoutMillis": 2000, "SessionWorkersLimit": 1000},
		"Ssm":   map[string]any{"Endpoint": s.url, "SessionLogsDestination": "none"},
		"Mds":   map[string]any{"Endpoint": s.url},
		"S3":    map[string]any{"Endpoint": s.url, "Region": r},
		"Kms":   map[string]any{"Endpoint": s.url},
		"Agent": map[string]any{"Region": r, "ContainerMode": true, "SelfUpdate": false, "TelemetryMetricsToSSM": false},
		"Identity": map[string]any{
			"ConsumptionOrder": []string{"CustomIdentity"},
			"CustomIdentities": []map[string]string{{"InstanceID": instanceID, "Region": r, "CredentialsProvider": "DEFAULT"}},
		},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return append(b, '\n')
}

// KillAgentWebsocket abruptly closes the data-channel websocket of the real
// agent of session sessionID ("" = every session with a real agent), as a
// network failure between the agent and MGS would: what is in the socket is
// lost, frames the client sends meanwhile are dropped (FramesLostToAgent),
// and the agent reconnects by itself (CreateDataChannel, new websocket;
// [A] datachannel.go Reconnect). It returns how many websockets it closed.
func (s *Server) KillAgentWebsocket(sessionID string) int {
	n := 0
	for _, ss := range s.matching(sessionID) {
		ra, ok := ss.agent.(*remoteAgent)
		if !ok {
			continue
		}
		ra.mu.Lock()
		dc := ra.dc
		ra.dc = nil
		ra.mu.Unlock()
		if dc != nil {
			dc.close()
			n++
			s.st.wsKilled.Add(1)
		}
	}
	return n
}
