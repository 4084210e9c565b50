package axt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is matched (errors.Is) by every decoding error.
var ErrMalformed = errors.New("axt: malformed frame")

// FrameError says why a frame did not decode.
type FrameError struct {
	Leg    string // "client" or "agent"
	Len    int    // frame length
	Reason string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("axt: malformed %s-leg frame (%d bytes): %s", e.Leg, e.Len, e.Reason)
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *FrameError) Unwrap() error { return ErrMalformed }

// Message is one client-leg message.
//
// The 8-byte sequence field is kept whole: schema 1.01 reads it as one
// int64, schema 1.02 as inputSeq (low 32 bits) and outputSeq (high 32
// bits); see InputSeq and OutputSeq. Likewise bytes 2 and 3 of the length
// field are Encoding and Reserved under 1.02 and the high half of the
// 32-bit length under 1.01.
type Message struct {
	Type       Type
	Version    string // 4 ASCII bytes on the wire, space-padded; "" encodes as Schema101
	ChannelID  string // ≤ 255 bytes; the CLI sends ""
	InstanceID string // ≤ 255 bytes; the CLI sends ""
	Created    uint64 // Unix milliseconds
	Seq        uint64
	Encoding   uint8 // schema 1.02 only
	Reserved   uint8 // schema 1.02 only
	Payload    []byte

	// DeclaredLength is the length field as decoded (msgLength under
	// 1.02). Decode never uses it; Encode ignores it.
	DeclaredLength uint32
}

// InputSeq is the schema 1.02 reading of the sequence field.
func (m *Message) InputSeq() uint32 { return uint32(m.Seq) }

// OutputSeq is the schema 1.02 reading of the sequence field.
func (m *Message) OutputSeq() uint32 { return uint32(m.Seq >> 32) }

// LengthMismatch reports whether the decoded length field disagreed with
// the payload the frame actually carried.
func (m *Message) LengthMismatch() bool { return m.DeclaredLength != uint32(len(m.Payload)) }

// is102 reports whether v selects the 1.02 length layout.
func is102(v string) bool { return v == Schema102 }

// HeaderLen is the encoded header size of m.
func (m *Message) HeaderLen() int { return ClientHeaderMin + len(m.ChannelID) + len(m.InstanceID) }

// Append appends the encoding of m to dst. It fails when an id is longer
// than 255 bytes, the version longer than 4 bytes, or (schema 1.02) the
// payload longer than 65 535 bytes.
func (m *Message) Append(dst []byte) ([]byte, error) {
	v := m.Version
	if v == "" {
		v = Schema101
	}
	if len(v) > 4 {
		return dst, fmt.Errorf("axt: version %q is longer than 4 bytes", v)
	}
	if len(m.ChannelID) > 255 || len(m.InstanceID) > 255 {
		return dst, errors.New("axt: channel or instance id longer than 255 bytes")
	}
	if is102(v) && len(m.Payload) > 0xffff {
		return dst, fmt.Errorf("axt: schema 1.02 payload of %d bytes exceeds 65535", len(m.Payload))
	}
	if uint64(len(m.Payload)) > 0xffffffff {
		return dst, errors.New("axt: payload too long")
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Type))
	dst = appendVersion(dst, v)
	dst = append(dst, byte(len(m.ChannelID)))
	dst = append(dst, m.ChannelID...)
	dst = append(dst, byte(len(m.InstanceID)))
	dst = append(dst, m.InstanceID...)
	dst = binary.LittleEndian.AppendUint64(dst, m.Created)
	dst = binary.LittleEndian.AppendUint64(dst, m.Seq)
	if is102(v) {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(m.Payload)))
		dst = append(dst, m.Encoding, m.Reserved)
	} else {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Payload)))
	}
	return append(dst, m.Payload...), nil
}

func appendVersion(dst []byte, v string) []byte {
	dst = append(dst, v...)
	for i := len(v); i < 4; i++ {
		dst = append(dst, ' ')
	}
	return dst
}

// Decode decodes one client-leg frame (schema 1.01 or 1.02; the schema
// string is only a hint for the length layout). The payload is everything
// after the header and aliases b.
func Decode(b []byte, m *Message) error {
	bad := func(r string) error { return &FrameError{Leg: "client", Len: len(b), Reason: r} }
	if len(b) < ClientHeaderMin {
		return bad(fmt.Sprintf("shorter than the %d-byte minimum header", ClientHeaderMin))
	}
	c := int(b[8])
	if 9+c+1 > len(b) {
		return bad(fmt.Sprintf("channel id length %d runs past the frame", c))
	}
	i := int(b[9+c])
	off := 10 + c + i
	if off+20 > len(b) {
		return bad(fmt.Sprintf("ids of %d and %d bytes leave no room for the header", c, i))
	}
	*m = Message{
		Type:       Type(binary.LittleEndian.Uint32(b)),
		Version:    string(b[4:8]),
		ChannelID:  string(b[9 : 9+c]),
		InstanceID: string(b[10+c : off]),
		Created:    binary.LittleEndian.Uint64(b[off:]),
		Seq:        binary.LittleEndian.Uint64(b[off+8:]),
		Payload:    b[off+20:],
	}
	if is102(m.Version) {
		m.DeclaredLength = uint32(binary.LittleEndian.Uint16(b[off+16:]))
		m.Encoding, m.Reserved = b[off+18], b[off+19]
	} else {
		m.DeclaredLength = binary.LittleEndian.Uint32(b[off+16:])
	}
	return nil
}

// AgentMessage is one agent-leg message (60-byte header).
type AgentMessage struct {
	Type      Type
	Version   string // "" encodes as Schema101
	ChannelID string // ≤ 32 bytes; space-padded on the wire, NULs and spaces trimmed when read
	Created   uint64 // Unix milliseconds; the agent drops inbound messages with 0
	Seq       int64
	Payload   []byte

	// DeclaredLength is the decoded length field; never used to slice.
	DeclaredLength uint32
}

// Append appends the encoding of m to dst.
func (m *AgentMessage) Append(dst []byte) ([]byte, error) {
	v := m.Version
	if v == "" {
		v = Schema101
	}
	if len(v) > 4 {
		return dst, fmt.Errorf("axt: version %q is longer than 4 bytes", v)
	}
	if len(m.ChannelID) > agentIDLen {
		return dst, fmt.Errorf("axt: channel id of %d bytes exceeds %d", len(m.ChannelID), agentIDLen)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Type))
	dst = appendVersion(dst, v)
	dst = append(dst, m.ChannelID...)
	for i := len(m.ChannelID); i < agentIDLen; i++ {
		dst = append(dst, ' ')
	}
	dst = binary.LittleEndian.AppendUint64(dst, m.Created)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Seq))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Payload)))
	return append(dst, m.Payload...), nil
}

// DecodeAgent decodes one agent-leg frame. Frames shorter than the 60-byte
// header are refused (the real agent never sends one).
func DecodeAgent(b []byte, m *AgentMessage) error {
	if len(b) < AgentHeaderLen {
		return &FrameError{Leg: "agent", Len: len(b), Reason: "shorter than the 60-byte header"}
	}
	*m = AgentMessage{
		Type:           Type(binary.LittleEndian.Uint32(b)),
		Version:        string(b[4:8]),
		ChannelID:      trimID(b[8:40]),
		Created:        binary.LittleEndian.Uint64(b[40:]),
		Seq:            int64(binary.LittleEndian.Uint64(b[48:])),
		DeclaredLength: binary.LittleEndian.Uint32(b[56:]),
		Payload:        b[60:],
	}
	return nil
}

func trimID(b []byte) string {
	s, e := 0, len(b)
	for s < e && (b[s] == ' ' || b[s] == 0) {
		s++
	}
	for e > s && (b[e-1] == ' ' || b[e-1] == 0) {
		e--
	}
	return string(b[s:e])
}

// StatusPayload returns a Status payload: code, then rest.
func StatusPayload(code StatusCode, rest []byte) []byte {
	return append([]byte{byte(code)}, rest...)
}

// RatePayload returns the Status payload that sets a rate of bps bits per
// second (code 7, then bps as a big-endian uint32).
func RatePayload(bps uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{byte(StatusRate)}, bps)
}

// ParseStatus splits a Status payload into its code and the rest. An
// empty payload is malformed.
func ParseStatus(p []byte) (StatusCode, []byte, error) {
	if len(p) == 0 {
		return 0, nil, &FrameError{Leg: "status", Reason: "empty Status payload"}
	}
	return StatusCode(p[0]), p[1:], nil
}

// ParseRate reads the rest of a StatusRate payload: 1–4 bytes,
// big-endian, bits per second.
func ParseRate(rest []byte) (uint32, error) {
	if len(rest) == 0 || len(rest) > 4 {
		return 0, &FrameError{Leg: "status", Len: len(rest), Reason: "rate must be 1 to 4 big-endian bytes"}
	}
	var v uint32
	for _, c := range rest {
		v = v<<8 | uint32(c)
	}
	return v, nil
}

// PacingInterval is the sleep after each chunk of chunk bytes at bps bits
// per second, in whole milliseconds, computed as Alibaba's agent and CLI
// do: 1000 / (bps / 8 / chunk) with integer division. A divisor of 0
// (bps < 8*chunk) gives the longest interval the formula allows for one
// chunk per second, 1000 ms; the agent would panic there.
func PacingInterval(bps uint32, chunk int) int {
	if chunk <= 0 {
		return 0
	}
	per := int(bps) / 8 / chunk
	if per <= 0 {
		return 1000
	}
	return 1000 / per
}
