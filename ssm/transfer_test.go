package ssm_test

import (
	"testing"
	"time"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// TestLargeTransferUnpacedLosesNoByte guards the data path against lost,
// duplicated, reordered or rewritten bytes: 64 MiB each way through an
// echo target.
func TestLargeTransferUnpacedLosesNoByte(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{Pacing: ssmtest.Unpaced}, echo.addr())
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = -1 // the echo target does not speak first
	s := dial(t, cfg)
	defer s.Close()
	start := time.Now()
	echoTransfer(t, s, 64<<20, 120*time.Second, nil)
	t.Logf("64 MiB each way in %v; client %+v", time.Since(start), s.Stats())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "no open session", func() bool { return srv.Stats().SessionsOpen == 0 })
}

// faultyTransfer echoes n bytes each way with the given faults and kills the
// session's websocket wantKills times (at 1/3 and 2/3 of the transfer).
func faultyTransfer(t *testing.T, n int64, toClient, toAgent ssmtest.Faults, wantKills int) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{Pacing: ssmtest.Unpaced}, echo.addr())
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = -1
	s := dial(t, cfg)
	defer s.Close()
	srv.SetFaults(ssmtest.ToClient, toClient)
	srv.SetFaults(ssmtest.ToAgent, toAgent)
	kills := 0
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // log the state if the transfer stalls, for diagnosis
		var last int64 = -1
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Second):
			}
			if st := s.Stats(); st.BytesReceived == last {
				t.Logf("stalled\nclient %+v\nemulator %+v", st, srv.Stats())
			} else {
				last = st.BytesReceived
			}
		}
	}()
	next := int64(16 << 20)
	echoTransfer(t, s, n, 120*time.Second, func(got int64) {
		if got >= next {
			t.Logf("%v: %d MiB echoed", time.Since(start).Round(time.Second), got>>20)
			next += 16 << 20
		}
		if kills < wantKills && got > int64(kills+1)*n/3 {
			if srv.KillWebsocket(s.ID()) != 1 {
				t.Errorf("KillWebsocket did not find the session's websocket")
			}
			kills++
		}
	})
	st := s.Stats()
	es := srv.Stats()
	t.Logf("%d MiB each way with faults in %v\nclient %+v\nemulator %+v", n>>20, time.Since(start), st, es)
	if st.Reconnects != int64(wantKills) {
		t.Errorf("Reconnects = %d, want %d", st.Reconnects, wantKills)
	}
	if st.Retransmissions == 0 || st.Duplicates == 0 {
		t.Errorf("faults were not exercised: %+v", st)
	}
	if es.FramesDuplicated == 0 || es.FramesReordered == 0 || (toAgent.Drop > 0 && es.FramesDropped == 0) {
		t.Errorf("emulator injected no faults: %+v", es)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "no open session", func() bool { return srv.Stats().SessionsOpen == 0 })
}

// TestLargeTransferSurvivesFaults guards reliability at volume: 64 MiB each
// way with 1% drop, 1% duplicate and 1% reordering of every frame the client
// sends, and 1% duplicate and reordering of every frame the agent sends.
//
// Frames from the agent are not dropped at this volume: the real agent (and
// so the emulator) repairs a lost message only when it is the head of its
// unacknowledged list, at most one per 100 ms tick and once per agent RTO
// (reference §6.5, §15.5), while an unpaced agent keeps sending; at 1% loss
// of a 64 MiB unpaced stream, or after a websocket kill in the middle of it
// (hundreds of frames sent into the void), the agent needs minutes of repair
// ticks whatever the client does. TestTransferSurvivesLossAndWebsocketKills
// covers agent-side loss and kills on a volume the agent can repair in time.
func TestLargeTransferSurvivesFaults(t *testing.T) {
	toClient := ssmtest.Faults{Seed: 1, Duplicate: 0.01, Reorder: 0.01}
	toAgent := ssmtest.Faults{Seed: 2, Drop: 0.01, Duplicate: 0.01, Reorder: 0.01}
	faultyTransfer(t, 64<<20, toClient, toAgent, 0)
}

// TestTransferSurvivesLossAndWebsocketKills guards recovery from 1% loss,
// duplication and reordering of every frame in both directions plus two
// websocket kills (the client must resume: ResumeSession, redial, resend),
// on 8 MiB each way.
func TestTransferSurvivesLossAndWebsocketKills(t *testing.T) {
	f := func(seed uint64) ssmtest.Faults {
		return ssmtest.Faults{Seed: seed, Drop: 0.01, Duplicate: 0.01, Reorder: 0.01}
	}
	faultyTransfer(t, 8<<20, f(3), f(4), 2)
}

// TestTransferRealisticPacingLosesNoByte runs 4 MiB each way with the
// agent's real pacing (1 KiB per ~1.4 ms).
func TestTransferRealisticPacingLosesNoByte(t *testing.T) {
	echo := startEcho(t, nil)
	srv := newEmulator(t, ssmtest.Config{Pacing: ssmtest.Realistic}, echo.addr())
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = -1 // the echo target does not speak first
	s := dial(t, cfg)
	defer s.Close()
	start := time.Now()
	echoTransfer(t, s, 4<<20, 60*time.Second, nil)
	el := time.Since(start)
	ceiling := float64(ssmtest.DefaultChunkSize) / ssmtest.RealisticMessagePeriod.Seconds()
	t.Logf("4 MiB each way in %v: %.1f%% of the pacing ceiling", el, 100*float64(4<<20)/el.Seconds()/ceiling)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
