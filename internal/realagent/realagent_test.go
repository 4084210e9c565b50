package realagent_test

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/internal/realagent"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRealAgentAttachesAndLeavesNothingBehind starts the real agent against the
// emulator's gateway mode, waits for its control channel, stops it and
// checks that no process, mount or host file of it is left.
func TestRealAgentAttachesAndLeavesNothingBehind(t *testing.T) {
	realagent.Require(t)
	// Places the agent writes to when it is installed normally.
	hostPaths := []string{"/var/lib/amazon", "/var/log/amazon", "/etc/amazon", "/usr/bin/ssm-agent-worker", "/usr/bin/ssm-session-worker"}
	existed := make(map[string]bool)
	for _, p := range hostPaths {
		_, err := os.Stat(p)
		existed[p] = err == nil
	}
	srv, err := ssmtest.NewServer(ssmtest.Config{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a := realagent.Start(t, srv)
	t.Logf("real agent %s attached (pid %d)", a.Version, a.PID())
	if a.Version != "3.3.0.0" {
		t.Errorf("agent announced %q, want 3.3.0.0 (the build in ../shared/peers/aws)", a.Version)
	}
	if ids := srv.Agents(); len(ids) != 1 || ids[0] != realagent.InstanceID {
		t.Fatalf("emulator sees agents %v", ids)
	}
	if n := len(a.Processes()); n < 2 {
		t.Fatalf("%d processes in the agent's namespace, want the agent and its worker", n)
	}
	a.Stop()
	if p := a.Processes(); len(p) != 0 {
		t.Fatalf("processes left: %v", p)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), "/var/lib/amazon") || strings.Contains(string(mi), "/var/log/amazon") {
		t.Fatalf("agent mounts visible on the host:\n%s", mi)
	}
	for _, p := range hostPaths {
		if _, err := os.Stat(p); err == nil && !existed[p] {
			t.Errorf("%s was created on the host", p)
		}
	}
}
