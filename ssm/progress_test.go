package ssm_test

import (
	"testing"
	"time"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// TestResentDuplicatesAreNotProgress guards the liveness rule behind
// LastProgress against a peer that makes no net progress: when none of
// the client's acknowledgements reach the agent, the agent resends the
// head of its unacknowledged messages forever (reference §6.5, §6.8) and
// the client receives nothing but the same duplicate. That must not count
// as progress, or a protocol above (SSH keepalives) would keep a dead path
// alive forever. The first duplicate of a sequence number may count; its
// repetitions must not.
func TestResentDuplicatesAreNotProgress(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{}, echo.addr())
	s := dial(t, clientConfig(srv))
	defer s.Close()
	echoTransfer(t, s, 4<<10, 30*time.Second, nil) // the session works

	srv.SetFaults(ssmtest.ToAgent, ssmtest.Faults{Match: ssmtest.FrameInfo.IsAck, Drop: 1})
	echoTransfer(t, s, 32<<10, 30*time.Second, nil) // the client's data still reaches the agent; its acks do not
	dup0 := s.Stats().Duplicates
	waitFor(t, 60*time.Second, "the agent's first retransmissions", func() bool { return s.Stats().Duplicates >= dup0+2 })
	last := s.LastProgress()
	retrans0 := srv.Stats().Retransmissions
	waitFor(t, 60*time.Second, "eight more retransmissions", func() bool {
		return s.Stats().Duplicates >= dup0+10 && srv.Stats().Retransmissions >= retrans0+8
	})
	if got := s.LastProgress(); got.After(last) {
		t.Fatalf("LastProgress moved from %v to %v while only the same duplicates arrived (%d duplicates): a dead path would look alive forever",
			last.Format(time.StampMilli), got.Format(time.StampMilli), s.Stats().Duplicates-dup0)
	}
	if s.Err() != nil {
		t.Fatalf("session failed: %v", s.Err())
	}
}
