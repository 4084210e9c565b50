package ssm

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// handshakeAnswer is this client's answer to one HandshakeRequest.
type handshakeAnswer struct {
	agentVersion string
	resp         wire.HandshakeResponse
	properties   map[string]string // the Port session's properties, if they are strings
	sawPort      bool              // a SessionType Port action was accepted
	problems     []string          // why actions were not Success
}

// answerHandshake parses the agent's HandshakeRequest payload p (reference
// §7.2) and builds the HandshakeResponse (§7.3). Every requested action gets
// an entry: SessionType Port is the only action this client performs
// (Success); another session type is Failed; any other action (e.g.
// KMSEncryption) is Unsupported. An error means p is not a HandshakeRequest.
func answerHandshake(p []byte, clientVersion string) (handshakeAnswer, error) {
	var req wire.HandshakeRequest
	if err := json.Unmarshal(p, &req); err != nil {
		return handshakeAnswer{}, err
	}
	a := handshakeAnswer{agentVersion: req.AgentVersion, resp: wire.HandshakeResponse{ClientVersion: clientVersion}}
	for _, ra := range req.RequestedClientActions {
		pa := wire.ProcessedAction{ActionType: ra.ActionType, ActionStatus: wire.ActionSuccess}
		switch ra.ActionType {
		case "SessionType":
			// Properties are the session document's, passed through by the
			// agent: nested objects for shell documents, so the session
			// type is read on its own first.
			var params struct {
				SessionType string          `json:"SessionType"`
				Properties  json.RawMessage `json:"Properties"`
			}
			if err := json.Unmarshal(ra.ActionParameters, &params); err != nil {
				pa.ActionStatus = wire.ActionFailed
				pa.Error = "unreadable SessionType parameters"
			} else if params.SessionType != wire.SessionTypePort {
				pa.ActionStatus = wire.ActionFailed
				pa.Error = fmt.Sprintf("session type %q is not supported by this client (only %q)", params.SessionType, wire.SessionTypePort)
			} else {
				a.sawPort = true
				var props map[string]string
				if json.Unmarshal(params.Properties, &props) == nil {
					a.properties = props
				}
			}
		default:
			pa.ActionStatus = wire.ActionUnsupported
			pa.Error = fmt.Sprintf("action %q is not supported by this client", ra.ActionType)
		}
		if pa.Error != "" {
			a.problems = append(a.problems, pa.Error)
		}
		a.resp.ProcessedClientActions = append(a.resp.ProcessedClientActions, pa)
	}
	if len(a.problems) > 0 {
		a.resp.Errors = a.problems
	}
	return a, nil
}

// onHandshakeRequestLocked answers the agent's HandshakeRequest (see
// answerHandshake). An action answered Failed or Unsupported makes the
// agent cancel the session, and fails the handshake here with a
// HandshakeError that says why.
func (s *Session) onHandshakeRequestLocked(p []byte) {
	a, err := answerHandshake(p, s.cfg.ClientVersion)
	if err != nil {
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "unreadable HandshakeRequest from the agent", Err: err})
		return
	}
	s.agentVersion = a.agentVersion
	if a.sawPort {
		s.sawSession = true
		s.properties = a.properties
	}
	b, err := json.Marshal(a.resp)
	if err != nil { // cannot happen: plain strings and ints
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "encoding HandshakeResponse", Err: err})
		return
	}
	s.ctrlQ.push(ctrlItem{ptype: wire.PayloadHandshakeResponse, payload: b})
	kick(s.wkick)
	s.log.Debug("ssm: handshake request answered", "agentVersion", a.agentVersion, "problems", len(a.problems))
	switch {
	case len(a.problems) > 0:
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "the agent requested what this client cannot do: " + strings.Join(a.problems, "; ")})
	case !s.sawSession:
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "the agent's HandshakeRequest has no SessionType action"})
	}
}

// onHandshakeCompleteLocked finishes the handshake and starts the
// first-write hold (reference §7.5).
func (s *Session) onHandshakeCompleteLocked(p []byte) {
	if s.handshook || s.hsErr != nil {
		return
	}
	if !s.sawSession {
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "HandshakeComplete arrived without a SessionType Port request"})
		return
	}
	var hc wire.HandshakeComplete
	if err := json.Unmarshal(p, &hc); err != nil {
		s.log.Debug("ssm: unreadable HandshakeComplete", "err", err)
	}
	s.handshook = true
	close(s.hsDone)
	s.log.Debug("ssm: handshake complete", "took", time.Duration(hc.HandshakeTimeToComplete), "message", hc.CustomerMessage)
	switch {
	case s.cfg.HoldFirstWrite < 0:
		s.holdReleased = true
	case len(s.rbuf) > s.roff:
		s.releaseHoldLocked("data already received")
	default:
		s.holdTimer = time.AfterFunc(s.cfg.HoldFirstWrite, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.holdReleased {
				s.releaseHoldLocked("hold time elapsed")
			}
		})
	}
	kick(s.wkick)
}

// releaseHoldLocked lets written data flow.
func (s *Session) releaseHoldLocked(why string) {
	s.holdReleased = true
	if s.holdTimer != nil {
		s.holdTimer.Stop()
	}
	s.log.Debug("ssm: first-write hold released", "why", why)
	kick(s.wkick)
}

// handshakeFailLocked records a handshake failure; Dial reports it.
func (s *Session) handshakeFailLocked(err error) {
	if s.hsErr != nil || s.handshook {
		return
	}
	s.hsErr = err
	close(s.hsFail)
}
