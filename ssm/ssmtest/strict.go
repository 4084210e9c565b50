package ssmtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Strict-mode rules (Violation.Rule).
const (
	RuleOpenDataChannel     = "open-data-channel"     // first frame not a text OpenDataChannel
	RuleTextFrame           = "text-frame"            // a text frame after the OpenDataChannel
	RuleMalformed           = "malformed"             // too short, HeaderLength ≠ 116, PayloadLength ≠ payload size, bad type name
	RuleTypePadding         = "type-padding"          // MessageType not right-padded with spaces
	RuleSchemaVersion       = "schema-version"        // SchemaVersion ≠ 1
	RuleCreatedDate         = "created-date"          // CreatedDate = 0
	RuleEmptyPayload        = "empty-payload"         // PayloadLength = 0
	RuleDigest              = "digest"                // SHA-256 of the payload ≠ PayloadDigest
	RuleUnknownType         = "unknown-type"          // a MessageType a client does not send
	RuleDataBeforeHandshake = "data-before-handshake" // stream data read before HandshakeComplete was written to the client
	RuleSequenceGap         = "sequence-gap"          // input_stream_data seq > highest seen + 1
	RuleAck                 = "ack"                   // acknowledge payload not the §5.1 JSON
	RuleFlagPayload         = "flag-payload"          // Flag payload not exactly 4 bytes
	RulePayloadType         = "payload-type"          // a payload type a port-session client does not send
)

// Violation is a strict-mode finding about a client frame.
type Violation struct {
	SessionID string // the session whose client sent the frame
	Frame     int64  // 1-based index of the binary/text frame after OpenDataChannel, counted over all of the session's websockets (RuleOpenDataChannel: frames before it)
	Seq       int64  // the frame's SequenceNumber (0 when unknown)
	Rule      string // one of the Rule* constants
	Detail    string // what was wrong, for people
}

// ErrViolation is matched by every *Violation (errors.Is).
var ErrViolation = errors.New("ssmtest: client frame violates the protocol")

func (v *Violation) Error() string {
	return fmt.Sprintf("ssmtest: session %s client frame %d (seq %d): %s: %s", v.SessionID, v.Frame, v.Seq, v.Rule, v.Detail)
}

// Is makes errors.Is(v, ErrViolation) true.
func (v *Violation) Is(target error) bool { return target == ErrViolation }

func (ss *session) violation(seq int64, rule, detail string) {
	ss.mu.Lock()
	idx := ss.frameIndex
	ss.mu.Unlock()
	v := &Violation{SessionID: ss.id, Frame: idx, Seq: seq, Rule: rule, Detail: detail}
	s := ss.srv
	s.st.violations.Add(1)
	s.mu.Lock()
	s.viols = append(s.viols, v)
	s.mu.Unlock()
	s.log.Warn("ssmtest: strict: client frame violation", "session", ss.id, "rule", rule, "detail", detail, "seq", seq)
	if s.cfg.OnViolation != nil {
		s.cfg.OnViolation(v)
	}
}

// checkClientFrame applies the strict-mode checks to a client frame as
// received (before faults). decErr is wire.Decode's result for b.
func (ss *session) checkClientFrame(mt int, b []byte, m *wire.Message, decErr error) {
	ss.mu.Lock()
	ss.frameIndex++
	ss.mu.Unlock()
	if mt == websocket.TextMessage {
		ss.violation(0, RuleTextFrame, "text frame after OpenDataChannel (AWS peers send binary)")
	}
	if decErr != nil {
		if len(b) >= wire.HeaderSize && binary.BigEndian.Uint32(b[116:]) == 0 {
			ss.violation(0, RuleEmptyPayload, decErr.Error())
			return
		}
		ss.violation(0, RuleMalformed, decErr.Error())
		return
	}
	seq := m.SequenceNumber
	if tf := b[4:36]; len(bytes.TrimRight(tf, " ")) != len(m.MessageType) {
		ss.violation(seq, RuleTypePadding, fmt.Sprintf("MessageType field %q is not space-padded", tf))
	}
	if m.SchemaVersion != wire.SchemaVersion {
		ss.violation(seq, RuleSchemaVersion, fmt.Sprintf("SchemaVersion %d, want 1", m.SchemaVersion))
	}
	if m.CreatedDate == 0 {
		ss.violation(seq, RuleCreatedDate, "CreatedDate is 0")
	}
	if len(m.Payload) == 0 {
		ss.violation(seq, RuleEmptyPayload, "empty payload (neither AWS peer can serialise one)")
	} else if sha256.Sum256(m.Payload) != m.PayloadDigest {
		ss.violation(seq, RuleDigest, "PayloadDigest is not the SHA-256 of the payload")
	}
	switch m.MessageType {
	case wire.InputStreamData:
		ss.checkInput(m)
	case wire.Acknowledge:
		checkAck(ss, m)
	default:
		ss.violation(seq, RuleUnknownType, fmt.Sprintf("client sent MessageType %q", m.MessageType))
	}
}

func (ss *session) checkInput(m *wire.Message) {
	seq := m.SequenceNumber
	ss.mu.Lock()
	highest := ss.highestSeq
	if seq > highest {
		ss.highestSeq = seq
	}
	hr, hc := ss.hrDelivered, ss.hcDelivered
	ss.mu.Unlock()
	if seq > highest+1 || seq < 0 {
		ss.violation(seq, RuleSequenceGap, fmt.Sprintf("sequence number %d after highest %d", seq, highest))
	}
	switch m.PayloadType {
	case wire.PayloadHandshakeResponse, wire.PayloadEncChallengeResponse:
		if !hr {
			ss.violation(seq, RuleDataBeforeHandshake, "handshake response before the HandshakeRequest reached the client")
		}
		if m.PayloadType == wire.PayloadHandshakeResponse {
			var r wire.HandshakeResponse
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				ss.violation(seq, RuleMalformed, "HandshakeResponse is not JSON: "+err.Error())
			}
		}
	case wire.PayloadOutput, wire.PayloadFlag:
		if !hc {
			ss.violation(seq, RuleDataBeforeHandshake, fmt.Sprintf("payload type %d before HandshakeComplete reached the client", m.PayloadType))
		}
		if m.PayloadType == wire.PayloadFlag {
			if _, err := wire.ParseFlag(m.Payload); err != nil {
				ss.violation(seq, RuleFlagPayload, err.Error())
			}
		}
	default:
		ss.violation(seq, RulePayloadType, fmt.Sprintf("payload type %d in a port session", m.PayloadType))
	}
}

func checkAck(ss *session, m *wire.Message) {
	var a struct {
		Type *string `json:"AcknowledgedMessageType"`
		ID   *string `json:"AcknowledgedMessageId"`
		Seq  *int64  `json:"AcknowledgedMessageSequenceNumber"`
		Seqn *bool   `json:"IsSequentialMessage"`
	}
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		ss.violation(0, RuleAck, "acknowledge payload: "+err.Error())
		return
	}
	switch {
	case a.Type == nil || a.ID == nil || a.Seq == nil || a.Seqn == nil:
		ss.violation(0, RuleAck, "acknowledge payload lacks a field of reference §5.1")
	case *a.Type != wire.OutputStreamData:
		ss.violation(0, RuleAck, fmt.Sprintf("AcknowledgedMessageType %q, want output_stream_data", *a.Type))
	case !*a.Seqn:
		ss.violation(0, RuleAck, "IsSequentialMessage is false")
	case *a.Seq < 0:
		ss.violation(0, RuleAck, "negative AcknowledgedMessageSequenceNumber")
	default:
		if u, err := uuid.Parse(*a.ID); err != nil || u.String() != *a.ID {
			ss.violation(0, RuleAck, fmt.Sprintf("AcknowledgedMessageId %q is not a lowercase hyphenated UUID", *a.ID))
		}
		if ag, ok := ss.agent.(*agent); ok {
			ag.mu.Lock()
			next := ag.seq
			ag.mu.Unlock()
			if *a.Seq >= next {
				ss.violation(0, RuleAck, fmt.Sprintf("acknowledges output seq %d; the agent has sent only up to %d", *a.Seq, next-1))
			}
		}
	}
}
