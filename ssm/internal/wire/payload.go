package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
)

// OpenDataChannel is the first (text) frame on every data-channel
// websocket, client and agent alike (reference §3.2). Field order is the
// order the AWS peers marshal.
type OpenDataChannel struct {
	MessageSchemaVersion string `json:"MessageSchemaVersion"`
	RequestID            string `json:"RequestId"`
	TokenValue           string `json:"TokenValue"`
	ClientInstanceID     string `json:"ClientInstanceId,omitempty"` // agent only
	ClientID             string `json:"ClientId"`
	ClientVersion        string `json:"ClientVersion,omitempty"` // client only
}

// Ack is the JSON payload of an acknowledge message (reference §5.1).
type Ack struct {
	AcknowledgedMessageType           string `json:"AcknowledgedMessageType"`
	AcknowledgedMessageID             string `json:"AcknowledgedMessageId"`
	AcknowledgedMessageSequenceNumber int64  `json:"AcknowledgedMessageSequenceNumber"`
	IsSequentialMessage               bool   `json:"IsSequentialMessage"`
}

// AppendAck appends the JSON of an acknowledgement of the message (msgType,
// id, seq) to dst, byte for byte what encoding/json gives for Ack, without
// reflection or allocation.
func AppendAck(dst []byte, msgType string, id uuid.UUID, seq int64) []byte {
	dst = append(dst, `{"AcknowledgedMessageType":"`...)
	dst = append(dst, msgType...)
	dst = append(dst, `","AcknowledgedMessageId":"`...)
	var s [36]byte
	encodeUUID(s[:], id)
	dst = append(dst, s[:]...)
	dst = append(dst, `","AcknowledgedMessageSequenceNumber":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"IsSequentialMessage":true}`...)
	return dst
}

// ErrAck is returned by ParseAck for a payload that is not an acknowledgement.
var ErrAck = errors.New("ssm wire: malformed acknowledge payload")

// ParseAck returns the acknowledged sequence number, the only field either
// AWS peer uses.
func ParseAck(p []byte) (int64, error) {
	var a struct {
		Seq *int64 `json:"AcknowledgedMessageSequenceNumber"`
	}
	if err := json.Unmarshal(p, &a); err != nil || a.Seq == nil {
		return 0, ErrAck
	}
	return *a.Seq, nil
}

func encodeUUID(dst []byte, u uuid.UUID) {
	const hex = "0123456789abcdef"
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hex[b>>4]
		dst[j+1] = hex[b&0x0f]
		j += 2
	}
}

// FlagPayload returns the 4-byte payload of a PayloadFlag message.
func FlagPayload(f Flag) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(f))
	return b[:]
}

// ParseFlag decodes a PayloadFlag payload; it must be exactly 4 bytes.
func ParseFlag(p []byte) (Flag, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("ssm wire: flag payload is %d bytes, want 4", len(p))
	}
	return Flag(binary.BigEndian.Uint32(p)), nil
}

// HandshakeRequest is the agent's PayloadHandshakeRequest body (reference §7.2).
type HandshakeRequest struct {
	AgentVersion           string            `json:"AgentVersion"`
	RequestedClientActions []RequestedAction `json:"RequestedClientActions"`
}

// RequestedAction is one action in a HandshakeRequest.
type RequestedAction struct {
	ActionType       string          `json:"ActionType"`
	ActionParameters json.RawMessage `json:"ActionParameters"`
}

// SessionTypeParameters are the ActionParameters of a SessionType action.
type SessionTypeParameters struct {
	SessionType string            `json:"SessionType"`
	Properties  map[string]string `json:"Properties"`
}

// HandshakeResponse is the client's PayloadHandshakeResponse body (reference §7.3).
type HandshakeResponse struct {
	ClientVersion          string            `json:"ClientVersion"`
	ProcessedClientActions []ProcessedAction `json:"ProcessedClientActions"`
	Errors                 []string          `json:"Errors"`
}

// ProcessedAction is one entry of ProcessedClientActions.
type ProcessedAction struct {
	ActionType   string          `json:"ActionType"`
	ActionStatus int             `json:"ActionStatus"`
	ActionResult json.RawMessage `json:"ActionResult"`
	Error        string          `json:"Error"`
}

// HandshakeComplete is the agent's PayloadHandshakeComplete body (reference §7.4).
type HandshakeComplete struct {
	HandshakeTimeToComplete int64  `json:"HandshakeTimeToComplete"` // nanoseconds
	CustomerMessage         string `json:"CustomerMessage"`
}

// ChannelClosedPayload is the body of a channel_closed message (reference §5.2).
type ChannelClosedPayload struct {
	MessageID     string `json:"MessageId"`
	CreatedDate   string `json:"CreatedDate"`
	DestinationID string `json:"DestinationId"`
	SessionID     string `json:"SessionId"`
	MessageType   string `json:"MessageType"`
	SchemaVersion int    `json:"SchemaVersion"`
	Output        string `json:"Output"`
}

// AgentSessionStatePayload is the body of agent_session_state.
type AgentSessionStatePayload struct {
	SchemaVersion int    `json:"SchemaVersion"`
	SessionState  string `json:"SessionState"`
	SessionID     string `json:"SessionId"`
}
