package ssmtest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

func fuzzSession() *session {
	s := &Server{cfg: Config{Strict: true, AgentVersion: DefaultAgentVersion, Region: DefaultRegion,
		AccessKeyID: "AKIDFUZZ", SecretAccessKey: "secret", ChunkSize: DefaultChunkSize}, log: slog.New(slog.DiscardHandler)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cancel()
	ss := &session{srv: s, id: "fuzz-0", props: map[string]string{"portNumber": "22"}, highestSeq: -1, connected: make(chan struct{})}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	ss.agent = newAgent(ss)
	return ss
}

func frame(mt string, seq int64, pt wire.PayloadType, p []byte) []byte {
	m := wire.Message{MessageType: mt, SchemaVersion: 1, CreatedDate: wire.Millis(time.Now()), SequenceNumber: seq,
		MessageID: uuid.New(), PayloadType: pt}
	m.SetPayload(p)
	b, _ := wire.Encode(nil, &m)
	return b
}

// FuzzClientFrame feeds arbitrary client frames to the strict checks and the
// agent's receive path: nothing may panic or block.
func FuzzClientFrame(f *testing.F) {
	f.Add(frame(wire.InputStreamData, 0, wire.PayloadHandshakeResponse, []byte(`{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1}]}`)))
	f.Add(frame(wire.InputStreamData, 1, wire.PayloadOutput, []byte("payload")))
	f.Add(frame(wire.InputStreamData, 2, wire.PayloadFlag, []byte{0, 0, 0, 2}))
	f.Add(frame(wire.Acknowledge, 0, wire.PayloadNone, wire.AppendAck(nil, wire.OutputStreamData, uuid.New(), 0)))
	f.Add([]byte{0, 0, 0, 0x74})
	f.Fuzz(func(t *testing.T, b []byte) {
		ss := fuzzSession()
		var m wire.Message
		err := wire.Decode(b, &m)
		ss.checkClientFrame(websocket.BinaryMessage, b, &m, err)
		a := ss.agent.(*agent)
		a.hsDone.Store(len(b)%2 == 0)
		a.handle(b)
		a.handle(b) // duplicate
	})
}

// FuzzSigV4Header feeds arbitrary Authorization/X-Amz-Date headers to the
// SigV4 verifier: it must refuse them without panicking.
func FuzzSigV4Header(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, Signature=00", "20260101T000000Z")
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDFUZZ/2026/us-east-1/ssm/aws4_request, SignedHeaders=Host, Signature=", "2026")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, auth, date string) {
		ss := fuzzSession()
		r := httptest.NewRequest("POST", "/", strings.NewReader("{}"))
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Amz-Date", date)
		if e := ss.srv.verifySigV4(r, []byte("{}"), "ssm"); e == nil {
			t.Fatalf("accepted %q %q", auth, date)
		}
	})
}
