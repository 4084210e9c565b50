package ssm

import "time"

// clockGranularity is G in RFC 6298.
const clockGranularity = 10 * time.Millisecond

// rtoEstimator is the RFC 6298 retransmission timer: SRTT/RTTVAR smoothing
// (α = 1/8, β = 1/4), RTO = SRTT + max(G, 4·RTTVAR) clamped to [min, max],
// an initial RTO of 1 s (clamped), and exponential back-off on expiry.
// Samples are taken only from messages that were sent once (Karn's rule;
// the caller enforces that). Not safe for concurrent use.
type rtoEstimator struct {
	srtt, rttvar time.Duration
	rto          time.Duration
	min, max     time.Duration
	sampled      bool

	// ackedXmit is the last transmission time of the most recently sent
	// message that has been acknowledged (RACK.xmit_ts, RFC 8985 §6.1): an
	// unacknowledged message sent before it is presumed lost, one sent
	// after it may merely be queued.
	ackedXmit time.Time
}

// acked records the acknowledgement of a message last sent at sentAt.
func (r *rtoEstimator) acked(sentAt time.Time) {
	if sentAt.After(r.ackedXmit) {
		r.ackedXmit = sentAt
	}
}

func newRTO(minRTO, maxRTO time.Duration) rtoEstimator {
	r := rtoEstimator{min: minRTO, max: maxRTO}
	r.rto = r.clamp(time.Second)
	return r
}

func (r *rtoEstimator) clamp(d time.Duration) time.Duration {
	if d < r.min {
		d = r.min
	}
	if d > r.max {
		d = r.max
	}
	return d
}

// sample feeds one round-trip measurement (RFC 6298 §2.2, §2.3). It also
// ends any back-off, as a fresh sample recomputes RTO.
func (r *rtoEstimator) sample(rtt time.Duration) {
	if rtt < 0 {
		rtt = 0
	}
	if !r.sampled {
		r.srtt = rtt
		r.rttvar = rtt / 2
		r.sampled = true
	} else {
		d := r.srtt - rtt
		if d < 0 {
			d = -d
		}
		r.rttvar = (3*r.rttvar + d) / 4
		r.srtt = (7*r.srtt + rtt) / 8
	}
	r.rto = r.clamp(r.srtt + max(clockGranularity, 4*r.rttvar))
}

// backoff doubles RTO after a retransmission timeout (RFC 6298 §5.5).
func (r *rtoEstimator) backoff() { r.rto = r.clamp(2 * r.rto) }
