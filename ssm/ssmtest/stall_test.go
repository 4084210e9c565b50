package ssmtest_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// TestStallWebsocketIsABlackHoleUntilResume guards StallWebsocket's
// contract: nothing crosses a stalled websocket (frames and PINGs from the
// client vanish, output is lost), the service notices nothing (no pause,
// session open), and a ResumeSession + redial replaces it and works.
func TestStallWebsocketIsABlackHoleUntilResume(t *testing.T) {
	srv, api, out, c := echoSession(t, ssmtest.Config{})
	c.send([]byte("before"))
	if _, err := c.read(6, 5*time.Second); err != nil {
		t.Fatalf("echo before the stall: %v", err)
	}
	if n := srv.StallWebsocket(*out.SessionId); n != 1 {
		t.Fatalf("StallWebsocket = %d, want 1", n)
	}
	if n := srv.StallWebsocket(*out.SessionId); n != 0 {
		t.Fatalf("second StallWebsocket = %d, want 0 (already stalled)", n)
	}
	c.send([]byte("lost"))
	if b, err := c.read(4, 500*time.Millisecond); err == nil {
		t.Fatalf("echo %q crossed a stalled websocket", b)
	}
	st := srv.Stats()
	if st.FramesStalled == 0 || st.WebsocketsStalled != 1 || st.Pauses != 0 || st.SessionsOpen != 1 {
		t.Fatalf("stats after the stall: FramesStalled %d, WebsocketsStalled %d, Pauses %d, SessionsOpen %d; want >0, 1, 0, 1",
			st.FramesStalled, st.WebsocketsStalled, st.Pauses, st.SessionsOpen)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := api.ResumeSession(ctx, &ssmsdk.ResumeSessionInput{SessionId: out.SessionId})
	if err != nil || aws.ToString(res.TokenValue) == "" {
		t.Fatalf("ResumeSession: %v (token present: %v)", err, res != nil && res.TokenValue != nil)
	}
	if err := c.connect(*res.TokenValue); err != nil {
		t.Fatalf("redial: %v", err)
	}
	// The client's unacknowledged "lost" is resent by its retransmission.
	if b, err := c.read(4, 10*time.Second); err != nil || string(b) != "lost" {
		t.Fatalf("echo after the resume = %q, %v; want \"lost\"", b, err)
	}
}

// TestStalledWebsocketDoesNotAnswerPings guards the liveness side of
// StallWebsocket: the gateway answers PINGs until the stall and not after.
func TestStalledWebsocketDoesNotAnswerPings(t *testing.T) {
	srv, _, out, c := echoSession(t, ssmtest.Config{})
	ws, pong := pingWebsocket(t, c)
	ping := func(data string) bool {
		if err := ws.WriteControl(websocket.PingMessage, []byte(data), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-pong:
			return true
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}
	if !ping("before") {
		t.Fatal("no pong before the stall")
	}
	waitFor(t, 5*time.Second, "second websocket attached", func() bool { return srv.StallWebsocket(*out.SessionId) == 1 })
	if ping("after") {
		t.Fatal("a stalled websocket answered a PING")
	}
}

// TestExtraHandshakeActionsFollowSessionType guards the order of requested
// actions (SessionType first, as the real agent builds them), that the
// parameters reach the client unchanged, and that NewServer refuses
// parameters that are not JSON. (A client answering an action other than
// Success is covered by package ssm's TestUnsupportedHandshakeActionFailsDial.)
func TestExtraHandshakeActionsFollowSessionType(t *testing.T) {
	kms := ssmtest.HandshakeAction{ActionType: "KMSEncryption", ActionParameters: json.RawMessage(`{"KMSKeyId":"alias/ssm"}`)}
	if _, err := ssmtest.NewServer(ssmtest.Config{ExtraHandshakeActions: []ssmtest.HandshakeAction{{ActionType: "X", ActionParameters: json.RawMessage(`{`)}}}); err == nil {
		t.Fatal("NewServer accepted ActionParameters that are not JSON")
	}
	target := startTCP(t, echo)
	srv := newServer(t, ssmtest.Config{Targets: map[string]string{instance: target.ln.Addr().String()}, ExtraHandshakeActions: []ssmtest.HandshakeAction{kms}})
	_, out := startSession(t, srv, instance)
	c := dialRaw(t, srv, *out.StreamUrl, *out.TokenValue)
	// The raw client answers SessionType only; the agent, which iterates the
	// answers it gets (reference §7.3), completes.
	c.waitHandshake(5 * time.Second)
	c.mu.Lock()
	req := c.hsReq
	c.mu.Unlock()
	if req == nil || len(req.RequestedClientActions) != 2 || req.RequestedClientActions[0].ActionType != "SessionType" || req.RequestedClientActions[1].ActionType != "KMSEncryption" || string(req.RequestedClientActions[1].ActionParameters) != `{"KMSKeyId":"alias/ssm"}` {
		t.Fatalf("HandshakeRequest = %+v; want SessionType then KMSEncryption", req)
	}
}
