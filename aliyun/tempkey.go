package aliyun

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"golang.org/x/crypto/ssh"
)

// SendPublicKeyCommand is Cloud Assistant's public command that installs a
// temporary SSH public key for 60 s (what ali-instance-cli's
// send_public_key runs).
const SendPublicKeyCommand = "ACS-ECS-SendSshPublicKey-linux.sh"

// TempKeyWindow is how long Alibaba accepts a temporary key after it
// was registered (documented).
const TempKeyWindow = 60 * time.Second

var (
	// ErrKeyCommandFailed: the instance ran the key command and it failed
	// (plug-in config_ecs_instance_connect missing, user unknown, …).
	ErrKeyCommandFailed = errors.New("aliyun: temporary key command failed")
	// ErrAgentTooOld: the Cloud Assistant agent cannot run the key command
	// (Linux agent ≥ 2.2.3.196 needed; Session Manager needs ≥ 2.2.3.256).
	ErrAgentTooOld = errors.New("aliyun: Cloud Assistant agent too old or not running")
	// ErrKeyWindowMissed: the 60 s window of a temporary key has passed.
	ErrKeyWindowMissed = errors.New("aliyun: temporary key window missed")
)

// CommandAPI is the part of the ECS OpenAPI SendPublicKey calls.
// *github.com/alibabacloud-go/ecs-20140526/v7/client.Client satisfies it.
type CommandAPI interface {
	InvokeCommandWithContext(ctx context.Context, req *ecs.InvokeCommandRequest, rt *dara.RuntimeOptions) (*ecs.InvokeCommandResponse, error)
	DescribeInvocationResultsWithContext(ctx context.Context, req *ecs.DescribeInvocationResultsRequest, rt *dara.RuntimeOptions) (*ecs.DescribeInvocationResultsResponse, error)
}

// TempKey is an Ed25519 key pair made in memory and registered on an
// instance for TempKeyWindow. The private key never touches disk.
type TempKey struct {
	User       string
	Signer     ssh.Signer
	PrivatePEM []byte // OpenSSH PEM of the private key, for sshx.Config.PrivateKey
	Registered time.Time
	Window     time.Duration // Config.KeyWindow
}

// Expired reports whether the key's window has passed.
func (k *TempKey) Expired() bool { return time.Since(k.Registered) >= k.Window }

// Check returns ErrKeyWindowMissed once the window has passed: register a
// new key (NewTempKey) and retry once.
func (k *TempKey) Check() error {
	if k.Expired() {
		return fmt.Errorf("%w: registered %v ago, accepted for %v: register a new key and retry", ErrKeyWindowMissed, time.Since(k.Registered).Round(time.Millisecond), k.Window)
	}
	return nil
}

// NewTempKey generates an Ed25519 key pair and registers its public key
// for user ("": root) on cfg.InstanceID with SendPublicKey.
func NewTempKey(ctx context.Context, cfg Config, user string) (*TempKey, error) {
	if user == "" {
		user = "root"
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "jumpless temporary key")
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := SendPublicKey(ctx, cfg, user, sshPub); err != nil {
		return nil, err
	}
	return &TempKey{User: user, Signer: signer, PrivatePEM: pem.EncodeToMemory(block), Registered: time.Now(),
		Window: cfg.withDefaults().KeyWindow}, nil
}

// WithTempKey registers a temporary key (NewTempKey) and calls use with
// it. When use fails and the key's window has passed meanwhile (the login
// came too late), it registers a new key and calls use once more; if that
// fails too after its window, the error matches ErrKeyWindowMissed.
func WithTempKey(ctx context.Context, cfg Config, user string, use func(*TempKey) error) error {
	for attempt := 0; ; attempt++ {
		key, err := NewTempKey(ctx, cfg, user)
		if err != nil {
			return err
		}
		err = use(key)
		if err == nil || !key.Expired() {
			return err
		}
		if attempt == 1 {
			return fmt.Errorf("%w (twice): %w", ErrKeyWindowMissed, err)
		}
	}
}

// SendPublicKey registers pub for user on cfg.InstanceID for 60 s: it
// invokes SendPublicKeyCommand and waits (polling every 2 s, as
// ali-instance-cli) until the invocation finished. Errors: ErrAgentTooOld,
// ErrKeyCommandFailed, or an *APIError.
func SendPublicKey(ctx context.Context, cfg Config, user string, pub ssh.PublicKey) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	api, closeIdle := cfg.API, func() {}
	if api == nil {
		c, ci, err := NewECSClient(cfg)
		if err != nil {
			return err
		}
		api, closeIdle = c, ci
	}
	defer closeIdle()
	capi, ok := api.(CommandAPI)
	if !ok {
		return &ConfigError{Field: "API", Problem: "does not implement CommandAPI (InvokeCommand, DescribeInvocationResults)"}
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	resp, err := capi.InvokeCommandWithContext(ctx, &ecs.InvokeCommandRequest{
		RegionId:   dara.String(cfg.Region),
		InstanceId: []*string{dara.String(cfg.InstanceID)},
		CommandId:  dara.String(SendPublicKeyCommand),
		Parameters: map[string]any{"username": user, "sshPublicKey": key},
	}, &dara.RuntimeOptions{})
	if err != nil {
		if err := ctxErr(ctx); err != nil {
			return fmt.Errorf("aliyun: InvokeCommand: %w", err)
		}
		err = apiError("InvokeCommand", err)
		var ae *APIError
		if errors.As(err, &ae) && strings.Contains(ae.Code, "CloudAssistant") {
			return fmt.Errorf("%w: %v", ErrAgentTooOld, err)
		}
		return err
	}
	id := dara.StringValue(resp.Body.InvokeId)
	for {
		r, err := capi.DescribeInvocationResultsWithContext(ctx, &ecs.DescribeInvocationResultsRequest{
			RegionId: dara.String(cfg.Region), InvokeId: dara.String(id), InstanceId: dara.String(cfg.InstanceID),
			ContentEncoding: dara.String("PlainText"),
		}, &dara.RuntimeOptions{})
		if err != nil {
			if err := ctxErr(ctx); err != nil {
				return fmt.Errorf("aliyun: DescribeInvocationResults: %w", err)
			}
			return apiError("DescribeInvocationResults", err)
		}
		status, output := "", ""
		if b := r.Body; b != nil && b.Invocation != nil && b.Invocation.InvocationResults != nil {
			for _, res := range b.Invocation.InvocationResults.InvocationResult {
				status, output = dara.StringValue(res.InvocationStatus), dara.StringValue(res.Output)
			}
		}
		switch status {
		case "Success":
			return nil
		case "Pending", "Running", "Scheduled", "":
		default:
			return fmt.Errorf("%w: invocation %s is %s: %s", ErrKeyCommandFailed, id, status, printable([]byte(output)))
		}
		t := time.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("aliyun: waiting for the key command: %w", ctx.Err())
		case <-t.C:
		}
	}
}
