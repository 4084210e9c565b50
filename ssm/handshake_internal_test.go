package ssm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Handshake requests as agents send them (reference §7.2 and the plugin's
// streaming_test.go fixture).
var handshakeSeeds = []string{
	`{"AgentVersion":"3.3.1611.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}`,
	`{"AgentVersion":"3.3.1611.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"host":"db.internal","portNumber":"5432","localPortNumber":"0","type":"LocalPortForwarding"}}}]}`,
	`{"AgentVersion":"10.0.0.1","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":{"linux":{"commands":"","runAsElevated":false}}}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"some-key-id"}}]}`,
	`{"AgentVersion":"3.3.1611.0","RequestedClientActions":[]}`,
	`{"AgentVersion":"3.3.1611.0","RequestedClientActions":null}`,
	`{}`,
	`[]`,
	`{"RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":"Port"}]}`,
}

// TestShellHandshakeIsRefusedForItsSessionType guards the answer to a shell
// session's HandshakeRequest, whose Properties are nested objects: the
// client must refuse it for its session type (Failed), not report
// unreadable parameters, and answer KMSEncryption Unsupported.
func TestShellHandshakeIsRefusedForItsSessionType(t *testing.T) {
	a, err := answerHandshake([]byte(handshakeSeeds[2]), DefaultClientVersion)
	if err != nil {
		t.Fatal(err)
	}
	got := a.resp.ProcessedClientActions
	if len(got) != 2 || got[0].ActionStatus != wire.ActionFailed || got[1].ActionStatus != wire.ActionUnsupported {
		t.Fatalf("ProcessedClientActions = %+v; want SessionType Failed, KMSEncryption Unsupported", got)
	}
	if !strings.Contains(got[0].Error, `"Standard_Stream" is not supported`) || a.sawPort {
		t.Errorf("SessionType answer %+v (sawPort %v); want it refused for Standard_Stream", got[0], a.sawPort)
	}
	p, err := answerHandshake([]byte(handshakeSeeds[1]), DefaultClientVersion)
	if err != nil || !p.sawPort || len(p.problems) != 0 || p.properties["host"] != "db.internal" {
		t.Errorf("port forwarding request: %+v, %v; want accepted with its properties", p, err)
	}
}

// FuzzAnswerHandshake checks the HandshakeRequest parser: it never panics,
// answers every requested action exactly once and in order with a valid
// status, succeeds only for SessionType Port, reports every non-success as
// a problem, and produces a response that encodes.
func FuzzAnswerHandshake(f *testing.F) {
	for _, s := range handshakeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		a, err := answerHandshake(p, DefaultClientVersion)
		var req wire.HandshakeRequest
		if uerr := json.Unmarshal(p, &req); (err == nil) != (uerr == nil) {
			t.Fatalf("answerHandshake error %v, json.Unmarshal error %v", err, uerr)
		}
		if err != nil {
			return
		}
		if a.resp.ClientVersion != DefaultClientVersion {
			t.Fatalf("ClientVersion %q", a.resp.ClientVersion)
		}
		if len(a.resp.ProcessedClientActions) != len(req.RequestedClientActions) {
			t.Fatalf("%d answers for %d actions", len(a.resp.ProcessedClientActions), len(req.RequestedClientActions))
		}
		failed, port := 0, false
		for i, pa := range a.resp.ProcessedClientActions {
			ra := req.RequestedClientActions[i]
			if pa.ActionType != ra.ActionType {
				t.Fatalf("answer %d is for %q, request for %q", i, pa.ActionType, ra.ActionType)
			}
			switch pa.ActionStatus {
			case wire.ActionSuccess:
				var st struct{ SessionType string }
				if ra.ActionType != "SessionType" || json.Unmarshal(ra.ActionParameters, &st) != nil || st.SessionType != wire.SessionTypePort || pa.Error != "" {
					t.Fatalf("action %d %q %s answered Success", i, ra.ActionType, ra.ActionParameters)
				}
				port = true
			case wire.ActionFailed, wire.ActionUnsupported:
				if pa.Error == "" {
					t.Fatalf("action %d answered %d without an error", i, pa.ActionStatus)
				}
				failed++
			default:
				t.Fatalf("action %d answered with status %d", i, pa.ActionStatus)
			}
		}
		if failed != len(a.problems) || (failed > 0) != (a.resp.Errors != nil) || port != a.sawPort {
			t.Fatalf("problems %q, Errors %q, sawPort %v; %d actions failed, port %v", a.problems, a.resp.Errors, a.sawPort, failed, port)
		}
		if _, err := json.Marshal(a.resp); err != nil {
			t.Fatalf("response does not encode: %v", err)
		}
	})
}
