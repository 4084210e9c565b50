package ssm

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// onHandshakeRequestLocked answers the agent's HandshakeRequest (reference
// §7.2, §7.3). Every requested action gets an entry; SessionType Port is the
// only action this client performs. Anything else is answered Failed or
// Unsupported, which makes the agent cancel the session, and fails the
// handshake here with a HandshakeError that says why.
func (s *Session) onHandshakeRequestLocked(p []byte) {
	var req wire.HandshakeRequest
	if err := json.Unmarshal(p, &req); err != nil {
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "unreadable HandshakeRequest from the agent", Err: err})
		return
	}
	s.agentVersion = req.AgentVersion
	resp := wire.HandshakeResponse{ClientVersion: s.cfg.ClientVersion}
	var problems []string
	for _, a := range req.RequestedClientActions {
		pa := wire.ProcessedAction{ActionType: a.ActionType, ActionStatus: wire.ActionSuccess}
		switch a.ActionType {
		case "SessionType":
			var params wire.SessionTypeParameters
			if err := json.Unmarshal(a.ActionParameters, &params); err != nil {
				pa.ActionStatus = wire.ActionFailed
				pa.Error = "unreadable SessionType parameters"
			} else if params.SessionType != wire.SessionTypePort {
				pa.ActionStatus = wire.ActionFailed
				pa.Error = fmt.Sprintf("session type %q is not supported by this client (only %q)", params.SessionType, wire.SessionTypePort)
			} else {
				s.sawSession = true
				s.properties = params.Properties
			}
		default:
			pa.ActionStatus = wire.ActionUnsupported
			pa.Error = fmt.Sprintf("action %q is not supported by this client", a.ActionType)
		}
		if pa.Error != "" {
			problems = append(problems, pa.Error)
		}
		resp.ProcessedClientActions = append(resp.ProcessedClientActions, pa)
	}
	if len(problems) > 0 {
		resp.Errors = problems
	}
	b, err := json.Marshal(resp)
	if err != nil { // cannot happen: plain strings and ints
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "encoding HandshakeResponse", Err: err})
		return
	}
	s.ctrlQ.push(ctrlItem{ptype: wire.PayloadHandshakeResponse, payload: b})
	kick(s.wkick)
	s.log.Debug("ssm: handshake request answered", "agentVersion", req.AgentVersion, "problems", len(problems))
	switch {
	case len(problems) > 0:
		s.handshakeFailLocked(&HandshakeError{SessionID: s.id, Reason: "the agent requested what this client cannot do: " + strings.Join(problems, "; ")})
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
