package axt

import (
	"bytes"
	"testing"
)

// FuzzDecode: any input either fails with ErrMalformed or decodes into a
// message whose payload is exactly the rest of the frame and which
// re-encodes to the same header and payload (length field aside).
func FuzzDecode(f *testing.F) {
	for _, s := range [][]byte{
		{0, 0, 0, 0, '1', '.', '0', '1', 0, 0},
		make([]byte, 30),
		[]byte("\x01\x00\x00\x001.02\x03abc\x00\x07\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00hi"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := Decode(b, &m); err != nil {
			return
		}
		h := m.HeaderLen()
		if h+len(m.Payload) != len(b) {
			t.Fatalf("header %d + payload %d != frame %d", h, len(m.Payload), len(b))
		}
		if len(m.Version) != 4 {
			t.Fatalf("version %q", m.Version)
		}
		if is102(m.Version) && len(m.Payload) > 0xffff {
			return // not re-encodable under 1.02; decoding it was still safe
		}
		out, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out[:h-4], b[:h-4]) || !bytes.Equal(out[h:], b[h:]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", out, b)
		}
		if !m.LengthMismatch() && !bytes.Equal(out, b) {
			t.Fatalf("consistent frame did not round-trip")
		}
	})
}

// FuzzDecodeAgent: the same for the agent leg.
func FuzzDecodeAgent(f *testing.F) {
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m AgentMessage
		if err := DecodeAgent(b, &m); err != nil {
			return
		}
		if 60+len(m.Payload) != len(b) {
			t.Fatal("payload is not the rest of the frame")
		}
		if _, err := m.Append(nil); err != nil && len(m.ChannelID) <= 32 {
			t.Fatal(err)
		}
	})
}
