package aliyun_test

import (
	"context"
	"errors"
	"testing"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/internal/testenv"
)

// recordingAPI is the SDK's ECS client (to the emulator) that keeps the
// StartTerminalSession requests.
type recordingAPI struct {
	*ecs.Client
	starts []*ecs.StartTerminalSessionRequest
}

func (r *recordingAPI) StartTerminalSessionWithContext(ctx context.Context, req *ecs.StartTerminalSessionRequest, rt *dara.RuntimeOptions) (*ecs.StartTerminalSessionResponse, error) {
	r.starts = append(r.starts, req)
	return r.Client.StartTerminalSessionWithContext(ctx, req, rt)
}

// TestStartTerminalSessionCarriesEveryParameter: RegionId, InstanceId,
// PortNumber, TargetServer and ConnectionType reach StartTerminalSession
// as configured (the emulator accepts them, signed), and a ConnectionType
// the API does not know is refused before any call.
func TestStartTerminalSessionCarriesEveryParameter(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	cfg := config(srv, echo)
	client, closeIdle, err := aliyun.NewECSClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeIdle()
	api := &recordingAPI{Client: client}
	cfg.API = api
	cfg.TargetServer = "127.0.0.1"
	cfg.ConnectionType = "Intranet"
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(api.starts) != 1 {
		t.Fatalf("%d StartTerminalSession calls", len(api.starts))
	}
	r := api.starts[0]
	if dara.StringValue(r.RegionId) != cfg.Region || len(r.InstanceId) != 1 || dara.StringValue(r.InstanceId[0]) != instance ||
		int(dara.Int32Value(r.PortNumber)) != cfg.PortNumber || dara.StringValue(r.TargetServer) != "127.0.0.1" || dara.StringValue(r.ConnectionType) != "Intranet" {
		t.Fatalf("request %v", r)
	}
	cfg.ConnectionType = "Public"
	if _, err := aliyun.Dial(context.Background(), cfg); !errors.Is(err, aliyun.ErrInvalidConfig) {
		t.Fatalf("ConnectionType Public: %v", err)
	}
	if len(api.starts) != 1 {
		t.Fatal("an invalid ConnectionType reached the API")
	}
	waitNoSessions(t, srv)
}
