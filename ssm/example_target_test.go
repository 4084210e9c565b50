package ssm_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// Pick the bastion by tag: the one instance tagged Name=etl-bastion whose
// agent is online. An offline agent is a *ssm.TargetError naming it.
func ExampleResolveTarget() {
	srv, err := ssmtest.NewServer(ssmtest.Config{Instances: map[string]ssmtest.Instance{
		"i-0123456789abcdef0": {Tags: map[string]string{"Name": "etl-bastion"}},
		"i-0fedcba9876543210": {Tags: map[string]string{"Name": "old-bastion"}, PingStatus: ssmtest.PingConnectionLost},
	}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	inst, err := ssm.ResolveTarget(ctx, ssm.Config{AWS: srv.AWSConfig(), Target: "tag:Name=etl-bastion"})
	fmt.Println(inst.ID, inst.PingStatus, err)
	_, err = ssm.ResolveTarget(ctx, ssm.Config{AWS: srv.AWSConfig(), Target: "tag:Name=old-bastion"})
	fmt.Println(errors.Is(err, ssm.ErrTargetOffline))
	// Output:
	// i-0123456789abcdef0 Online <nil>
	// true
}
