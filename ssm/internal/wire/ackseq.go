package wire

import (
	"bytes"
	"math"
)

var ackSeqKey = []byte(`"AcknowledgedMessageSequenceNumber":`)

// ParseAckSeq returns the acknowledged sequence number like ParseAck, but
// without allocating for the layout AWS peers send (encoding/json output of
// Ack). Payloads it cannot read that way are handed to ParseAck.
func ParseAckSeq(p []byte) (int64, error) {
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return ParseAck(p)
	}
	i := bytes.Index(p, ackSeqKey)
	if i < 0 {
		return ParseAck(p)
	}
	j := i + len(ackSeqKey)
	neg := false
	if j < len(p) && p[j] == '-' {
		neg = true
		j++
	}
	start := j
	var v int64
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		if v > (math.MaxInt64-9)/10 {
			return ParseAck(p)
		}
		v = v*10 + int64(p[j]-'0')
		j++
	}
	if j == start || j >= len(p) || (p[j] != ',' && p[j] != '}') {
		return ParseAck(p)
	}
	if neg {
		v = -v
	}
	return v, nil
}
