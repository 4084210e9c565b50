package ssmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// Example_realAgent points AWS's real amazon-ssm-agent at the emulator in
// gateway mode: the emulator plays only the service (the SSM API and MGS),
// the agent dials in with the configuration and CA the server hands out,
// and StartSession for its instance id then runs through the real agent.
// internal/realagent does exactly this in the project's tests, with the
// agent in private namespaces.
func Example_realAgent() {
	const instance = "i-0123456789abcdef0"
	srv, err := ssmtest.NewServer(ssmtest.Config{TLS: true}) // the agent speaks only https/wss
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	dir, _ := os.MkdirTemp("", "agent")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "amazon-ssm-agent.json"), srv.AgentConfig(instance), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "ca.pem"), srv.CACertPEM(), 0o644)
	ak, sk := srv.Credentials() // the agent signs with these (its default credential chain)
	env := "AWS_ACCESS_KEY_ID=" + ak + "\nAWS_SECRET_ACCESS_KEY=" + sk + "\nAWS_EC2_METADATA_DISABLED=true\nSSL_CERT_FILE=/ca.pem\n"
	_ = os.WriteFile(filepath.Join(dir, "agent.env"), []byte(env), 0o600)
	// Now run the agent as root, e.g. in a container sharing the host's
	// network (the server listens on 127.0.0.1):
	//
	//	docker run --rm --network host \
	//	  -v $DIR/amazon-ssm-agent.json:/etc/amazon/ssm/amazon-ssm-agent.json:ro \
	//	  -v $DIR/ca.pem:/ca.pem:ro --env-file $DIR/agent.env \
	//	  <an image with amazon-ssm-agent>
	//
	// and wait for its control channel:
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond) // a minute for a real agent
	defer cancel()
	if _, err := srv.WaitAgent(ctx, instance); err != nil {
		fmt.Println("no agent attached yet:", errors.Is(err, context.DeadlineExceeded))
	}

	var cfg struct {
		Agent    struct{ ContainerMode bool }
		Identity struct{ CustomIdentities []struct{ InstanceID string } }
	}
	_ = json.Unmarshal(srv.AgentConfig(instance), &cfg)
	fmt.Println("container mode:", cfg.Agent.ContainerMode, "identity:", cfg.Identity.CustomIdentities[0].InstanceID)

	// Until the agent attaches, the service answers as AWS does for an
	// instance whose agent is not connected.
	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	_, err = api.StartSession(context.Background(), &ssmsdk.StartSessionInput{
		Target: aws.String(instance), DocumentName: aws.String(ssmtest.DocStartSSHSession),
	})
	var tnc *types.TargetNotConnected
	fmt.Println("StartSession before the agent attaches:", errors.As(err, &tnc))
	// Output:
	// no agent attached yet: true
	// container mode: true identity: i-0123456789abcdef0
	// StartSession before the agent attaches: true
}
