package realagent_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
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

// testRealPlugin runs AWS's plugin against AWS's agent through the
// emulator's gateway, in SSH (stdin/stdout) and port-forwarding (smux)
// modes, to an echo target: both real peers, only the service emulated.
func testRealPlugin(t *testing.T, r *rig) {
	bin := realagent.Plugin(t)
	echo := testenv.EchoServer(t)
	r.agent.Forward(echo)
	_, port, _ := net.SplitHostPort(echo)
	api := ssmsdk.NewFromConfig(r.srv.AWSConfig())

	t.Run("SSH", func(t *testing.T) {
		params := map[string][]string{"portNumber": {port}}
		out, err := api.StartSession(context.Background(), &ssmsdk.StartSessionInput{
			Target: aws.String(realagent.InstanceID), DocumentName: aws.String(ssmtest.DocStartSSHSession), Parameters: params,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := realagent.PluginCommand(t, ctx, bin, r.srv, out, map[string]any{"Target": realagent.InstanceID, "DocumentName": ssmtest.DocStartSSHSession, "Parameters": params})
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		banner := "\nStarting session with SessionId: " + *out.SessionId + "\n"
		if _, err := io.ReadFull(stdout, make([]byte, len(banner))); err != nil {
			t.Fatalf("banner: %v (stderr %s)", err, stderr.String())
		}
		msg := []byte(strings.Repeat("through both real peers; ", 4000))
		// Written at once: data the real agent is not ready for yet goes
		// unacknowledged and the plugin resends it.
		go func() { _, _ = stdin.Write(msg) }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(stdout, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo through the real plugin and the real agent: %v (stderr %s)", err, stderr.String())
		}
		stdin.Close() // the plugin exits on stdin EOF without telling anyone
		_ = cmd.Wait()
		before := r.srv.Stats().AgentTasksCompleted
		if _, err := api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: out.SessionId}); err != nil {
			t.Fatal(err)
		}
		waitCompleted(t, r, before)
		t.Logf("real plugin + real agent, SSH mode: %d bytes echoed", len(msg))
	})

	t.Run("PortForwardingMux", func(t *testing.T) {
		params := map[string][]string{"portNumber": {port}, "localPortNumber": {"0"}}
		out, err := api.StartSession(context.Background(), &ssmsdk.StartSessionInput{
			Target: aws.String(realagent.InstanceID), DocumentName: aws.String(ssmtest.DocStartPortForwardingSession), Parameters: params,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := realagent.PluginCommand(t, ctx, bin, r.srv, out, map[string]any{"Target": realagent.InstanceID, "DocumentName": ssmtest.DocStartPortForwardingSession, "Parameters": params})
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
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
			t.Fatalf("plugin did not open a local port (stderr %s)", stderr.String())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", local))
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte(strings.Repeat("smux stream ", 3000) + string(rune('a'+i)))
			go func() { _, _ = c.Write(msg) }()
			got := make([]byte, len(msg))
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				c.Close()
				t.Fatalf("connection %d through the real plugin's smux and the real agent: %v", i, err)
			}
			c.Close()
		}
		before := r.srv.Stats().AgentTasksCompleted
		_ = cmd.Process.Signal(os.Interrupt) // the plugin sends the TerminateSession flag and exits
		_ = cmd.Wait()
		waitCompleted(t, r, before)
		t.Logf("real plugin + real agent, port forwarding (smux): 2 connections echoed")
	})
}

// waitCompleted waits until the agent reported one more session complete.
func waitCompleted(t *testing.T, r *rig, before int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.srv.Stats().AgentTasksCompleted == before {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not report the session complete within 30 s; open %v", r.srv.SessionIDs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitNoSessions(t, 10*time.Second)
}
