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
// The pacer keeps an absolute schedule of one message per period, so timer
// overshoot does not change the average rate: a sleep that overshoots is
// made up by a shorter next one (under load the host's timer overshoot was
// 0.3-0.6 ms, so a fixed 1 ms sleep plus a fixed cost made the rate depend on
// the load: 0.56 MiB/s in the first measurement). BENCHMARKS.md at the
// repository root has the measurements through the emulator.
const RealisticMessagePeriod = 1395 * time.Microsecond

// maxPaceLag is how far behind schedule the pacer may fall (target idle,
// back-pressure) before it restarts the schedule instead of bursting.
const maxPaceLag = 5 * time.Millisecond

// pacer paces the target → client loop.
type pacer struct {
	realistic bool
	next      time.Time
}

// pace is called after a message was sent; t0 is when the chunk was read.
func (p *pacer) pace(t0 time.Time) {
	if !p.realistic {
		return
	}
	if p.next.IsZero() || t0.Sub(p.next) > maxPaceLag {
		p.next = t0
	}
	p.next = p.next.Add(RealisticMessagePeriod)
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	}
}
