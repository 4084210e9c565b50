package ssm

import (
	"sync"
	"time"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// outMsg is one sequenced message we sent (or are about to send), kept
// until the agent acknowledges it.
type outMsg struct {
	seq    int64
	frame  []byte    // the encoded message, resent as is
	sentAt time.Time // last transmission; zero before the first
	sends  int       // transmissions so far; RTT samples only when 1 (Karn)
	queued bool      // waiting in the resend queue
	acked  bool
	pooled bool // frame came from the free list and goes back on ack
}

// sendWindow holds unacknowledged messages in sequence order. Sequence
// numbers are contiguous, so lookup by sequence number is an index.
type sendWindow struct {
	q    []*outMsg
	head int
	base int64 // sequence number of q[head]
	n    int   // unacknowledged messages
}

func (w *sendWindow) push(m *outMsg) {
	w.q = append(w.q, m)
	w.n++
}

func (w *sendWindow) get(seq int64) *outMsg {
	i := seq - w.base
	if i < 0 || i >= int64(len(w.q)-w.head) {
		return nil
	}
	return w.q[w.head+int(i)]
}

// ack removes seq and returns it, or nil if it is not outstanding.
func (w *sendWindow) ack(seq int64) *outMsg {
	m := w.get(seq)
	if m == nil {
		return nil
	}
	w.q[w.head+int(seq-w.base)] = nil
	m.acked = true
	w.n--
	for w.head < len(w.q) && w.q[w.head] == nil {
		w.head++
		w.base++
	}
	w.q, w.head = compactHead(w.q, w.head)
	return m
}

// each calls f for every outstanding message in sequence order.
func (w *sendWindow) each(f func(*outMsg)) {
	for _, m := range w.q[w.head:] {
		if m != nil {
			f(m)
		}
	}
}

// inMsg is an out-of-order message parked until the gap before it fills.
// Its payload is a copy (the decoded frame is reused by the reader) taken
// from payloadPool.
type inMsg struct {
	ptype wire.PayloadType
	buf   *[]byte
}

// payloadPool recycles the copies of parked out-of-order payloads, so a
// lossy or reordering link costs no allocation per parked message.
var payloadPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledPayload bounds the buffers kept in payloadPool.
const maxPooledPayload = 64 << 10

// parkPayload returns a pooled copy of p.
func parkPayload(p []byte) *[]byte {
	bp := payloadPool.Get().(*[]byte)
	*bp = append((*bp)[:0], p...)
	return bp
}

// releasePayload returns a parked payload's buffer once its bytes were
// copied out.
func releasePayload(bp *[]byte) {
	if cap(*bp) <= maxPooledPayload {
		payloadPool.Put(bp)
	}
}

// ackItem is an acknowledgement waiting for the writer.
type ackItem struct {
	seq int64
	id  [16]byte
}

// ctrlItem is a sequenced control message (handshake response, flag)
// waiting for the writer, which assigns its sequence number.
type ctrlItem struct {
	ptype   wire.PayloadType
	payload []byte
}

// fifo is a queue that reuses its storage.
type fifo[T any] struct {
	q    []T
	head int
}

func (f *fifo[T]) len() int { return len(f.q) - f.head }

func (f *fifo[T]) push(v T) { f.q = append(f.q, v) }

func (f *fifo[T]) pop() T {
	v := f.q[f.head]
	var zero T
	f.q[f.head] = zero
	f.head++
	f.q, f.head = compactHead(f.q, f.head)
	return v
}

// compactHead drops the consumed prefix q[:head] of a head-indexed queue:
// at once when the queue is empty, otherwise only once the prefix is large
// (over 256 and over half), so that pops stay O(1) amortised and the slice's
// memory is reused.
func compactHead[T any](q []T, head int) ([]T, int) {
	if head == len(q) {
		return q[:0], 0
	}
	if head > 256 && head > len(q)/2 {
		k := copy(q, q[head:])
		clear(q[k:])
		return q[:k], 0
	}
	return q, head
}
