package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Message is one data-channel message. Decode fills every field from the
// wire; Encode writes every field as it is, so a decoded message re-encodes
// to the same bytes. Use SetPayload to set Payload, PayloadLength and
// PayloadDigest together.
type Message struct {
	HeaderLength   uint32 // 116 on every message AWS peers send
	MessageType    string // without the space padding
	SchemaVersion  uint32
	CreatedDate    uint64 // Unix epoch milliseconds
	SequenceNumber int64
	Flags          uint64
	MessageID      uuid.UUID // canonical byte order; the wire swaps its halves
	PayloadDigest  [32]byte  // SHA-256 of Payload
	PayloadType    PayloadType
	PayloadLength  uint32
	Payload        []byte // aliases the decoded buffer
}

// Errors returned by Decode and Validate. Use errors.Is.
var (
	ErrShort          = errors.New("ssm wire: message shorter than its 120-byte header")
	ErrHeaderLength   = errors.New("ssm wire: HeaderLength is not 116")
	ErrPayloadLength  = errors.New("ssm wire: PayloadLength does not match the payload")
	ErrMessageType    = errors.New("ssm wire: MessageType is empty or not printable ASCII")
	ErrDigest         = errors.New("ssm wire: payload SHA-256 digest mismatch")
	ErrCreatedDate    = errors.New("ssm wire: CreatedDate is zero")
	ErrEmptyPayload   = errors.New("ssm wire: empty payload")
	ErrMessageTypeLen = errors.New("ssm wire: MessageType longer than 32 bytes")
)

// SetPayload sets Payload, PayloadLength and PayloadDigest.
func (m *Message) SetPayload(p []byte) {
	m.Payload = p
	m.PayloadLength = uint32(len(p))
	m.PayloadDigest = sha256.Sum256(p)
}

// EncodedLen is the number of bytes Encode appends.
func (m *Message) EncodedLen() int { return HeaderSize + len(m.Payload) }

// Encode appends the wire form of m to dst and returns the extended slice.
// Every field is written as it is (a zero HeaderLength is written as 116);
// it does not recompute the digest or the length: call SetPayload for that.
// Like the serializers of AWS's plugin and agent (reference §12.2 V6), it
// refuses an empty payload with ErrEmptyPayload.
func Encode(dst []byte, m *Message) ([]byte, error) {
	if len(m.MessageType) > messageTypeLen {
		return dst, ErrMessageTypeLen
	}
	if len(m.Payload) == 0 {
		return dst, ErrEmptyPayload
	}
	n := len(dst)
	need := HeaderSize + len(m.Payload)
	if cap(dst)-n < need {
		nb := make([]byte, n, n+need)
		copy(nb, dst)
		dst = nb
	}
	dst = dst[:n+need]
	b := dst[n:]
	hl := m.HeaderLength
	if hl == 0 {
		hl = HeaderLength
	}
	binary.BigEndian.PutUint32(b[offHeaderLength:], hl)
	t := b[offMessageType : offMessageType+messageTypeLen]
	copy(t, m.MessageType)
	for i := len(m.MessageType); i < messageTypeLen; i++ {
		t[i] = ' '
	}
	binary.BigEndian.PutUint32(b[offSchemaVersion:], m.SchemaVersion)
	binary.BigEndian.PutUint64(b[offCreatedDate:], m.CreatedDate)
	binary.BigEndian.PutUint64(b[offSequence:], uint64(m.SequenceNumber))
	binary.BigEndian.PutUint64(b[offFlags:], m.Flags)
	copy(b[offMessageID:offMessageID+8], m.MessageID[8:])
	copy(b[offMessageID+8:offMessageID+16], m.MessageID[:8])
	copy(b[offDigest:offDigest+32], m.PayloadDigest[:])
	binary.BigEndian.PutUint32(b[offPayloadType:], uint32(m.PayloadType))
	binary.BigEndian.PutUint32(b[offPayloadLength:], m.PayloadLength)
	copy(b[HeaderSize:], m.Payload)
	return dst, nil
}

// Decode parses one message. m.Payload aliases b. Decode checks only what is
// needed to find the fields (length, HeaderLength, PayloadLength, the type
// name); call Validate for the receive-side checks.
func Decode(b []byte, m *Message) error {
	if len(b) < HeaderSize {
		return ErrShort
	}
	hl := binary.BigEndian.Uint32(b[offHeaderLength:])
	if hl != HeaderLength {
		return fmt.Errorf("%w: %d", ErrHeaderLength, hl)
	}
	pl := binary.BigEndian.Uint32(b[offPayloadLength:])
	if uint64(pl) != uint64(len(b)-HeaderSize) {
		return fmt.Errorf("%w: field %d, payload %d bytes", ErrPayloadLength, pl, len(b)-HeaderSize)
	}
	mt, err := parseType(b[offMessageType : offMessageType+messageTypeLen])
	if err != nil {
		return err
	}
	m.HeaderLength = hl
	m.MessageType = mt
	m.SchemaVersion = binary.BigEndian.Uint32(b[offSchemaVersion:])
	m.CreatedDate = binary.BigEndian.Uint64(b[offCreatedDate:])
	m.SequenceNumber = int64(binary.BigEndian.Uint64(b[offSequence:]))
	m.Flags = binary.BigEndian.Uint64(b[offFlags:])
	copy(m.MessageID[8:], b[offMessageID:offMessageID+8])
	copy(m.MessageID[:8], b[offMessageID+8:offMessageID+16])
	copy(m.PayloadDigest[:], b[offDigest:offDigest+32])
	m.PayloadType = PayloadType(binary.BigEndian.Uint32(b[offPayloadType:]))
	m.PayloadLength = pl
	m.Payload = b[HeaderSize:]
	return nil
}

// knownTypes lets parseType return a constant string without allocating
// for every message type a port session uses.
var knownTypes = []string{
	InputStreamData, OutputStreamData, Acknowledge, ChannelClosed,
	StartPublication, PausePublication, AgentSessionState,
}

// parseType strips the padding the way both AWS peers do (NULs, then white
// space) and rejects names that are empty or not printable ASCII.
func parseType(f []byte) (string, error) {
	end := len(f)
	for end > 0 && (f[end-1] == ' ' || f[end-1] == 0 || f[end-1] == '\t' || f[end-1] == '\n' || f[end-1] == '\r') {
		end--
	}
	f = f[:end]
	if len(f) == 0 {
		return "", ErrMessageType
	}
	for _, c := range f {
		if c < 0x21 || c > 0x7e {
			return "", ErrMessageType
		}
	}
	for _, k := range knownTypes {
		if string(f) == k {
			return k, nil
		}
	}
	return string(f), nil
}

// Validate applies the receive-side checks of a careful peer: CreatedDate set,
// digest correct for a non-empty payload (reference §6.1). Publication
// messages skip validation, as the plugin does.
func (m *Message) Validate() error {
	if m.MessageType == StartPublication || m.MessageType == PausePublication {
		return nil
	}
	if m.CreatedDate == 0 {
		return ErrCreatedDate
	}
	if len(m.Payload) > 0 && sha256.Sum256(m.Payload) != m.PayloadDigest {
		return ErrDigest
	}
	return nil
}

// Millis returns t as the CreatedDate value (Unix epoch milliseconds).
func Millis(t time.Time) uint64 { return uint64(t.UnixMilli()) }
