package wire

import (
	"bytes"
	"math"
)

// The layout encoding/json gives for Ack, which both AWS peers send (and
// AppendAck writes): the fields in this order, no whitespace.
var (
	ackTypeKey = []byte(`{"AcknowledgedMessageType":"`)
	ackIDKey   = []byte(`,"AcknowledgedMessageId":"`)
	ackSeqKey  = []byte(`,"AcknowledgedMessageSequenceNumber":`)
	ackTail    = []byte(`,"IsSequentialMessage":`)
)

// ParseAckSeq returns the acknowledged sequence number exactly as ParseAck
// does, but without allocating for the layout AWS peers send (encoding/json
// output of Ack). Any other payload is handed to ParseAck, so duplicate or
// nested keys, whitespace, case-folded keys and non-integer numbers get
// encoding/json's answer.
func ParseAckSeq(p []byte) (int64, error) {
	if seq, ok := parseAckLayout(p); ok {
		return seq, nil
	}
	return ParseAck(p)
}

// parseAckLayout reads p if it is exactly
// {"AcknowledgedMessageType":"<s>","AcknowledgedMessageId":"<s>","AcknowledgedMessageSequenceNumber":<int64>,"IsSequentialMessage":<true|false>}
// with <s> free of escapes and control characters, and <int64> in JSON
// integer syntax (no leading zeros) within int64.
func parseAckLayout(p []byte) (int64, bool) {
	p, ok := cut(p, ackTypeKey)
	if ok {
		p, ok = skipPlainString(p)
	}
	if ok {
		p, ok = cut(p, ackIDKey)
	}
	if ok {
		p, ok = skipPlainString(p)
	}
	if ok {
		p, ok = cut(p, ackSeqKey)
	}
	if !ok {
		return 0, false
	}
	neg := len(p) > 0 && p[0] == '-'
	if neg {
		p = p[1:]
	}
	n := 0
	for n < len(p) && p[n] >= '0' && p[n] <= '9' {
		n++
	}
	if n == 0 || n > 19 || (n > 1 && p[0] == '0') {
		return 0, false
	}
	var u uint64
	for _, c := range p[:n] {
		u = u*10 + uint64(c-'0') // n ≤ 19 digits cannot overflow uint64
	}
	if u > math.MaxInt64+uint64(b2i(neg)) {
		return 0, false
	}
	p, ok = cut(p[n:], ackTail)
	if !ok || !(bytes.Equal(p, []byte("true}")) || bytes.Equal(p, []byte("false}"))) {
		return 0, false
	}
	if neg {
		return -int64(u), true // u == 1<<63 wraps to MinInt64, as intended
	}
	return int64(u), true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cut removes prefix from p.
func cut(p, prefix []byte) ([]byte, bool) {
	if !bytes.HasPrefix(p, prefix) {
		return p, false
	}
	return p[len(prefix):], true
}

// skipPlainString skips the rest of a JSON string without escapes or
// control characters, up to and including its closing quote.
func skipPlainString(p []byte) ([]byte, bool) {
	for i, c := range p {
		switch {
		case c == '"':
			return p[i+1:], true
		case c == '\\' || c < 0x20:
			return p, false
		}
	}
	return p, false
}
