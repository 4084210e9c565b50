package ssmtest

import "time"

// RealisticMessagePeriod is the time one iteration of the emulated agent's
// target → client loop takes with Pacing Realistic: read ≤ 1024 bytes, send
// one message, time.Sleep(1 ms) — plus the real agent's per-message cost
// (serialising, SHA-256, buffering, the websocket/TLS write to MGS and MGS's
// relay), which the emulator does not incur and therefore models.
//
// Calibration: AWS's real agent delivered 0.70 MiB/s per session for a
// download (32 MiB, sha256-checked, median of 3 runs) on this machine class,
// i.e. 1024 B every 1024/(0.70·2^20) s = 1.395 ms. On the same machine
// time.Sleep(1 ms) alone takes 1.099 ms (2000 iterations, Go 1.26), which
// would give 0.89 MiB/s; the remaining ≈ 0.30 ms is the modelled agent cost.
// The pacer reproduces the agent's loop rather than a rate: after each
// message it sleeps time.Sleep(1 ms) as the agent does (so the Go timer's
// overshoot, which grows with the host's load, slows it as it slows the
// real agent; a loaded host measured 1.23–1.26 ms per call), and adds the
// modelled per-message cost, RealisticMessagePeriod minus one idle
// Sleep(1 ms), on an accounted schedule (whole-millisecond sleeps whose
// actual length is subtracted, so the cost stays the same under load).
// Earlier the pacer held an absolute schedule of one message per period
// whatever the load: it kept 0.70 MiB/s on a loaded host where the real
// agent fell to 0.43–0.61 MiB/s (ssm-real-peers.md; internal/realagent's
// calibration benchmark), i.e. it was kinder than the real agent.
const RealisticMessagePeriod = 1395 * time.Microsecond

// agentLoopSleep is the real agent's sleep after each message
// ([A] port_basic.go WritePump: time.Sleep(time.Millisecond)).
const agentLoopSleep = time.Millisecond

// idleSleep1ms is what time.Sleep(1 ms) took on an idle host of the
// calibration machine class (BENCHMARKS.md).
const idleSleep1ms = 1099 * time.Microsecond

// agentMessageCost is the real agent's per-message cost beyond its sleep,
// modelled: RealisticMessagePeriod minus one idle Sleep(1 ms) (0.296 ms).
const agentMessageCost = RealisticMessagePeriod - idleSleep1ms

// pacer paces the target → client loop.
type pacer struct {
	realistic bool
	debt      time.Duration // modelled cost not slept yet (negative: slept ahead)
}

// pace is called after each message was sent.
func (p *pacer) pace() {
	if !p.realistic {
		return
	}
	time.Sleep(agentLoopSleep)
	p.debt += agentMessageCost
	if p.debt >= agentLoopSleep {
		// Whole-millisecond sleeps only: with Go's timer a sleep between 1
		// and 2 ms takes about 2 ms on Linux; the overshoot is accounted.
		s := time.Now()
		time.Sleep(agentLoopSleep)
		p.debt -= time.Since(s)
	}
}
