package aliyuntest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/aliyun/internal/axt"
	"github.com/jumpless/jumpless/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const instance = "i-bp1emulated0000001"

func newServer(t *testing.T, cfg aliyuntest.Config) *aliyuntest.Server {
	t.Helper()
	if cfg.Instances == nil {
		cfg.Instances = map[string]string{instance: "127.0.0.1"}
	}
	srv, err := aliyuntest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func clientConfig(srv *aliyuntest.Server, addr string) aliyun.Config {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return aliyun.Config{Region: srv.Region(), InstanceID: instance, PortNumber: n,
		Endpoint: srv.Endpoint(), Credential: srv.Credential(), HoldFirstWrite: -1}
}

// rawChannel starts a session through the client and opens a raw
// websocket on its URL, for tests of the agent's behaviour frame by frame.
type rawChannel struct {
	ws  *websocket.Conn
	seq uint64
}

func openRaw(t *testing.T, srv *aliyuntest.Server, addr string) *rawChannel {
	t.Helper()
	// StartTerminalSession through the SDK, then a websocket of our own.
	s, err := aliyun.Start(context.Background(), clientConfig(srv, addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	u := s.WebSocketURL()
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &rawChannel{ws: ws}
}

func (r *rawChannel) send(t *testing.T, typ axt.Type, p []byte) {
	t.Helper()
	m := axt.Message{Type: typ, Created: uint64(time.Now().UnixMilli()), Seq: r.seq, Payload: p}
	r.seq++
	b, _ := m.Append(nil)
	if err := r.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatal(err)
	}
}

func (r *rawChannel) recv(t *testing.T, d time.Duration) (axt.Message, error) {
	r.ws.SetReadDeadline(time.Now().Add(d))
	_, b, err := r.ws.ReadMessage()
	if err != nil {
		return axt.Message{}, err
	}
	var m axt.Message
	if err := axt.Decode(b, &m); err != nil {
		t.Fatal(err)
	}
	return m, nil
}

func TestTargetCloseIsSilentAndTheNextInputRedials(t *testing.T) {
	srv := newServer(t, aliyuntest.Config{DialDelay: -1, FlowLimit: aliyuntest.UnpacedRate})
	var accepted atomic.Int64
	got := make(chan string, 4)
	addr := testenv.TCPServer(t, func(c net.Conn) {
		n := accepted.Add(1)
		fmt.Fprintf(c, "conn%d", n)
		b := make([]byte, 64)
		k, _ := c.Read(b)
		got <- string(b[:k])
		c.Close()
	})
	r := openRaw(t, srv, addr)
	m, err := r.recv(t, 5*time.Second)
	if err != nil || m.Type != axt.Status { // the flow limit comes first
		t.Fatalf("first message %v %v", m.Type, err)
	}
	if m, err = r.recv(t, 5*time.Second); err != nil || string(m.Payload) != "conn1" {
		t.Fatalf("%q %v", m.Payload, err)
	}
	r.send(t, axt.Input, []byte("one"))
	if s := <-got; s != "one" {
		t.Fatal(s)
	}
	// The target closed: nothing reaches the client.
	if m, err := r.recv(t, 300*time.Millisecond); err == nil {
		t.Fatalf("the client was told something after the target closed: %v %q", m.Type, m.Payload)
	}
	r.send(t, axt.Input, []byte("two"))
	select {
	case s := <-got:
		if s != "two" {
			t.Fatalf("re-dialled target got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the next Input did not re-dial the target")
	}
	if st := srv.Stats(); st.TargetDials != 2 {
		t.Fatalf("%d target dials; want 2", st.TargetDials)
	}
}

func TestCloseMessageIsIgnoredAndEarlyInputDropped(t *testing.T) {
	srv := newServer(t, aliyuntest.Config{DialDelay: 300 * time.Millisecond, FlowLimit: aliyuntest.UnpacedRate})
	got := make(chan string, 4)
	addr := testenv.TCPServer(t, func(c net.Conn) {
		b := make([]byte, 64)
		for {
			k, err := c.Read(b)
			if err != nil {
				return
			}
			got <- string(b[:k])
		}
	})
	r := openRaw(t, srv, addr)
	r.send(t, axt.Input, []byte("early")) // before the agent's dial: lost
	time.Sleep(1500 * time.Millisecond)
	r.send(t, axt.Close, []byte("1")) // v578 ignores it
	r.send(t, axt.Input, []byte("late"))
	select {
	case s := <-got:
		if s != "late" {
			t.Fatalf("target got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Input after Close(3) did not reach the target")
	}
	st := srv.Stats()
	if st.InputsDropped != 1 || st.ClosesReceived != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDefaultPacingSendsChunksAndSleeps checks the agent's default
// behaviour (not a speed): Outputs of at most 2048 bytes, never closer
// than the 83 ms pacing interval.
func TestDefaultPacingSendsChunksAndSleeps(t *testing.T) {
	srv := newServer(t, aliyuntest.Config{DialDelay: -1})
	addr := testenv.TCPServer(t, func(c net.Conn) {
		c.Write(make([]byte, 5*2048))
		io.Copy(io.Discard, c)
	})
	r := openRaw(t, srv, addr)
	var last uint64
	total := 0
	for total < 5*2048 {
		m, err := r.recv(t, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != axt.Output {
			t.Fatalf("unexpected %v without a flow limit", m.Type)
		}
		if len(m.Payload) > 2048 {
			t.Fatalf("Output of %d bytes", len(m.Payload))
		}
		// Created is the emulator's send time in ms (client-side receive
		// times bunch up under load).
		if last != 0 && m.Created-last < 82 {
			t.Fatalf("Outputs sent %d ms apart; the agent sleeps 83 ms after each", m.Created-last)
		}
		last = m.Created
		total += len(m.Payload)
	}
}

func TestSessionCountersAndEnd(t *testing.T) {
	srv := newServer(t, aliyuntest.Config{DialDelay: -1})
	echo := testenv.EchoServer(t)
	c, err := aliyun.Dial(context.Background(), clientConfig(srv, echo))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second) // the server registers the websocket just after the handshake
	for st := srv.Stats(); st.SessionsOpen != 1 || st.ConnsOpen != 1; st = srv.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("%+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := srv.WaitNoSessions(ctx); n != 0 {
		t.Fatalf("%d open", n)
	}
}

// TestOldStyleSignatureIsVerified signs a request the way older SDKs and
// ali-instance-cli do (HMAC-SHA1 over the sorted query) and checks the
// emulator accepts it, refuses it tampered, and answers in Alibaba's
// error shape.
func TestOldStyleSignatureIsVerified(t *testing.T) {
	srv := newServer(t, aliyuntest.Config{})
	q := url.Values{
		"Action": {"DescribeTerminalSessions"}, "Version": {"2014-05-26"}, "Format": {"JSON"},
		"RegionId": {srv.Region()}, "AccessKeyId": {srv.AccessKeyID()}, "SignatureMethod": {"HMAC-SHA1"},
		"SignatureVersion": {"1.0"}, "SignatureNonce": {"abc123"}, "Timestamp": {time.Now().UTC().Format("2006-01-02T15:04:05Z")},
	}
	enc := func(s string) string {
		return strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(url.QueryEscape(s))
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, enc(k)+"="+enc(q.Get(k)))
	}
	mac := hmac.New(sha1.New, []byte(srv.AccessKeySecret()+"&"))
	mac.Write([]byte("POST&%2F&" + enc(strings.Join(pairs, "&"))))
	q.Set("Signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))

	post := func(q url.Values) (int, map[string]any) {
		resp, err := http.Post(srv.Endpoint()+"/?"+q.Encode(), "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := post(q); code != 200 || m["RequestId"] == "" {
		t.Fatalf("signed request: %d %v", code, m)
	}
	q.Set("RegionId", "cn-beijing")
	code, m := post(q)
	if code != 400 || m["Code"] != "SignatureDoesNotMatch" || m["RequestId"] == nil || m["HostId"] == nil || m["Message"] == nil || m["Recommend"] == nil {
		t.Fatalf("tampered request: %d %v", code, m)
	}
	if srv.Stats().SignatureFailures != 1 {
		t.Fatal("failure not counted")
	}
}

// TestCommandsAreNoKinderThanCloudAssistant guards the emulated commands:
// an unknown command id is refused in Alibaba's error shape, the key
// command fails on an instance where the plug-in was not installed first,
// RunCommand runs no script but the plug-in install, and an invocation is
// Running before it finishes.
func TestCommandsAreNoKinderThanCloudAssistant(t *testing.T) {
	dir := t.TempDir()
	ak := dir + "/authorized_keys"
	if err := os.WriteFile(ak, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, aliyuntest.Config{AuthorizedKeys: ak, CommandDelay: 200 * time.Millisecond})
	c, closeIdle, err := aliyun.NewECSClient(clientConfig(srv, "127.0.0.1:22"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeIdle()
	ctx := context.Background()
	rt := &dara.RuntimeOptions{}
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	invoke := func(id string) (*ecs.InvokeCommandResponse, error) {
		return c.InvokeCommandWithContext(ctx, &ecs.InvokeCommandRequest{RegionId: dara.String(srv.Region()),
			InstanceId: []*string{dara.String(instance)}, CommandId: dara.String(id),
			Parameters: map[string]any{"username": "root", "sshPublicKey": key}}, rt)
	}
	result := func(id *string) (status, code string) {
		r, err := c.DescribeInvocationResultsWithContext(ctx, &ecs.DescribeInvocationResultsRequest{RegionId: dara.String(srv.Region()), InvokeId: id}, rt)
		if err != nil {
			t.Fatal(err)
		}
		x := r.Body.Invocation.InvocationResults.InvocationResult[0]
		return dara.StringValue(x.InvocationStatus), dara.StringValue(x.ErrorCode)
	}
	finished := func(id *string) (status, code string) {
		if st, _ := result(id); st != "Running" {
			t.Fatalf("invocation %s just started is %s, not Running", *id, st)
		}
		time.Sleep(400 * time.Millisecond)
		return result(id)
	}

	code := func(err error) string {
		var te *tea.SDKError
		var de *dara.SDKError
		switch {
		case errors.As(err, &te):
			return dara.StringValue(te.Code)
		case errors.As(err, &de):
			return dara.StringValue(de.Code)
		}
		return ""
	}
	if _, err := invoke("ACS-ECS-SendSshPublicKey-linux.sh"); code(err) != "InvalidCommandId.NotFound" {
		t.Fatalf("command id without cmd-: %v", err)
	}
	r, err := invoke(aliyuntest.SendPublicKeyCommand)
	if err != nil {
		t.Fatal(err)
	}
	if st, code := finished(r.Body.InvokeId); st != "Failed" || code != "ExitCodeNonzero" {
		t.Fatalf("key command without the plug-in: %s %s", st, code)
	}
	run := func(script string) *string {
		r, err := c.RunCommandWithContext(ctx, &ecs.RunCommandRequest{RegionId: dara.String(srv.Region()),
			InstanceId: []*string{dara.String(instance)}, Type: dara.String("RunShellScript"), ContentEncoding: dara.String("Base64"),
			CommandContent: dara.String(base64.StdEncoding.EncodeToString([]byte(script))), Timeout: dara.Int64(5)}, rt)
		if err != nil {
			t.Fatal(err)
		}
		return r.Body.InvokeId
	}
	if st, code := finished(run("rm -rf /")); st != "Failed" || code != "ExitCodeNonzero" {
		t.Fatalf("another script: %s %s", st, code)
	}
	if st, _ := finished(run(aliyuntest.InstallPluginCommand)); st != "Success" {
		t.Fatalf("plug-in install: %s", st)
	}
	r, err = invoke(aliyuntest.SendPublicKeyCommand)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := finished(r.Body.InvokeId); st != "Success" {
		t.Fatalf("key command after the plug-in: %s", st)
	}
	if b, _ := os.ReadFile(ak); !strings.Contains(string(b), key) {
		t.Fatal("the key was not installed")
	}
	if _, err := c.DescribeInvocationResultsWithContext(ctx, &ecs.DescribeInvocationResultsRequest{RegionId: dara.String(srv.Region()), InvokeId: dara.String("t-nope")}, rt); code(err) != "InvalidInvokeId.NotFound" {
		t.Fatalf("unknown InvokeId: %v", err)
	}
}
