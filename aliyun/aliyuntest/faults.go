package aliyuntest

import (
	"time"

	"github.com/jumpless/jumpless/aliyun/internal/axt"
)

func (s *Server) channels(sessionID string) []*channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*channel
	for id, ss := range s.sessions {
		if sessionID != "" && id != sessionID {
			continue
		}
		for c := range ss.chans {
			out = append(out, c)
		}
	}
	return out
}

// KillWebsocket drops the client websockets of a session ("" = all)
// without a Status or close frame, and closes their targets, as a network
// failure would. It returns how many it dropped.
func (s *Server) KillWebsocket(sessionID string) int {
	cs := s.channels(sessionID)
	for _, c := range cs {
		c.kill()
	}
	return len(cs)
}

// Stall stops (true) or resumes (false) forwarding in both directions on
// a session's connections ("" = all); bytes wait, nothing is lost.
func (s *Server) Stall(sessionID string, on bool) int {
	cs := s.channels(sessionID)
	for _, c := range cs {
		c.stalled.Store(on)
	}
	return len(cs)
}

// SendStatus sends a Status with code and reason to a session's
// connections ("" = all); codes 2, 5 and 6 then close them, as the server
// does.
func (s *Server) SendStatus(sessionID string, code byte, reason string) int {
	cs := s.channels(sessionID)
	for _, c := range cs {
		switch axt.StatusCode(code) {
		case axt.StatusAborted, axt.StatusClosed, axt.StatusExited:
			c.status(axt.StatusCode(code), []byte(reason), 0)
			c.kill()
		default:
			c.send(axt.Status, axt.StatusPayload(axt.StatusCode(code), []byte(reason)))
		}
	}
	return len(cs)
}

// SetRate sends a Status 7 with bps to a session's connections ("" = all).
func (s *Server) SetRate(sessionID string, bps uint32) int {
	cs := s.channels(sessionID)
	for _, c := range cs {
		c.status(axt.StatusRate, nil, bps)
	}
	return len(cs)
}

// SetAPIDelay delays every OpenAPI answer by d after the action took
// effect (a slow network or service): a client that gives up waiting has
// still, e.g., started a session.
func (s *Server) SetAPIDelay(d time.Duration) { s.apiDelay.Store(int64(d)) }
