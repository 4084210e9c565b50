package axt

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

type vector struct {
	name  string // first line of the frame
	dir   string // client->server, server->client, agent->server, server->agent
	full  int    // the full websocket message length
	bytes []byte // as captured (may be cut)
}

func (v vector) cut() bool { return len(v.bytes) < v.full }

var (
	frameLine = regexp.MustCompile(`^\[[0-9:.]+\] (client->server|server->client|agent->server|server->agent)(?: keepalive)? .* len=([0-9]+)`)
	hexLine   = regexp.MustCompile(`^\s+[0-9a-f]{8}  ((?:[0-9a-f]{2}\s{1,2})+)`)
)

// loadVectors parses testdata/aliyun-capture.txt (hexdump -C blocks after
// a "[time] dir ... len=N" line).
func loadVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open("testdata/aliyun-capture.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	var cur *vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := frameLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[2])
			vs = append(vs, vector{name: line, dir: m[1], full: n})
			cur = &vs[len(vs)-1]
			continue
		}
		if strings.HasPrefix(line, "[") || strings.HasPrefix(line, "===") {
			cur = nil
			continue
		}
		if cur == nil {
			continue
		}
		if m := hexLine.FindStringSubmatch(line); m != nil {
			b, err := hex.DecodeString(strings.Join(strings.Fields(m[1]), ""))
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			cur.bytes = append(cur.bytes, b...)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestCaptureHasTheExpectedFrames(t *testing.T) {
	vs := loadVectors(t)
	count := map[string]int{}
	for _, v := range vs {
		count[v.dir]++
		if len(v.bytes) == 0 || len(v.bytes) > v.full || (len(v.bytes) < v.full && len(v.bytes) != 160) {
			t.Errorf("%s: parsed %d bytes of %d", v.name, len(v.bytes), v.full)
		}
	}
	// 4 client frames written by the real CLI, 4 server frames, and the
	// agent leg both ways.
	if count["client->server"] != 4 || count["server->client"] != 4 || count["agent->server"] != 3 || count["server->agent"] != 6 {
		t.Fatalf("frames per direction = %v", count)
	}
}

// TestClientLegFramesRoundTripByteForByte guards the client-leg codec:
// every frame in the capture decodes, and re-encoding gives the same
// bytes. A frame the capture cut after 160 bytes decodes from what is
// there (never trusting its length field) and its header re-encodes
// byte for byte.
func TestClientLegFramesRoundTripByteForByte(t *testing.T) {
	n := 0
	for _, v := range loadVectors(t) {
		if v.dir != "client->server" && v.dir != "server->client" {
			continue
		}
		n++
		var m Message
		if err := Decode(v.bytes, &m); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if m.Version != Schema101 {
			t.Errorf("%s: version %q", v.name, m.Version)
		}
		out, err := m.Append(nil)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if v.cut() {
			if !m.LengthMismatch() || int(m.DeclaredLength) != v.full-m.HeaderLen() {
				t.Errorf("%s: declared %d, payload %d: the cut frame must decode from its bytes, not its length field", v.name, m.DeclaredLength, len(m.Payload))
			}
			h := m.HeaderLen()
			if !bytes.Equal(out[:h-4], v.bytes[:h-4]) || !bytes.Equal(out[h:], v.bytes[h:]) {
				t.Errorf("%s: header or payload differs after re-encoding", v.name)
			}
			continue
		}
		if m.LengthMismatch() {
			t.Errorf("%s: length field %d, payload %d", v.name, m.DeclaredLength, len(m.Payload))
		}
		if !bytes.Equal(out, v.bytes) {
			t.Errorf("%s: re-encoded\n%x\nwant\n%x", v.name, out, v.bytes)
		}
	}
	if n != 8 {
		t.Fatalf("%d client-leg frames, want 8", n)
	}
}

func TestClientLegFieldsOfCapturedFrames(t *testing.T) {
	vs := loadVectors(t)
	var m Message
	byLen := map[int]vector{}
	for _, v := range vs {
		if v.dir == "client->server" || v.dir == "server->client" {
			byLen[v.full] = v
		}
	}
	// The real CLI's Close: type 3, no ids, seq 2, payload "1".
	if err := Decode(byLen[31].bytes, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != Close || m.ChannelID != "" || m.Seq != 2 || string(m.Payload) != "1" || m.Created != 1795361564689 {
		t.Fatalf("close frame = %+v", m)
	}
	// The stand-in's rate Status: channel id of 20 bytes, code 7, 32 768 000 bit/s.
	if err := Decode(byLen[55].bytes, &m); err != nil {
		t.Fatal(err)
	}
	code, rest, err := ParseStatus(m.Payload)
	if err != nil || code != StatusRate || m.ChannelID != "s-fake0000000001-001" {
		t.Fatalf("status = %+v %v %v", m, code, err)
	}
	if bps, err := ParseRate(rest); err != nil || bps != 32768000 {
		t.Fatalf("rate = %d, %v", bps, err)
	}
	if !bytes.Equal(RatePayload(32768000), m.Payload) {
		t.Fatalf("RatePayload = %x, want %x", RatePayload(32768000), m.Payload)
	}
}

// TestAgentLegFramesRoundTripByteForByte guards the emulator's agent-leg
// codec against the frames of the real agent and the stand-in server.
func TestAgentLegFramesRoundTripByteForByte(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.dir != "agent->server" && v.dir != "server->agent" {
			continue
		}
		var m AgentMessage
		if err := DecodeAgent(v.bytes, &m); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if !strings.HasPrefix(m.ChannelID, "s-fake") {
			t.Errorf("%s: channel %q", v.name, m.ChannelID)
		}
		out, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.cut() {
			if !bytes.Equal(out[:56], v.bytes[:56]) || !bytes.Equal(out[60:], v.bytes[60:]) || int(m.DeclaredLength) != v.full-60 {
				t.Errorf("%s: cut frame does not re-encode", v.name)
			}
			continue
		}
		if !bytes.Equal(out, v.bytes) {
			t.Errorf("%s: re-encoded\n%x\nwant\n%x", v.name, out, v.bytes)
		}
	}
}

func TestSchema102HeaderFields(t *testing.T) {
	m := Message{Type: Output, Version: Schema102, ChannelID: "c-1", InstanceID: "i-9", Created: 7,
		Seq: uint64(5)<<32 | 3, Encoding: 1, Payload: []byte("abc")}
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	var d Message
	if err := Decode(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.InputSeq() != 3 || d.OutputSeq() != 5 || d.Encoding != 1 || d.DeclaredLength != 3 || string(d.Payload) != "abc" || d.InstanceID != "i-9" {
		t.Fatalf("decoded %+v", d)
	}
	// A 1.02 length field that lies is not trusted: the payload is the frame's rest.
	b[len(b)-3-4] = 200
	if err := Decode(b, &d); err != nil || string(d.Payload) != "abc" || !d.LengthMismatch() {
		t.Fatalf("lying length: %+v %v", d, err)
	}
	// Too long for the 16-bit msgLength.
	m.Payload = make([]byte, 70000)
	if _, err := m.Append(nil); err == nil {
		t.Fatal("1.02 payload over 65535 accepted")
	}
}

func TestDecodeRefusesTruncatedHeaders(t *testing.T) {
	full, _ := (&Message{Type: Input, ChannelID: "abc", InstanceID: "def", Payload: []byte("x")}).Append(nil)
	for n := 0; n < len(full)-1; n++ {
		var m Message
		if err := Decode(full[:n], &m); err == nil {
			t.Fatalf("%d-byte prefix decoded", n)
		}
	}
	if err := DecodeAgent(make([]byte, 59), &AgentMessage{}); err == nil {
		t.Fatal("59-byte agent frame decoded")
	}
}

func TestPacingIntervalMatchesAgentFormula(t *testing.T) {
	for _, c := range []struct {
		bps   uint32
		chunk int
		want  int
	}{{DefaultRate, 2048, 83}, {DefaultRate, 1024, 40}, {1638400, 2048, 10}, {32768000, 2048, 0}, {1000, 2048, 1000}} {
		if got := PacingInterval(c.bps, c.chunk); got != c.want {
			t.Errorf("PacingInterval(%d, %d) = %d, want %d", c.bps, c.chunk, got, c.want)
		}
	}
}

// TestCaptureIsTheSharedOne guards the copy in testdata: it must be the
// byte-for-byte copy of ../shared/vectors/aliyun-capture.txt (when that is
// beside the checkout), so that the codec tests above cover every frame of
// the shared capture.
func TestCaptureIsTheSharedOne(t *testing.T) {
	shared := ""
	for d := "."; len(d) < 40; d = "../" + d {
		p := d + "/../shared/vectors/aliyun-capture.txt"
		if _, err := os.Stat(p); err == nil {
			shared = p
			break
		}
	}
	if shared == "" {
		t.Skip("no ../shared/vectors/aliyun-capture.txt above this directory")
	}
	want, err := os.ReadFile(shared)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("testdata/aliyun-capture.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("testdata/aliyun-capture.txt differs from %s: copy it again", shared)
	}
}
