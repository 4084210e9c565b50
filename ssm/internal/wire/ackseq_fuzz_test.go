package wire

import (
	"testing"

	"github.com/google/uuid"
)

// FuzzParseAckSeq cross-checks the allocation-free acknowledgement parser
// against ParseAck (encoding/json): whenever ParseAck accepts a payload,
// ParseAckSeq must return the same sequence number, and it must refuse
// what ParseAck refuses; it must never panic, and AppendAck must
// round-trip.
func FuzzParseAckSeq(f *testing.F) {
	id := uuid.MustParse("dd61ae5c-6b07-4bd9-a0bb-16a4d2fb3f27")
	for _, seq := range []int64{0, 1, 42, -1, 1<<63 - 1, -1 << 63} {
		f.Add(AppendAck(nil, OutputStreamData, id, seq))
	}
	for _, s := range []string{
		`{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"x","AcknowledgedMessageSequenceNumber":7,"IsSequentialMessage":true}`,
		`{"AcknowledgedMessageSequenceNumber":7}`,
		`{"AcknowledgedMessageSequenceNumber": 7}`,
		`{"AcknowledgedMessageSequenceNumber":7.0}`,
		`{"AcknowledgedMessageSequenceNumber":1e3}`,
		`{"AcknowledgedMessageSequenceNumber":-0}`,
		`{"AcknowledgedMessageSequenceNumber":07}`,
		`{"AcknowledgedMessageSequenceNumber":9223372036854775808}`,
		`{"AcknowledgedMessageSequenceNumber":1,"AcknowledgedMessageSequenceNumber":2}`,
		`{"x":"\"AcknowledgedMessageSequenceNumber\":5,","AcknowledgedMessageSequenceNumber":6}`,
		`{"acknowledgedmessagesequencenumber":3}`,
		`{"AcknowledgedMessageSequenceNumber":null}`,
		`{"AcknowledgedMessageSequenceNumber":"4"}`,
		`{}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		got, gerr := ParseAckSeq(p)
		want, werr := ParseAck(p)
		if werr == nil && (gerr != nil || got != want) {
			t.Fatalf("ParseAckSeq(%q) = %d, %v; ParseAck = %d", p, got, gerr, want)
		}
		if werr != nil && gerr == nil {
			t.Fatalf("ParseAckSeq(%q) = %d accepted a payload ParseAck refuses (%v)", p, got, werr)
		}
		if gerr == nil {
			q := AppendAck(nil, OutputStreamData, uuid.UUID{}, got)
			if s, err := ParseAckSeq(q); err != nil || s != got {
				t.Fatalf("AppendAck(%d) round trip = %d, %v", got, s, err)
			}
		}
	})
}

// TestParseAckSeqDoesNotAllocateForPeerLayout guards the fast path: the
// acknowledgements AWS peers send (AppendAck's layout) parse without
// allocating.
func TestParseAckSeqDoesNotAllocateForPeerLayout(t *testing.T) {
	p := AppendAck(nil, OutputStreamData, uuid.New(), 123456789)
	allocs := testing.AllocsPerRun(100, func() {
		if seq, err := ParseAckSeq(p); err != nil || seq != 123456789 {
			t.Fatalf("ParseAckSeq = %d, %v", seq, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per acknowledgement", allocs)
	}
}
