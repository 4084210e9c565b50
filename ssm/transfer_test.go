package ssm_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpless/jumpless/ssm"
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
// session's websocket wantKills times (once 1/3 and 2/3 of the bytes were
// echoed back).
//
// Each kill loses 100 frames in the dying socket (ssmtest.Config.KillLoss;
// the tunnel package's 64 MiB test is about the repair stall), so the stall
// per kill is ≈ 10 s and the test stays about random faults.
func faultyTransfer(t *testing.T, n int64, toClient, toAgent ssmtest.Faults, wantKills int) {
	faultyTransferWith(t, transferOpts{emu: ssmtest.Config{Pacing: ssmtest.Unpaced, KillLoss: 100}},
		n, toClient, toAgent, wantKills)
}

// agentRTO is the emulated agent's RTO in the fault tests: pinned at 10 ms,
// the floor of the real agent's estimate (reference §6.5), so it repairs one
// lost message per 100 ms tick, as an idle real agent on a fast path does.
// Estimated, it climbs towards its 1 s cap when the RTT samples include
// queueing behind an unpaced sender, more so on a loaded host, and repairs
// up to 11 times slower: the same outcome for the client (the gap between
// repairs, ≤ 1.1 s, never looks like a dead path), a duration from minutes
// to most of an hour. Assumption, stated: the faster end of the real range.
const agentRTO = 10 * time.Millisecond

// transferIdle is how long a faulty transfer may echo nothing back before
// it counts as hung: far above the longest legitimate gap (a kill's
// repair, ≈ 10 s), on any host.
const transferIdle = 90 * time.Second

// transferOpts tune faultyTransferWith.
type transferOpts struct {
	emu    ssmtest.Config // AgentRTO zero: agentRTO
	client ssm.Config     // only the buffer sizes are used (zero: defaults)
	// killOnSent times the kills on the bytes the client has sent (1/3 and
	// 2/3 of n), i.e. in the middle of the upload and, through the echo,
	// of the download; false times them on the bytes echoed back in order.
	killOnSent bool
}

func faultyTransferWith(t *testing.T, o transferOpts, n int64, toClient, toAgent ssmtest.Faults, wantKills int) {
	if o.emu.AgentRTO == 0 {
		o.emu.AgentRTO = agentRTO
	}
	echo := startEcho(t, nil)
	srv := newEmulator(t, o.emu, echo.addr())
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = -1
	cfg.ReorderBuffer = o.client.ReorderBuffer
	cfg.ReadBuffer = o.client.ReadBuffer
	s := dial(t, cfg)
	defer s.Close()
	srv.SetFaults(ssmtest.ToClient, toClient)
	srv.SetFaults(ssmtest.ToAgent, toAgent)
	var kills atomic.Int64
	kill := func(progress int64) {
		if k := kills.Load(); k < int64(wantKills) && progress > (k+1)*n/3 {
			if srv.KillWebsocket(s.ID()) != 1 {
				t.Errorf("KillWebsocket did not find the session's websocket")
			}
			t.Logf("websocket killed at %d MiB", progress>>20)
			kills.Add(1)
		}
	}
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Add(1)
	go func() { // kills on upload progress; logs the state if the transfer stalls
		defer wg.Done()
		var last int64 = -1
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			st := s.Stats()
			if o.killOnSent {
				kill(st.BytesSent)
			}
			if time.Since(lastLog) < 10*time.Second {
				continue
			}
			lastLog = time.Now()
			if st.BytesReceived == last {
				t.Logf("stalled\nclient %+v\nemulator %+v", st, srv.Stats())
			} else {
				last = st.BytesReceived
			}
		}
	}()
	next := int64(16 << 20)
	echoTransfer(t, s, n, transferIdle, func(got int64) {
		if got >= next {
			st, es := s.Stats(), srv.Stats()
			t.Logf("%v: %d MiB echoed (client: SRTT %v, %d retransmissions; agent: %d retransmissions)",
				time.Since(start).Round(time.Second), got>>20, st.SRTT.Round(time.Millisecond), st.Retransmissions, es.Retransmissions)
			next += 16 << 20
		}
		if !o.killOnSent {
			kill(got)
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
	if es.FramesDuplicated == 0 || es.FramesReordered == 0 || (toAgent.Drop+toClient.Drop > 0 && es.FramesDropped == 0) {
		t.Errorf("emulator injected no faults: %+v", es)
	}
	if st.DroppedUnacked != 0 && o.client.ReorderBuffer > 0 {
		t.Errorf("the client refused %d accepted frames (reorder buffer %d)", st.DroppedUnacked, o.client.ReorderBuffer)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "no open session", func() bool { return srv.Stats().SessionsOpen == 0 })
}

// TestLargeTransferSurvivesLossDuplicationReorderingAndKills guards
// reliability at volume, the requirement in one test: 64 MiB of
// random bytes each way through the unpaced emulator to an echo target,
// sha256 equal, with 1% drop, 1% duplication and 1% reordering of every
// frame in both directions (data and acknowledgements alike) and two
// websocket kills in the middle of the transfer (at 1/3 and 2/3 of the
// upload, while the echo streams back).
//
// Assumptions, all stated rather than hidden:
//   - The emulator runs with BufferWhileDisconnected: the gateway replays the
//     agent's output frames the client had not acknowledged when its
//     websocket died (those in the dead socket's buffers). Whether MGS does
//     this is not documented. Without it, every frame in the socket buffers
//     at a kill (thousands, unpaced on loopback) is repaired by the agent
//     alone, head-of-line, one per RTO (≈ 1 s with queueing), i.e. hours.
//   - Each kill loses 100 frames in the dying socket (ssmtest.Config.KillLoss;
//     the repair stall is the subject of the tunnel package's 64 MiB
//     test), so the time stays set by the random faults.
//   - The client's ReorderBuffer is 100000 messages, the real agent's
//     incoming capacity, so no frame the emulator delivers is refused while
//     the agent repairs a gap: an unpaced agent races up to the whole 64 MiB
//     ahead of a lost message.
//   - The agent's RTO is pinned at 10 ms (agentRTO): one repair per tick.
//
// The duration is set by the emulated agent, not the client: it repairs a
// lost message only as the head of its unacknowledged list, at most one per
// 100 ms tick (reference §6.5, §15.5), and at 1% loss of both its data
// frames and the client's acknowledgements that is ≈ 1 350 repairs, i.e.
// ≥ 135 s whatever the client does (see BENCHMARKS.md). With the RTO
// estimated, a loaded host's queueing pushed it towards 1 s and the test
// past any fixed deadline. Realistic pacing would not be faster: the same
// repairs, plus 92 s of paced data. The test fails when nothing is echoed
// back for transferIdle, not on a deadline for the whole transfer.
func TestLargeTransferSurvivesLossDuplicationReorderingAndKills(t *testing.T) {
	f := func(seed uint64) ssmtest.Faults {
		return ssmtest.Faults{Seed: seed, Drop: 0.01, Duplicate: 0.01, Reorder: 0.01}
	}
	faultyTransferWith(t, transferOpts{
		emu:        ssmtest.Config{Pacing: ssmtest.Unpaced, BufferWhileDisconnected: true, KillLoss: 100},
		client:     ssm.Config{ReorderBuffer: 100000},
		killOnSent: true,
	}, 64<<20, f(5), f(6), 2)
}

// TestTransferSurvivesLossAndWebsocketKills guards recovery from 1% loss,
// duplication and reordering of every frame in both directions plus two
// websocket kills with the service's default (pessimistic) behaviour: frames
// in the dead socket are lost and only the agent's own retransmission
// repairs them. 8 MiB each way, default client buffers.
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
