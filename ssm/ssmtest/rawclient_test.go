package ssmtest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/internal/wire"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// rawClient is a minimal Session Manager client written against the wire
// codec only (no package ssm), enough to drive the emulator: OpenDataChannel,
// handshake, in-order delivery with acks, out-of-order buffering, re-acking
// duplicates, and retransmission of every unacked message.
type rawClient struct {
	t     testing.TB
	srv   *ssmtest.Server
	url   string
	token string

	wmu sync.Mutex
	ws  *websocket.Conn

	mu       sync.Mutex
	seq      int64
	unacked  map[int64][]byte
	sentAt   map[int64]time.Time
	expected int64
	ooo      map[int64]*wire.Message
	data     chan []byte        // in-order Output payloads
	frames   chan *wire.Message // every non-ack frame received, in arrival order
	closed   chan *wire.ChannelClosedPayload
	hsReq    *wire.HandshakeRequest
	noAck    bool // do not acknowledge output (handshake-timeout test)
	sawState bool // agent_session_state seen (must never happen)

	done chan struct{}
	wg   sync.WaitGroup
}

func dialRaw(t testing.TB, srv *ssmtest.Server, streamURL, token string) *rawClient {
	t.Helper()
	return dialRawOpts(t, srv, streamURL, token, false)
}

// dialRawOpts is dialRaw; noAck makes the client never acknowledge nor
// answer anything the agent sends.
func dialRawOpts(t testing.TB, srv *ssmtest.Server, streamURL, token string, noAck bool) *rawClient {
	t.Helper()
	c := &rawClient{noAck: noAck,
		t: t, srv: srv, url: streamURL, token: token,
		unacked: map[int64][]byte{}, sentAt: map[int64]time.Time{}, ooo: map[int64]*wire.Message{},
		data: make(chan []byte, 1<<16), frames: make(chan *wire.Message, 1<<12),
		closed: make(chan *wire.ChannelClosedPayload, 1), done: make(chan struct{}),
	}
	if err := c.connect(token); err != nil {
		t.Fatalf("dial %s: %v", streamURL, err)
	}
	c.wg.Add(1)
	go c.resender()
	t.Cleanup(c.close)
	return c
}

func (c *rawClient) connect(token string) error {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second} // a hang bound: a loaded host is slow, loopback never loses the handshake
	if pool := c.srv.CertPool(); pool != nil {
		d.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	ws, _, err := d.Dial(c.url, nil)
	if err != nil {
		return err
	}
	open, _ := json.Marshal(wire.OpenDataChannel{
		MessageSchemaVersion: "1.0", RequestID: uuid.NewString(), TokenValue: token,
		ClientID: uuid.NewString(), ClientVersion: "1.2.650.0",
	})
	if err := ws.WriteMessage(websocket.TextMessage, open); err != nil {
		ws.Close()
		return err
	}
	c.wmu.Lock()
	c.ws = ws
	c.wmu.Unlock()
	c.wg.Add(1)
	go c.reader(ws)
	return nil
}

func (c *rawClient) close() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wmu.Lock()
	if c.ws != nil {
		c.ws.Close()
	}
	c.wmu.Unlock()
	c.wg.Wait()
}

func (c *rawClient) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ws == nil {
		return errors.New("no websocket")
	}
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (c *rawClient) reader(ws *websocket.Conn) {
	defer c.wg.Done()
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var m wire.Message
		if err := wire.Decode(b, &m); err != nil {
			c.t.Errorf("emulator sent an undecodable frame: %v", err)
			continue
		}
		if err := m.Validate(); err != nil {
			continue // e.g. corrupted digest: drop silently, like the plugin
		}
		if len(m.Payload) == 0 {
			c.t.Errorf("emulator sent an empty payload: %+v", m)
		}
		switch m.MessageType {
		case wire.Acknowledge:
			seq, err := wire.ParseAck(m.Payload)
			if err != nil {
				c.t.Errorf("bad ack from emulator: %v", err)
				continue
			}
			c.mu.Lock()
			delete(c.unacked, seq)
			delete(c.sentAt, seq)
			c.mu.Unlock()
			c.push(&m)
		case wire.OutputStreamData:
			c.onOutput(&m)
		case wire.ChannelClosed:
			var p wire.ChannelClosedPayload
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				c.t.Errorf("channel_closed payload: %v", err)
			}
			select {
			case c.closed <- &p:
			default:
			}
			c.push(&m)
		case wire.AgentSessionState:
			c.mu.Lock()
			c.sawState = true
			c.mu.Unlock()
			c.t.Errorf("agent_session_state forwarded to the client")
		default:
			c.push(&m)
		}
	}
}

func (c *rawClient) push(m *wire.Message) {
	cp := *m
	cp.Payload = append([]byte(nil), m.Payload...)
	select {
	case c.frames <- &cp:
	default:
	}
}

func (c *rawClient) onOutput(m *wire.Message) {
	c.push(m)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.noAck {
		return
	}
	switch {
	case m.SequenceNumber == c.expected:
		c.ackLocked(m)
		c.deliver(m)
		c.expected++
		for {
			n, ok := c.ooo[c.expected]
			if !ok {
				break
			}
			delete(c.ooo, c.expected)
			c.deliver(n)
			c.expected++
		}
	case m.SequenceNumber > c.expected:
		cp := *m
		cp.Payload = append([]byte(nil), m.Payload...)
		c.ooo[m.SequenceNumber] = &cp
		c.ackLocked(m)
	default:
		c.ackLocked(m) // re-ack duplicates
	}
}

func (c *rawClient) deliver(m *wire.Message) {
	switch m.PayloadType {
	case wire.PayloadHandshakeRequest:
		var r wire.HandshakeRequest
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			c.t.Errorf("HandshakeRequest: %v", err)
		}
		c.hsReq = &r
		resp, _ := json.Marshal(wire.HandshakeResponse{
			ClientVersion: "1.2.650.0",
			ProcessedClientActions: []wire.ProcessedAction{{
				ActionType: "SessionType", ActionStatus: wire.ActionSuccess, ActionResult: json.RawMessage("null"),
			}},
		})
		c.sendLocked(wire.PayloadHandshakeResponse, resp)
	case wire.PayloadOutput:
		c.data <- append([]byte(nil), m.Payload...)
	}
}

func (c *rawClient) ackLocked(m *wire.Message) {
	p := wire.AppendAck(nil, m.MessageType, m.MessageID, m.SequenceNumber)
	a := wire.Message{MessageType: wire.Acknowledge, SchemaVersion: 1, CreatedDate: wire.Millis(time.Now()),
		Flags: wire.FlagsAck, MessageID: uuid.New()}
	a.SetPayload(p)
	b, _ := wire.Encode(nil, &a)
	_ = c.writeRaw(b)
}

func (c *rawClient) sendLocked(pt wire.PayloadType, p []byte) {
	m := wire.Message{MessageType: wire.InputStreamData, SchemaVersion: 1, CreatedDate: wire.Millis(time.Now()),
		SequenceNumber: c.seq, MessageID: uuid.New(), PayloadType: pt}
	m.SetPayload(p)
	b, _ := wire.Encode(nil, &m)
	c.unacked[c.seq] = b
	c.sentAt[c.seq] = time.Now()
	c.seq++
	_ = c.writeRaw(b)
}

// send sends p as Output messages of at most 1024 bytes.
func (c *rawClient) send(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		n := min(len(p), 1024)
		c.sendLocked(wire.PayloadOutput, append([]byte(nil), p[:n]...))
		p = p[n:]
	}
}

func (c *rawClient) sendFlag(f wire.Flag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendLocked(wire.PayloadFlag, wire.FlagPayload(f))
}

// resender retransmits every unacked message older than 150 ms.
func (c *rawClient) resender() {
	defer c.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		for seq, b := range c.unacked {
			if time.Since(c.sentAt[seq]) > 150*time.Millisecond {
				c.sentAt[seq] = time.Now()
				_ = c.writeRaw(b)
			}
		}
		c.mu.Unlock()
	}
}

func (c *rawClient) unackedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.unacked)
}

// waitHandshake waits for HandshakeComplete.
func (c *rawClient) waitHandshake(timeout time.Duration) *wire.Message {
	c.t.Helper()
	m := c.waitFrame(timeout, func(m *wire.Message) bool { return m.PayloadType == wire.PayloadHandshakeComplete })
	if m == nil {
		c.t.Fatalf("no HandshakeComplete within %v", timeout)
	}
	return m
}

// waitFrame returns the first received frame matching f, or nil on timeout.
func (c *rawClient) waitFrame(timeout time.Duration, f func(*wire.Message) bool) *wire.Message {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case m := <-c.frames:
			if f(m) {
				return m
			}
		case <-tm.C:
			return nil
		}
	}
}

// read collects n bytes of in-order Output. It fails when no byte arrived
// for idle (a hang or a loss nobody repairs), not on a deadline for the
// whole read, which a loaded host could miss while making progress.
func (c *rawClient) read(n int, idle time.Duration) ([]byte, error) {
	var out []byte
	tm := time.NewTimer(idle)
	defer tm.Stop()
	for len(out) < n {
		select {
		case p := <-c.data:
			out = append(out, p...)
			tm.Reset(idle)
		case <-tm.C:
			return out, fmt.Errorf("read %d of %d bytes: none arrived for %v", len(out), n, idle)
		}
	}
	return out, nil
}

func (c *rawClient) waitClosed(timeout time.Duration) (*wire.ChannelClosedPayload, error) {
	select {
	case p := <-c.closed:
		return p, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("no channel_closed within %v", timeout)
	}
}

// startSession calls StartSession with the real SDK client.
func startSession(t testing.TB, srv *ssmtest.Server, target string) (*ssmsdk.Client, *ssmsdk.StartSessionOutput) {
	t.Helper()
	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang bound
	defer cancel()
	out, err := api.StartSession(ctx, &ssmsdk.StartSessionInput{
		Target:       aws.String(target),
		DocumentName: aws.String("AWS-StartSSHSession"),
		Parameters:   map[string][]string{"portNumber": {"22"}},
	})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	return api, out
}
