package ssmtest

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Direction is a direction through the gateway.
type Direction int

const (
	// ToClient is agent → client: output_stream_data, the agent's acknowledges.
	ToClient Direction = iota
	// ToAgent is client → agent: input_stream_data, the client's acknowledges.
	ToAgent
)

func (d Direction) String() string {
	if d == ToAgent {
		return "ToAgent"
	}
	return "ToClient"
}

// FrameInfo describes a frame for Faults.Match.
type FrameInfo struct {
	MessageType    string // "output_stream_data", "acknowledge", ...
	SequenceNumber int64
	PayloadType    uint32 // 1 Output, 5 HandshakeRequest, 10 Flag, ...
	PayloadLength  int
}

// IsStreamData reports whether the frame is a sequenced data message
// (input_stream_data / output_stream_data).
func (f FrameInfo) IsStreamData() bool {
	return f.MessageType == wire.InputStreamData || f.MessageType == wire.OutputStreamData
}

// IsAck reports whether the frame is an acknowledge.
func (f FrameInfo) IsAck() bool { return f.MessageType == wire.Acknowledge }

// Faults describes what the gateway does to frames crossing it in one
// direction. Frames are counted (1-based) per direction since the last
// SetFaults, among the frames Match selects. Probabilities are in [0,1] and
// drawn from a generator seeded with Seed, so a run is reproducible for a
// given frame order. The zero value injects nothing: every probability's
// zero value means never, every *Nth field's zero value (nil) selects no
// frame. Service messages
// (channel_closed) and agent_session_state are never subject to faults.
type Faults struct {
	// Seed seeds the random generator for the probabilities. 0: seed 0.
	Seed uint64

	// Match selects the frames the faults apply to (and that are counted).
	// nil: every frame.
	Match func(FrameInfo) bool

	// Drop: the frame is lost.
	Drop    float64 // probability; 0: never
	DropNth []int   // frame numbers; nil: none

	// Duplicate: the frame is sent twice.
	Duplicate    float64
	DuplicateNth []int

	// Reorder: the frame is held back and sent right after the next frame in
	// the same direction (or after ReorderHold if none follows).
	Reorder    float64
	ReorderNth []int
	// ReorderHold bounds how long a held frame waits for a successor.
	// 0: 50 ms.
	ReorderHold time.Duration

	// Delay: the frame is delivered after Delay (later frames may overtake
	// it). DelayProb 0 with DelayNth nil and Delay > 0 delays every frame.
	Delay     time.Duration
	DelayProb float64
	DelayNth  []int

	// CorruptDigest flips a bit of the PayloadDigest header field (the
	// client must drop such a message silently; the real agent does not
	// check digests, so ToAgent corruption goes unnoticed).
	CorruptDigest    float64
	CorruptDigestNth []int
}

type heldFrame struct {
	b    []byte
	send func([]byte)
}

func (h *heldFrame) flush() {
	if h != nil {
		h.send(h.b)
	}
}

type faultState struct {
	mu   sync.Mutex
	f    Faults
	on   bool
	rng  *rand.Rand
	n    int
	held *heldFrame // frame held back for reordering
	gen  int        // held-frame generation, for the hold timer
}

// SetFaults replaces the faults of direction dir for every session (and
// resets its frame counter). SetFaults(dir, Faults{}) turns them off.
func (s *Server) SetFaults(dir Direction, f Faults) {
	fs := s.faultsFor(dir)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.f = f
	fs.on = f.Drop > 0 || len(f.DropNth) > 0 || f.Duplicate > 0 || len(f.DuplicateNth) > 0 ||
		f.Reorder > 0 || len(f.ReorderNth) > 0 || f.Delay > 0 || f.CorruptDigest > 0 || len(f.CorruptDigestNth) > 0
	fs.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
	fs.n = 0
}

func (s *Server) faultsFor(d Direction) *faultState {
	if d == ToAgent {
		return &s.faults[1]
	}
	return &s.faults[0]
}

func (fs *faultState) hit(p float64, nth []int) bool {
	if slices.Contains(nth, fs.n) {
		return true
	}
	return p > 0 && fs.rng.Float64() < p
}

// apply runs b (decoded as m) through the faults and calls send for each
// resulting delivery.
func (fs *faultState) apply(ss *session, dir Direction, b []byte, m *wire.Message, send func([]byte)) {
	fs.mu.Lock()
	if !fs.on {
		held := fs.held
		fs.held = nil
		fs.mu.Unlock()
		send(b)
		held.flush()
		return
	}
	f := &fs.f
	if f.Match != nil && !f.Match(FrameInfo{
		MessageType: m.MessageType, SequenceNumber: m.SequenceNumber,
		PayloadType: uint32(m.PayloadType), PayloadLength: len(m.Payload),
	}) {
		held := fs.held
		fs.held = nil
		fs.mu.Unlock()
		send(b)
		held.flush()
		return
	}
	fs.n++
	st := &ss.srv.st
	drop := fs.hit(f.Drop, f.DropNth)
	dup := fs.hit(f.Duplicate, f.DuplicateNth)
	reorder := fs.hit(f.Reorder, f.ReorderNth)
	corrupt := fs.hit(f.CorruptDigest, f.CorruptDigestNth)
	delay := f.Delay > 0 && (fs.hit(f.DelayProb, f.DelayNth) || (f.DelayProb == 0 && len(f.DelayNth) == 0))
	hold := f.ReorderHold
	if hold <= 0 {
		hold = 50 * time.Millisecond
	}
	d := f.Delay
	if drop {
		fs.mu.Unlock()
		st.framesDropped.Add(1)
		ss.srv.log.Debug("ssmtest: fault: drop", "session", ss.id, "dir", dir.String(), "type", m.MessageType, "seq", m.SequenceNumber)
		return
	}
	if corrupt {
		c := make([]byte, len(b))
		copy(c, b)
		c[80] ^= 0x01 // PayloadDigest starts at offset 80
		b = c
		st.digestsCorrupted.Add(1)
	}
	if reorder && fs.held == nil {
		fs.held = &heldFrame{b: b, send: send}
		fs.gen++
		gen := fs.gen
		fs.mu.Unlock()
		st.framesReordered.Add(1)
		ss.srv.goTracked(func() {
			t := time.NewTimer(hold)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ss.ctx.Done():
				return
			}
			fs.mu.Lock()
			var h *heldFrame
			if fs.gen == gen {
				h = fs.held
				fs.held = nil
			}
			fs.mu.Unlock()
			h.flush()
		})
		return
	}
	held := fs.held
	fs.held = nil
	fs.mu.Unlock()
	deliver := func() {
		send(b)
		if dup {
			st.framesDuplicated.Add(1)
			send(b)
		}
		held.flush()
	}
	if delay {
		st.framesDelayed.Add(1)
		ss.srv.goTracked(func() {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				deliver()
			case <-ss.ctx.Done():
			}
		})
		return
	}
	deliver()
}
