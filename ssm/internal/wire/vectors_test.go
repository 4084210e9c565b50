package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, ":"); i >= 0 {
			line = line[i+1:]
		}
		b.WriteString(strings.ReplaceAll(line, " ", ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Golden vectors V1–V5 of the reference §12.2, produced with the plugin's own serializer.
var (
	idDD = uuid.MustParse("dd01e56b-ff48-483e-a508-b5f073f31b16")
	id00 = uuid.MustParse("00112233-4455-4677-8899-aabbccddeeff")
)

const v3Ack = `{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}`
const v4Hs = `{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}`

func TestGoldenVectorsV1toV5EncodeExactly(t *testing.T) {
	cases := []struct {
		name    string
		msg     Message
		payload []byte
		hexHdr  string // header (and payload when short)
	}{
		{"V1 client data", Message{MessageType: InputStreamData, SchemaVersion: 1, CreatedDate: 1503434274948, SequenceNumber: 1, MessageID: idDD, PayloadType: PayloadOutput}, []byte("payload"), `
0000: 00000074 696e7075745f73747265616d
0010: 5f646174612020202020202020202020
0020: 20202020 00000001 0000015e0baa7884
0030: 0000000000000001 0000000000000000
0040: a508b5f073f31b16 dd01e56bff48483e
0050: 239f59ed55e737c77147cf55ad0c1b03
0060: 0b6d7ee748a7426952f9b852d5a935e5
0070: 00000001 00000007 7061796c6f6164`},
		{"V2 TerminateSession flag", Message{MessageType: InputStreamData, SchemaVersion: 1, CreatedDate: 1503434274948, SequenceNumber: 5, MessageID: idDD, PayloadType: PayloadFlag}, FlagPayload(TerminateSession), `
0000: 00000074696e7075745f73747265616d
0010: 5f646174612020202020202020202020
0020: 20202020000000010000015e0baa7884
0030: 00000000000000050000000000000000
0040: a508b5f073f31b16dd01e56bff48483e
0050: 433ebf5bc03dffa38536673207a21281
0060: 612cef5faa9bc7a4d5b9be2fdb12cf1a
0070: 0000000a0000000400000002`},
		{"V3 acknowledge", Message{MessageType: Acknowledge, SchemaVersion: 1, CreatedDate: 1503434274948, Flags: FlagsAck, MessageID: idDD}, AppendAck(nil, OutputStreamData, idDD, 0), `
0000: 0000007461636b6e6f776c6564676520
0010: 20202020202020202020202020202020
0020: 20202020000000010000015e0baa7884
0030: 00000000000000000000000000000003
0040: a508b5f073f31b16dd01e56bff48483e
0050: 713a0a17057de630213f7292907ce384
0060: 62812ea213a29366f537f68c6ab60e85
0070: 00000000000000b0`},
		{"V4 HandshakeRequest", Message{MessageType: OutputStreamData, SchemaVersion: 1, CreatedDate: 1700000000000, Flags: FlagsSYN, MessageID: id00, PayloadType: PayloadHandshakeRequest}, []byte(v4Hs), `
0000: 000000746f75747075745f7374726561
0010: 6d5f6461746120202020202020202020
0020: 20202020000000010000018bcfe56800
0030: 00000000000000000000000000000001
0040: 8899aabbccddeeff0011223344554677
0050: 3ca0a47a2510852bbb086948e328640d
0060: 86669a0e53f9ffaa52d4cfa2738f2b30
0070: 000000050000009d`},
		{"V5 ConnectToPortError flag", Message{MessageType: OutputStreamData, SchemaVersion: 1, CreatedDate: 1700000000000, SequenceNumber: 7, MessageID: id00, PayloadType: PayloadFlag}, FlagPayload(ConnectToPortError), `
0000: 000000746f75747075745f7374726561
0010: 6d5f6461746120202020202020202020
0020: 20202020000000010000018bcfe56800
0030: 00000000000000070000000000000000
0040: 8899aabbccddeeff0011223344554677
0050: 88185d128d9922e0e6bcd32b07b6c7f2
0060: 0f27968eab447a1d8d1cdf250f79f7d3
0070: 0000000a0000000400000003`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.hexHdr)
			if len(want) == HeaderSize {
				want = append(want, c.payload...)
			}
			if string(c.payload) == v3Ack || c.name == "V3 acknowledge" {
				if string(c.payload) != v3Ack {
					t.Fatalf("AppendAck = %s\nwant %s", c.payload, v3Ack)
				}
			}
			m := c.msg
			m.SetPayload(c.payload)
			got, err := Encode(nil, &m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encode\n got %x\nwant %x", got, want)
			}
			var d Message
			if err := Decode(got, &d); err != nil {
				t.Fatal(err)
			}
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
			if d.MessageID != c.msg.MessageID || d.SequenceNumber != c.msg.SequenceNumber || !bytes.Equal(d.Payload, c.payload) {
				t.Fatalf("decode mismatch: %+v", d)
			}
		})
	}
}

// TestV6EmptyPayloadIsRefusedLikeAWSSerializers pins V6: AWS's serializers
// refuse an empty payload, so Encode does too; a received empty payload (not
// seen from AWS peers) still decodes, so the receiver can count and drop it.
func TestV6EmptyPayloadIsRefusedLikeAWSSerializers(t *testing.T) {
	m := Message{MessageType: InputStreamData, SchemaVersion: 1, CreatedDate: 1503434274948, MessageID: idDD, PayloadType: PayloadOutput}
	m.SetPayload(nil)
	if _, err := Encode(nil, &m); !errors.Is(err, ErrEmptyPayload) {
		t.Fatalf("Encode of an empty payload: %v, want ErrEmptyPayload", err)
	}
	m.SetPayload([]byte("x"))
	b, _ := Encode(nil, &m)
	b = b[:HeaderSize]
	b[HeaderSize-1] = 0 // PayloadLength 0
	var d Message
	if err := Decode(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Payload) != 0 || d.PayloadDigest == sha256.Sum256(nil) {
		t.Fatal("unexpected decode of empty payload")
	}
}

func TestMalformedFramesAreRejectedWithTypedErrors(t *testing.T) {
	good := Message{MessageType: OutputStreamData, SchemaVersion: 1, CreatedDate: 1, PayloadType: PayloadOutput}
	good.SetPayload([]byte("abc"))
	b, _ := Encode(nil, &good)
	mut := func(f func(b []byte) []byte) []byte { c := append([]byte(nil), b...); return f(c) }
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"short", b[:50], ErrShort},
		{"header length", mut(func(c []byte) []byte { c[3] = 0x75; return c }), ErrHeaderLength},
		{"payload length too big", mut(func(c []byte) []byte { c[119] = 9; return c }), ErrPayloadLength},
		{"payload truncated", b[:len(b)-1], ErrPayloadLength},
		{"empty type", mut(func(c []byte) []byte {
			for i := 4; i < 36; i++ {
				c[i] = ' '
			}
			return c
		}), ErrMessageType},
		{"binary type", mut(func(c []byte) []byte { c[5] = 0x01; return c }), ErrMessageType},
	}
	for _, c := range cases {
		var m Message
		if err := Decode(c.in, &m); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	var m Message
	bad := mut(func(c []byte) []byte { c[len(c)-1] ^= 1; return c })
	if err := Decode(bad, &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); !errors.Is(err, ErrDigest) {
		t.Fatalf("digest: %v", err)
	}
	zero := mut(func(c []byte) []byte {
		for i := 40; i < 48; i++ {
			c[i] = 0
		}
		return c
	})
	if err := Decode(zero, &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); !errors.Is(err, ErrCreatedDate) {
		t.Fatalf("created date: %v", err)
	}
}

func TestMessageTypePaddingIsStrippedLikeAWSPeers(t *testing.T) {
	m := Message{MessageType: Acknowledge, CreatedDate: 1}
	m.SetPayload([]byte("x"))
	b, _ := Encode(nil, &m)
	// The agent pads with NULs in some builds; both peers strip NULs then spaces.
	for i := 4 + len(Acknowledge); i < 36; i++ {
		b[i] = 0
	}
	var d Message
	if err := Decode(b, &d); err != nil || d.MessageType != Acknowledge {
		t.Fatalf("%q %v", d.MessageType, err)
	}
}

func TestAppendAckMatchesEncodingJSON(t *testing.T) {
	id := uuid.New()
	got := AppendAck(nil, InputStreamData, id, 123456789)
	want := `{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"` + id.String() + `","AcknowledgedMessageSequenceNumber":123456789,"IsSequentialMessage":true}`
	if string(got) != want {
		t.Fatalf("%s\n%s", got, want)
	}
	seq, err := ParseAck(got)
	if err != nil || seq != 123456789 {
		t.Fatal(seq, err)
	}
	if _, err := ParseAck([]byte(`{"IsSequentialMessage":true}`)); !errors.Is(err, ErrAck) {
		t.Fatal(err)
	}
}

func TestEncodeAndAckDoNotAllocateWithBuffer(t *testing.T) {
	m := Message{MessageType: InputStreamData, SchemaVersion: 1, CreatedDate: 1, PayloadType: PayloadOutput}
	m.SetPayload(make([]byte, 1024))
	buf := make([]byte, 0, 4096)
	var d Message
	allocs := testing.AllocsPerRun(100, func() {
		b, _ := Encode(buf[:0], &m)
		if err := Decode(b, &d); err != nil {
			t.Fatal(err)
		}
		_ = AppendAck(buf[:0], OutputStreamData, m.MessageID, 42)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per message", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	m := Message{MessageType: OutputStreamData, SchemaVersion: 1, CreatedDate: 1, PayloadType: PayloadOutput}
	m.SetPayload([]byte("hello"))
	b, _ := Encode(nil, &m)
	f.Add(b)
	f.Add(b[:HeaderSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		var d Message
		if err := Decode(in, &d); err != nil {
			return
		}
		_ = d.Validate()
		if d.MessageType == Acknowledge {
			_, _ = ParseAck(d.Payload)
		}
		if d.PayloadType == PayloadFlag {
			_, _ = ParseFlag(d.Payload)
		}
		if len(d.Payload) == 0 {
			return // AWS serializers refuse empty payloads, and so does Encode
		}
		out, err := Encode(nil, &d)
		if err != nil {
			t.Fatalf("re-encode of decoded message: %v", err)
		}
		// Padding may differ (NULs vs spaces); everything else round-trips.
		var d2 Message
		if err := Decode(out, &d2); err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if d2.MessageType != d.MessageType || d2.SequenceNumber != d.SequenceNumber || !bytes.Equal(d2.Payload, d.Payload) || d2.MessageID != d.MessageID {
			t.Fatal("round trip changed the message")
		}
	})
}
