package instanceconnect_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const id = "i-0123456789abcdef0"

func TestNewRejectsBadConfigWithoutNetwork(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{id: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		cfg  instanceconnect.Config
		want error
	}{
		{instanceconnect.Config{AWS: srv.AWSConfig(), InstanceID: "mi-0123456789abcdef0", OSUser: "ec2-user"}, instanceconnect.ErrNotEC2},
		{instanceconnect.Config{AWS: srv.AWSConfig(), OSUser: "ec2-user"}, instanceconnect.ErrInvalidConfig},
		{instanceconnect.Config{AWS: srv.AWSConfig(), InstanceID: id}, instanceconnect.ErrInvalidConfig},
		{instanceconnect.Config{AWS: srv.AWSConfig(), InstanceID: id, OSUser: "u", Reuse: instanceconnect.KeyValidity}, instanceconnect.ErrInvalidConfig},
		{instanceconnect.Config{InstanceID: id, OSUser: "u"}, instanceconnect.ErrInvalidConfig},
	} {
		if _, err := instanceconnect.New(tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.cfg.InstanceID, err, tc.want)
		}
	}
	if n := srv.Stats().APIRequests; n != 0 {
		t.Fatalf("%d API requests", n)
	}
}

// TestConcurrentPushesPushOnce: sessions opening together share one push,
// and the key the emulator received is the key's public half.
func TestConcurrentPushesPushOnce(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{id: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	k, err := instanceconnect.New(instanceconnect.Config{AWS: srv.AWSConfig(), InstanceID: id, OSUser: "ec2-user"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := k.Push(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if k.Pushes() != 1 || srv.Stats().KeysPushed != 1 {
		t.Fatalf("pushes %d, emulator %d", k.Pushes(), srv.Stats().KeysPushed)
	}
	if !strings.HasPrefix(k.Fingerprint(), "SHA256:") || k.Signer().PublicKey().Type() != "ssh-ed25519" {
		t.Fatal(k.Fingerprint())
	}
}

func TestUnknownInstanceIsTyped(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	k, err := instanceconnect.New(instanceconnect.Config{AWS: srv.AWSConfig(), InstanceID: id, OSUser: "ec2-user"})
	if err != nil {
		t.Fatal(err)
	}
	err = k.Push(context.Background())
	var e *instanceconnect.Error
	if !errors.Is(err, instanceconnect.ErrInstanceNotFound) || !errors.As(err, &e) || e.InstanceID != id {
		t.Fatalf("got %v", err)
	}
}
