package ssmtest_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/jumpless/jumpless/internal/realagent"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// pluginPath returns AWS's session-manager-plugin (built from
// aws/session-manager-plugin): the binary named by JUMPLESS_SSM_PLUGIN, else
// the build in ../shared/peers/aws unpacked into a temporary folder. The
// interop tests are skipped without either.
func pluginPath(t *testing.T) string {
	p := os.Getenv("JUMPLESS_SSM_PLUGIN")
	if p == "" {
		return realagent.Plugin(t)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("JUMPLESS_SSM_PLUGIN: %v", err)
	}
	return p
}

// TestRealPluginSSHSessionEcho runs AWS's session-manager-plugin in
// AWS-StartSSHSession (stdin/stdout) mode through the emulator to an echo
// target, over wss.
func TestRealPluginSSHSessionEcho(t *testing.T) {
	bin := pluginPath(t)
	target := startTCP(t, echo)
	srv := newServer(t, ssmtest.Config{TLS: true, Strict: true, Targets: map[string]string{instance: target.ln.Addr().String()}})
	api, out := startSession(t, srv, instance)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := realagent.PluginCommand(t, ctx, bin, srv, out, map[string]any{"Target": instance, "DocumentName": "AWS-StartSSHSession", "Parameters": map[string][]string{"portNumber": {"22"}}})
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The plugin's first stdin read happens after HandshakeComplete; data
	// written earlier waits in the pipe.
	msg := randBytes(256 << 10)
	for i := range msg {
		if msg[i] == '\n' {
			msg[i] = 'x' // the plugin rewrites a lone "\n" payload to "\r" (reference §15.8)
		}
	}
	// Like the real agent, the emulator acks and discards data that
	// arrives before its handshake-complete flag flips (reference §7.5); the
	// real plugin sends stdin at once, so feed stdin only after the flag.
	waitFor(t, 10*time.Second, "agent handshake flag", func() bool { return srv.Stats().Handshakes >= 1 })
	go func() { _, _ = stdin.Write(msg) }()
	// The plugin prints "\nStarting session with SessionId: <id>\n" to
	// stdout first (ssh skips lines before the server's version string).
	banner := "\nStarting session with SessionId: " + *out.SessionId + "\n"
	got := make([]byte, len(banner)+len(msg))
	_, err := io.ReadFull(stdout, got)
	if string(got[:len(banner)]) != banner {
		t.Fatalf("plugin stdout starts %q", got[:len(banner)])
	}
	got = got[len(banner):]
	if err != nil || !bytes.Equal(got, msg) {
		i := 0
		for i < len(got) && got[i] == msg[i] {
			i++
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("echo through the real plugin: %v; first difference at %d: got %q want %q (stderr %s)", err, i, got[i:min(i+80, len(got))], msg[i:min(i+80, len(msg))], stderr.String())
	}
	stdin.Close() // the plugin exits on stdin EOF without telling anyone
	_ = cmd.Wait()
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("the real plugin violated strict mode: %v", v)
	}
	if _, err := api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: out.SessionId}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "session end", func() bool { return srv.Stats().SessionsOpen == 0 })
}

// TestRealPluginPortForwardingMux runs the plugin with
// AWS-StartPortForwardingSession: it picks smux (agent > 3.0.196.0) and so
// does the emulated agent (client 1.2.650.0 ≥ 1.1.70); two local TCP
// connections are echoed through smux streams.
func TestRealPluginPortForwardingMux(t *testing.T) {
	bin := pluginPath(t)
	target := startTCP(t, echo)
	_, port, _ := net.SplitHostPort(target.ln.Addr().String())
	var logBuf testenv.SyncBuffer
	srv := newServer(t, ssmtest.Config{Strict: true, Targets: map[string]string{instance: "127.0.0.1"},
		Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	params := map[string][]string{"portNumber": {port}, "localPortNumber": {"0"}}
	out, err := api.StartSession(context.Background(), &ssmsdk.StartSessionInput{
		Target: aws.String(instance), DocumentName: aws.String(ssmtest.DocStartPortForwardingSession), Parameters: params,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := realagent.PluginCommand(t, ctx, bin, srv, out, map[string]any{"Target": instance, "DocumentName": ssmtest.DocStartPortForwardingSession, "Parameters": params})
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	re := regexp.MustCompile(`Port (\d+) opened`)
	sc := bufio.NewScanner(stdout)
	local := ""
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			local = m[1]
			break
		}
	}
	if local == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("plugin did not open a local port (stderr %s)", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	waitFor(t, 10*time.Second, "agent handshake flag", func() bool { return srv.Stats().Handshakes >= 1 })
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", local))
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(strings.Repeat("conn-", 2000) + string(rune('a'+i)))
		_, _ = c.Write(msg)
		got := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("conn %d: %v; emulator %+v\nlog:\n%s", i, err, srv.Stats(), logBuf.String())
		}
		c.Close()
	}
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("the real plugin violated strict mode: %v", v)
	}
}

// TestRealPluginResumesAfterKillWebsocket kills the plugin's websocket
// mid-session: the plugin calls ResumeSession (aws-sdk-go v1, SigV4) and
// redials the StreamUrl with the new token; the stream continues.
func TestRealPluginResumesAfterKillWebsocket(t *testing.T) {
	bin := pluginPath(t)
	target := startTCP(t, echo)
	srv := newServer(t, ssmtest.Config{Strict: true, Targets: map[string]string{instance: target.ln.Addr().String()}})
	api, out := startSession(t, srv, instance)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := realagent.PluginCommand(t, ctx, bin, srv, out, map[string]any{"Target": instance, "DocumentName": "AWS-StartSSHSession", "Parameters": map[string][]string{"portNumber": {"22"}}})
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	banner := "\nStarting session with SessionId: " + *out.SessionId + "\n"
	if _, err := io.ReadFull(stdout, make([]byte, len(banner))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "agent handshake flag", func() bool { return srv.Stats().Handshakes >= 1 })
	roundTrip := func(msg string) {
		t.Helper()
		if _, err := stdin.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(stdout, got); err != nil || string(got) != msg {
			t.Fatalf("got %q, %v; emulator %+v", got, err, srv.Stats())
		}
	}
	roundTrip("before the kill;")
	if srv.KillWebsocket(*out.SessionId) != 1 {
		t.Fatal("no websocket to kill")
	}
	waitFor(t, 20*time.Second, "plugin resume", func() bool {
		st := srv.Stats()
		return st.Resumes >= 1 && st.WebsocketsAccepted >= 2
	})
	roundTrip("after the resume.")
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("strict violations: %v", v)
	}
	if _, err := api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: out.SessionId}); err != nil {
		t.Fatal(err)
	}
}

// TestRealPluginRealisticDownloadRate reports what AWS's plugin receives
// from the Realistic agent (SSH mode, stdout) — a figure for BENCHMARKS.md,
// asserted only loosely.
func TestRealPluginRealisticDownloadRate(t *testing.T) {
	bin := pluginPath(t)
	if testing.Short() {
		t.Skip("paced transfer takes seconds")
	}
	const size = 4 << 20
	payload := randBytes(size)
	target := startTCP(t, func(c net.Conn) { _, _ = c.Write(payload) })
	srv := newServer(t, ssmtest.Config{Pacing: ssmtest.Realistic, Targets: map[string]string{instance: target.ln.Addr().String()}})
	api, out := startSession(t, srv, instance)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := realagent.PluginCommand(t, ctx, bin, srv, out, map[string]any{"Target": instance, "DocumentName": "AWS-StartSSHSession", "Parameters": map[string][]string{"portNumber": {"22"}}})
	stdin, _ := cmd.StdinPipe() // kept open: the plugin exits on stdin EOF
	defer stdin.Close()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	banner := "\nStarting session with SessionId: " + *out.SessionId + "\n"
	if _, err := io.ReadFull(stdout, make([]byte, len(banner))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := make([]byte, size)
	if _, err := io.ReadFull(stdout, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("download through the plugin: %v", err)
	}
	rate := float64(size) / time.Since(start).Seconds() / (1 << 20)
	t.Logf("real plugin, Realistic agent: %.3f MiB/s (%d bytes)", rate, size)
	if rate > 0.8 {
		t.Fatalf("faster than the calibrated agent: %.3f MiB/s", rate)
	}
	_, _ = api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: out.SessionId})
}
