package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The frames captured from AWS's real plugin and agent are checked in under
// testdata/frames in the format described in testdata/frames/README.md, so the
// tests need nothing beside the repository. When the captures they came from
// are present (../shared/vectors beside the repository, or $JUMPLESS_VECTORS),
// TestCheckedInFramesMatchSharedCaptures proves the checked-in bytes are the
// captured ones; -update-frames rewrites the checked-in files from them.

var updateFrames = flag.Bool("update-frames", false, "rewrite testdata/frames/*.frames from the shared captures")

// frameFile maps a checked-in frames file to the shared capture it comes from
// and carries its provenance note.
type frameFile struct {
	name       string // under testdata/frames
	capture    string // under the shared vectors directory
	provenance string
}

var frameFiles = []frameFile{
	{
		name:    "plugin-1.2.650.0.frames",
		capture: "plugin-capture.txt",
		provenance: `peer: aws/session-manager-plugin 1.2.650.0, built from public source at commit 61cf1288
role: the real plugin is the client; the other side is a local stand-in for the service and agent
sessions: (A) AWS-StartSSHSession over stdin/stdout; (B) port forwarding with AgentVersion
3.3.0.0 announced, so the plugin runs smux inside output_stream_data payloads
direction: plugin->server frames are the real plugin's bytes; server->plugin frames are the stand-in's`,
	},
	{
		name:    "agent-3.3.0.0.frames",
		capture: "agent-capture.txt",
		provenance: `peer: aws/amazon-ssm-agent 3.3.0.0, built from public source at commit 1c217c89,
with aws/session-manager-plugin 1.2.650.0 (commit 61cf1288) as the client
role: both real peers talk through a local stand-in message gateway; AWS-StartSSHSession to a real sshd
direction: agent->gateway frames are the real agent's, client->gateway the real plugin's,
gateway->agent the stand-in's (the control-channel interactive_shell task)`,
	},
}

// capturedFrame is one binary frame: its bytes and the header fields the
// capture tool decoded independently of this package.
type capturedFrame struct {
	label  string // "A#12 plugin->server": session A, frame 12 of the capture
	data   []byte
	fields map[string]string
}

// headerFields are the decoded header fields each frame carries, in order.
var headerFields = []string{"HL", "type", "ver", "created", "seq", "flags", "id", "payloadType", "payloadLen"}

var fieldPair = regexp.MustCompile(`(\w+)=("[^"]*"|[^\s\]]+)`)

// readFrames parses a checked-in frames file (testdata/frames/README.md).
func readFrames(r io.Reader, name string) ([]capturedFrame, error) {
	var frames []capturedFrame
	sc := bufio.NewScanner(r)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "frame "):
			f := capturedFrame{fields: map[string]string{}}
			rest := strings.TrimPrefix(line, "frame ")
			if i := strings.Index(rest, " len="); i >= 0 {
				f.label = rest[:i]
			}
			for _, m := range fieldPair.FindAllStringSubmatch(rest, -1) {
				f.fields[m[1]] = strings.Trim(m[2], `"`)
			}
			frames = append(frames, f)
		default:
			if len(frames) == 0 {
				return nil, fmt.Errorf("%s:%d: bytes before the first frame line", name, lineNo)
			}
			b, err := hex.DecodeString(line)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, lineNo, err)
			}
			frames[len(frames)-1].data = append(frames[len(frames)-1].data, b...)
		}
	}
	for _, f := range frames {
		if n, err := strconv.Atoi(f.fields["len"]); err != nil || n != len(f.data) {
			return nil, fmt.Errorf("%s: frame %s: %d bytes, len=%s", name, f.label, len(f.data), f.fields["len"])
		}
	}
	return frames, sc.Err()
}

// writeFrames writes frames in the checked-in format.
func writeFrames(w io.Writer, ff frameFile, frames []capturedFrame) {
	fmt.Fprintf(w, "# jumpless frames v1: binary Session Manager data-channel messages, see README.md\n#\n")
	for _, l := range strings.Split(ff.provenance, "\n") {
		fmt.Fprintf(w, "# %s\n", l)
	}
	for _, f := range frames {
		fmt.Fprintf(w, "\nframe %s len=%d", f.label, len(f.data))
		for _, k := range headerFields {
			fmt.Fprintf(w, " %s=%s", k, f.fields[k])
		}
		fmt.Fprintln(w)
		for b := f.data; len(b) > 0; {
			n := min(len(b), 32)
			fmt.Fprintln(w, hex.EncodeToString(b[:n]))
			b = b[n:]
		}
	}
}

func loadCheckedInFrames(t testing.TB, ff frameFile) []capturedFrame {
	t.Helper()
	path := filepath.Join("testdata", "frames", ff.name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frames, err := readFrames(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// TestCapturedFramesDecodeAndReencodeByteForByte guards against any codec
// difference from AWS's real plugin and agent: every captured binary frame
// must decode to the header fields the capture tool decoded and re-encode to
// the same bytes.
func TestCapturedFramesDecodeAndReencodeByteForByte(t *testing.T) {
	total := 0
	for _, ff := range frameFiles {
		for _, fr := range loadCheckedInFrames(t, ff) {
			total++
			name := ff.name + " " + fr.label
			var m Message
			if err := Decode(fr.data, &m); err != nil {
				t.Errorf("%s: decode: %v", name, err)
				continue
			}
			if err := m.Validate(); err != nil {
				t.Errorf("%s: validate: %v", name, err)
			}
			want := map[string]string{
				"HL":          strconv.Itoa(int(m.HeaderLength)),
				"type":        m.MessageType,
				"ver":         strconv.Itoa(int(m.SchemaVersion)),
				"created":     strconv.FormatUint(m.CreatedDate, 10),
				"seq":         strconv.FormatInt(m.SequenceNumber, 10),
				"flags":       strconv.FormatUint(m.Flags, 10),
				"id":          m.MessageID.String(),
				"payloadType": strconv.Itoa(int(m.PayloadType)),
				"payloadLen":  strconv.Itoa(int(m.PayloadLength)),
			}
			for k, v := range want {
				if got, ok := fr.fields[k]; !ok || got != v {
					t.Errorf("%s: field %s: capture says %q, decoded %q", name, k, got, v)
				}
			}
			out, err := Encode(nil, &m)
			if err != nil {
				t.Fatalf("%s: encode: %v", name, err)
			}
			if !bytes.Equal(out, fr.data) {
				t.Errorf("%s: re-encoded bytes differ\n got %x\nwant %x", name, out, fr.data)
			}
			// A message built from scratch with SetPayload gives the same bytes.
			n := m
			n.SetPayload(append([]byte(nil), m.Payload...))
			if out2, _ := Encode(nil, &n); !bytes.Equal(out2, fr.data) {
				t.Errorf("%s: SetPayload+Encode differs from capture", name)
			}
			if m.MessageType == Acknowledge {
				if _, err := ParseAck(m.Payload); err != nil {
					t.Errorf("%s: ack payload: %v", name, err)
				}
			}
		}
	}
	if total < 46 {
		t.Fatalf("only %d binary frames checked in, want the 46 captured", total)
	}
	t.Logf("%d captured binary frames round-tripped", total)
}

// TestCheckedInFramesMatchSharedCaptures guards the checked-in frames against
// drifting from the captures they were taken from. It runs where the captures
// are (CI has ../shared beside the repository) and skips elsewhere.
func TestCheckedInFramesMatchSharedCaptures(t *testing.T) {
	dir := sharedVectorsDir()
	if dir == "" {
		if *updateFrames {
			t.Fatal("-update-frames: shared captures not found (../shared/vectors or $JUMPLESS_VECTORS)")
		}
		t.Skip("shared captures not found (../shared/vectors beside the repository or $JUMPLESS_VECTORS); the checked-in frames are tested on their own")
	}
	for _, ff := range frameFiles {
		src, err := readSharedCapture(filepath.Join(dir, ff.capture))
		if err != nil {
			t.Fatal(err)
		}
		if *updateFrames {
			var b bytes.Buffer
			writeFrames(&b, ff, src)
			if err := os.WriteFile(filepath.Join("testdata", "frames", ff.name), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s: %d frames", ff.name, len(src))
		}
		got := loadCheckedInFrames(t, ff)
		if len(got) != len(src) {
			t.Fatalf("%s: %d frames checked in, %s has %d binary frames (go test -run %s -update-frames)", ff.name, len(got), ff.capture, len(src), t.Name())
		}
		for i := range src {
			if !bytes.Equal(got[i].data, src[i].data) || got[i].label != src[i].label {
				t.Errorf("%s: frame %d (%s) differs from %s (%s)", ff.name, i, got[i].label, ff.capture, src[i].label)
			}
			for _, k := range headerFields {
				if got[i].fields[k] != src[i].fields[k] {
					t.Errorf("%s: frame %s: %s=%q, capture has %q", ff.name, got[i].label, k, got[i].fields[k], src[i].fields[k])
				}
			}
		}
	}
}

func sharedVectorsDir() string {
	for _, d := range []string{os.Getenv("JUMPLESS_VECTORS"), "../../../../shared/vectors"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "README.md")); err == nil {
			return d
		}
	}
	return ""
}

var (
	captureHexLine = regexp.MustCompile(`^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2}){1,16})`)
	captureTitle   = regexp.MustCompile(`^=== (\w+) #(\d+)\s+(\S+->\S+)\s.*\blen=(\d+)`)
	captureSection = regexp.MustCompile(`^## ([A-Z])\. `)
)

// readSharedCapture returns the binary frames of one shared capture file
// (hexdump -C style, one "===" title line per frame).
func readSharedCapture(path string) ([]capturedFrame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var frames []capturedFrame
	var cur *capturedFrame
	section := "" // "A", "B": the "## A. ..." headings of a capture with several sessions
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := captureSection.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		if strings.HasPrefix(line, "===") {
			cur = nil
			m := captureTitle.FindStringSubmatch(line)
			if m == nil || !strings.Contains(line, " binary") {
				continue
			}
			label := m[1] + "#" + m[2] // control#2, data#7
			if m[1] == "frame" && section != "" {
				label = section + "#" + m[2] // A#2: frame 2 of session A
			}
			frames = append(frames, capturedFrame{label: label + " " + m[3], fields: map[string]string{"len": m[4]}})
			cur = &frames[len(frames)-1]
			if i := strings.Index(line, "["); i >= 0 {
				for _, p := range fieldPair.FindAllStringSubmatch(line[i+1:], -1) {
					cur.fields[p[1]] = strings.Trim(p[2], `"`)
				}
			}
			continue
		}
		if cur == nil {
			continue
		}
		if m := captureHexLine.FindStringSubmatch(line); m != nil {
			b, err := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %v", path, line, err)
			}
			cur.data = append(cur.data, b...)
		}
	}
	for _, f := range frames {
		if n, _ := strconv.Atoi(f.fields["len"]); n != len(f.data) {
			return nil, fmt.Errorf("%s: %s: %d bytes, title says %d", path, f.label, len(f.data), n)
		}
	}
	return frames, sc.Err()
}

// TestFramesFileParseErrorsNameTheLine guards the checked-in format's parser:
// a damaged file fails with the file and line, never with fewer frames.
func TestFramesFileParseErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"00ff\n", "x.frames:1: bytes before the first frame line"},
		{"# note\nframe A#1 a->b len=2\n00zz\n", "x.frames:3:"},
		{"frame A#1 a->b len=3\n00ff\n", "frame A#1 a->b: 2 bytes, len=3"},
	} {
		_, err := readFrames(strings.NewReader(c.in), "x.frames")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("readFrames(%q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}
