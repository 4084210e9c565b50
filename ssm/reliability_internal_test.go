package ssm

import (
	"testing"
	"time"
)

// timerSession is a Session with only what expireLocked uses: a live
// connection, an RTO of 1 s and n messages in the send window.
func timerSession(n int, sentAt func(i int) time.Time) *Session {
	s := &Session{wkick: make(chan struct{}, 1), conn: &wsConn{}, rto: newRTO(time.Second, 10*time.Second)}
	for i := range n {
		s.win.push(&outMsg{seq: int64(i), sends: 1, sentAt: sentAt(i)})
	}
	return s
}

func queuedSeqs(s *Session) []int64 {
	var q []int64
	for s.resendQ.len() > 0 {
		q = append(q, s.resendQ.pop().seq)
	}
	return q
}

// TestRetransmitTimerDoesNotResendWholeWindowWhenAcksAreLate guards against
// the retransmission storm that resending every expired message caused when
// acknowledgements were only queued (an agent busy writing, acks behind a
// megabyte of data): with no evidence of loss, one timeout resends only the
// earliest message (RFC 6298 §5.4) and backs off, and the next timeout
// period resends the next.
func TestRetransmitTimerDoesNotResendWholeWindowWhenAcksAreLate(t *testing.T) {
	now := time.Now()
	s := timerSession(100, func(int) time.Time { return now.Add(-2 * time.Second) })
	s.expireLocked(now)
	if q := queuedSeqs(s); len(q) != 1 || q[0] != 0 {
		t.Fatalf("first timeout resent %v, want only [0]", q)
	}
	if s.rto.rto != 2*time.Second {
		t.Fatalf("RTO after a timeout = %v, want 2s (backed off)", s.rto.rto)
	}
	s.win.get(0).sentAt = now // the writer resent it
	s.win.get(0).sends++
	s.expireLocked(now.Add(500 * time.Millisecond))
	if q := queuedSeqs(s); len(q) != 0 {
		t.Fatalf("within the backed-off timeout period resent %v, want nothing", q)
	}
	s.expireLocked(now.Add(2 * time.Second))
	if q := queuedSeqs(s); len(q) != 1 || q[0] != 1 {
		t.Fatalf("next timeout period resent %v, want only [1]", q)
	}
}

// TestRetransmitTimerResendsEveryMessageSentBeforeAnAckedOne guards loss
// recovery by timer: an expired message sent before a message that has been
// acknowledged was lost (RACK, RFC 8985), so all of those are resent at
// once, plus one probe among the rest.
func TestRetransmitTimerResendsEveryMessageSentBeforeAnAckedOne(t *testing.T) {
	now := time.Now()
	s := timerSession(10, func(i int) time.Time {
		if i < 5 {
			return now.Add(-3 * time.Second)
		}
		return now.Add(-2 * time.Second)
	})
	s.rto.acked(now.Add(-2500 * time.Millisecond)) // a message sent between the two groups was acked
	s.expireLocked(now)
	q := queuedSeqs(s)
	want := []int64{0, 1, 2, 3, 4, 5}
	if len(q) != len(want) {
		t.Fatalf("resent %v, want %v", q, want)
	}
	for i := range q {
		if q[i] != want[i] {
			t.Fatalf("resent %v, want %v", q, want)
		}
	}
}
