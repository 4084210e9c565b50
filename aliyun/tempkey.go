package aliyun

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/link"
)

// SendPublicKeyCommand is the id of Cloud Assistant's public command that
// installs a temporary SSH public key for 60 s: what ali-instance-cli's
// send_public_key invokes (agent/session/plugin/sendpublickey in
// aliyun/aliyun_assist_client), with the parameters username and
// sshPublicKey.
const SendPublicKeyCommand = "cmd-ACS-ECS-SendSshPublicKey-linux.sh"

// InstallPluginCommand is the shell command ali-instance-cli runs first
// (RunCommand, RunShellScript, Base64, timeout 5 s): it installs the
// config_ecs_instance_connect plug-in that keeps the key on the instance.
const InstallPluginCommand = "acs-plugin-manager -e -P config_ecs_instance_connect --params --install"

// TempKeyWindow is how long Alibaba accepts a temporary key after it
// was registered (documented).
const TempKeyWindow = 60 * time.Second

var (
	// ErrKeyCommandFailed: the instance ran a key command and it failed
	// (the plug-in install or SendPublicKeyCommand: plug-in unavailable,
	// user unknown, timeout, …). Matched by a *KeyCommandError.
	ErrKeyCommandFailed = errors.New("aliyun: temporary key command failed")
	// ErrAgentTooOld: the Cloud Assistant agent cannot run the key
	// commands: too old (Linux agent ≥ 2.2.3.196 needed; Session Manager
	// needs ≥ 2.2.3.256), not running, not answering, or being upgraded.
	// Matched by a *KeyCommandError.
	ErrAgentTooOld = errors.New("aliyun: Cloud Assistant agent too old or not running")
	// ErrKeyWindowMissed: the SSH login came after the temporary key's
	// window (60 s) had passed, twice (WithTempKey retries once).
	ErrKeyWindowMissed = errors.New("aliyun: temporary key window missed")
)

// CommandAPI is the part of the ECS OpenAPI the temporary keys need.
// *github.com/alibabacloud-go/ecs-20140526/v7/client.Client satisfies it.
type CommandAPI interface {
	RunCommandWithContext(ctx context.Context, req *ecs.RunCommandRequest, rt *dara.RuntimeOptions) (*ecs.RunCommandResponse, error)
	InvokeCommandWithContext(ctx context.Context, req *ecs.InvokeCommandRequest, rt *dara.RuntimeOptions) (*ecs.InvokeCommandResponse, error)
	DescribeInvocationResultsWithContext(ctx context.Context, req *ecs.DescribeInvocationResultsRequest, rt *dara.RuntimeOptions) (*ecs.DescribeInvocationResultsResponse, error)
}

// KeyCommandError is a key command (the plug-in install or
// SendPublicKeyCommand) that the instance did not run to success, as
// DescribeInvocationResults reported it. It matches ErrAgentTooOld when
// ErrorCode says the agent could not run it (ClientNeedUpgrade,
// ClientNotRunning, ClientNotResponse, ClientIsUpgrading), else
// ErrKeyCommandFailed.
type KeyCommandError struct {
	Step      string // "installing the config_ecs_instance_connect plug-in" or "registering the key"
	InvokeID  string
	Status    string // InvocationStatus: Failed, Timeout, Aborted, Invalid, …
	ErrorCode string // InvocationResult.ErrorCode, e.g. ExitCodeNonzero, ClientNeedUpgrade
	ErrorInfo string
	Output    string // the command's output (printable, at most 200 bytes)
}

func (e *KeyCommandError) agent() bool {
	switch e.ErrorCode {
	case "ClientNeedUpgrade", "ClientNotRunning", "ClientNotResponse", "ClientIsUpgrading":
		return true
	}
	return false
}

func (e *KeyCommandError) Error() string {
	kind := ErrKeyCommandFailed
	if e.agent() {
		kind = ErrAgentTooOld
	}
	s := fmt.Sprintf("%v: %s: invocation %s is %s", kind, e.Step, e.InvokeID, e.Status)
	if e.ErrorCode != "" {
		s += " (" + e.ErrorCode
		if e.ErrorInfo != "" {
			s += ": " + e.ErrorInfo
		}
		s += ")"
	}
	if e.Output != "" {
		s += ": output " + strings.TrimSpace(e.Output)
	}
	switch {
	case e.ErrorCode == "ClientNeedUpgrade":
		s += " (upgrade the Cloud Assistant agent on the instance: temporary keys need Linux agent ≥ 2.2.3.196, Session Manager ≥ 2.2.3.256)"
	case e.agent():
		s += " (start the Cloud Assistant agent on the instance, or wait until its upgrade is done, and check the instance is running)"
	case e.Status == "Timeout" || e.ErrorCode == "ExecutionTimeout":
		s += " (the command timed out on the instance: check the instance's load and its access to Alibaba's plug-in repository)"
	default:
		s += " (check that the user exists on the instance and that the config_ecs_instance_connect plug-in can be installed; or log in with a key file instead)"
	}
	return s
}

// Is matches ErrAgentTooOld or ErrKeyCommandFailed (see the type).
func (e *KeyCommandError) Is(target error) bool {
	if e.agent() {
		return target == ErrAgentTooOld
	}
	return target == ErrKeyCommandFailed
}

// TempKey is an Ed25519 key pair made in memory and registered on an
// instance for Window. The private key exists only in this process's
// memory (Signer): it is never written to disk, logged, or put in an
// error. Its methods are safe for concurrent use.
type TempKey struct {
	// User is the instance's user the key logs in as.
	User string
	// Signer authenticates with the key (sshx.Config.Signers).
	Signer ssh.Signer
	// PrivatePEM is the private key as OpenSSH PEM bytes in memory, for
	// sshx.Config.PrivateKey. Never write it to a file or log it.
	PrivatePEM []byte
	// Window is how long the instance accepts the key after a
	// registration (Config.KeyWindow).
	Window time.Duration

	cfg        Config
	pub        ssh.PublicKey
	mu         sync.Mutex
	registered time.Time
	count      int
}

// Registered returns when the key was last registered: the time of the
// request that registered it, no later than the instance's window started.
func (k *TempKey) Registered() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.registered
}

// Registrations returns how many times the key was registered.
func (k *TempKey) Registrations() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.count
}

// Fingerprint is the public key's SHA256 fingerprint (safe to log).
func (k *TempKey) Fingerprint() string { return ssh.FingerprintSHA256(k.pub) }

// Expired reports whether the window of the last registration has passed.
func (k *TempKey) Expired() bool {
	r := k.Registered()
	return r.IsZero() || time.Since(r) >= k.Window
}

// Check returns an error matching ErrKeyWindowMissed once the window has
// passed: register the key again (Refresh) before the next login.
func (k *TempKey) Check() error {
	r := k.Registered()
	if r.IsZero() || time.Since(r) >= k.Window {
		return fmt.Errorf("%w: registered %v ago, accepted for %v: register the key again (TempKey.Refresh) right before the login",
			ErrKeyWindowMissed, time.Since(r).Round(time.Millisecond), k.Window)
	}
	return nil
}

// Refresh registers the key again unless the last registration is less
// than two thirds of Window old, so that a login started now falls inside
// the window. Concurrent calls register once.
func (k *TempKey) Refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.registered.IsZero() && time.Since(k.registered) < k.Window*2/3 {
		return nil
	}
	start, err := sendPublicKey(ctx, k.cfg, k.User, k.pub)
	if err != nil {
		return err
	}
	k.registered = start
	k.count++
	k.cfg.Logger.Debug("aliyun: temporary key registered", "instance", k.cfg.InstanceID, "user", k.User, "fingerprint", k.Fingerprint())
	return nil
}

// DialBastion returns a function for tunnel.Config.DialBastion (SSH mode)
// that starts a session with Dial(cfg) and then refreshes k (Refresh), so
// that each session's SSH login, including one a tunnel opens much later
// to replace a lost session, falls inside a registration's window. cfg is
// the session's Config (PortNumber: sshd's port on the instance).
func (k *TempKey) DialBastion(cfg Config) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		c, err := Dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := k.Refresh(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// Transport wraps lt (normally [Transport.Link]) so that every session it
// starts refreshes k ([TempKey.Refresh]) before it is returned: in SSH mode
// each session's login, including one a tunnel opens much later (automatic
// sessions, a replacement for a lost session), falls inside a
// registration's window. Use it as tunnel.Config.Transport with
// Config.SSH.Signers = k.Signer. A failed refresh ends the session it
// started and returns the refresh's error (*KeyCommandError, *APIError or
// ctx's error).
func (k *TempKey) Transport(lt link.Transport) link.Transport {
	return &keyTransport{k: k, lt: lt}
}

// keyTransport is [TempKey.Transport].
type keyTransport struct {
	k  *TempKey
	lt link.Transport
}

// Dial starts a session with the wrapped transport, then refreshes the key.
func (t *keyTransport) Dial(ctx context.Context, addr string) (link.Link, error) {
	l, err := t.lt.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := t.k.Refresh(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// NewTempKey generates an Ed25519 key pair in memory for user ("": root)
// on cfg.InstanceID and registers it (Refresh).
func NewTempKey(ctx context.Context, cfg Config, user string) (*TempKey, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if user == "" {
		user = "root"
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
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
	k := &TempKey{User: user, Signer: signer, PrivatePEM: pem.EncodeToMemory(block), Window: cfg.KeyWindow, cfg: cfg, pub: signer.PublicKey()}
	if err := k.Refresh(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// WithTempKey makes and registers a temporary key (NewTempKey) and calls
// use with it. When use fails and the key's window has passed meanwhile
// (the login came too late), it makes and registers a new key and calls
// use once more; if that fails too after its window, the error matches
// ErrKeyWindowMissed and use's error.
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
			return fmt.Errorf("%w twice (each login came more than %v after its key's registration): %w", ErrKeyWindowMissed, key.Window, err)
		}
		cfg.withDefaults().Logger.Info("aliyun: temporary key window missed; registering a new key", "instance", cfg.InstanceID, "err", err)
	}
}

// SendPublicKey registers pub for user on cfg.InstanceID for 60 s, as
// ali-instance-cli's send_public_key: RunCommand of InstallPluginCommand,
// then InvokeCommand of SendPublicKeyCommand, each followed by
// DescribeInvocationResults until the invocation finished (polled after
// 0.3, 0.6, 1.2, then every 2 s). Errors: a *KeyCommandError (ErrAgentTooOld,
// ErrKeyCommandFailed), an *APIError (ErrInstanceNotFound, ErrAuth, …), or
// ctx's error.
func SendPublicKey(ctx context.Context, cfg Config, user string, pub ssh.PublicKey) error {
	_, err := sendPublicKey(ctx, cfg, user, pub)
	return err
}

// sendPublicKey is SendPublicKey; it returns when the key command was
// requested, no later than the instance's window started.
func sendPublicKey(ctx context.Context, cfg Config, user string, pub ssh.PublicKey) (time.Time, error) {
	if err := cfg.Validate(); err != nil {
		return time.Time{}, err
	}
	cfg = cfg.withDefaults()
	if user == "" {
		user = "root"
	}
	api, closeIdle := cfg.API, func() {}
	if api == nil {
		c, ci, err := NewECSClient(cfg)
		if err != nil {
			return time.Time{}, err
		}
		api, closeIdle = c, ci
	}
	defer closeIdle()
	capi, ok := api.(CommandAPI)
	if !ok {
		return time.Time{}, &ConfigError{Field: "API", Problem: "does not implement CommandAPI (RunCommand, InvokeCommand, DescribeInvocationResults)"}
	}
	const install = "installing the config_ecs_instance_connect plug-in"
	run, err := capi.RunCommandWithContext(ctx, &ecs.RunCommandRequest{
		RegionId:        dara.String(cfg.Region),
		InstanceId:      []*string{dara.String(cfg.InstanceID)},
		Type:            dara.String("RunShellScript"),
		CommandContent:  dara.String(base64.StdEncoding.EncodeToString([]byte(InstallPluginCommand))),
		ContentEncoding: dara.String("Base64"),
		Timeout:         dara.Int64(5),
	}, &dara.RuntimeOptions{})
	if err != nil {
		return time.Time{}, commandCallError(ctx, "RunCommand", err)
	}
	if err := waitInvocation(ctx, capi, cfg, install, run.Body.InvokeId); err != nil {
		return time.Time{}, err
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	start := time.Now()
	inv, err := capi.InvokeCommandWithContext(ctx, &ecs.InvokeCommandRequest{
		RegionId:   dara.String(cfg.Region),
		InstanceId: []*string{dara.String(cfg.InstanceID)},
		CommandId:  dara.String(SendPublicKeyCommand),
		Parameters: map[string]any{"username": user, "sshPublicKey": key},
	}, &dara.RuntimeOptions{})
	if err != nil {
		return time.Time{}, commandCallError(ctx, "InvokeCommand", err)
	}
	return start, waitInvocation(ctx, capi, cfg, "registering the key for user "+user, inv.Body.InvokeId)
}

func commandCallError(ctx context.Context, op string, err error) error {
	if cerr := ctxErr(ctx); cerr != nil {
		return fmt.Errorf("aliyun: %s: %w", op, cerr)
	}
	return apiError(op, err)
}

// waitInvocation polls DescribeInvocationResults until the invocation is
// no longer Pending/Running.
func waitInvocation(ctx context.Context, api CommandAPI, cfg Config, step string, invokeID *string) error {
	id := dara.StringValue(invokeID)
	if id == "" {
		return fmt.Errorf("aliyun: %s: the API returned no InvokeId", step)
	}
	wait := 300 * time.Millisecond
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("aliyun: waiting for invocation %s (%s): %w", id, step, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
		r, err := api.DescribeInvocationResultsWithContext(ctx, &ecs.DescribeInvocationResultsRequest{
			RegionId: dara.String(cfg.Region), InvokeId: dara.String(id), InstanceId: dara.String(cfg.InstanceID),
			ContentEncoding: dara.String("PlainText"),
		}, &dara.RuntimeOptions{})
		if err != nil {
			return commandCallError(ctx, "DescribeInvocationResults", err)
		}
		var res *ecs.DescribeInvocationResultsResponseBodyInvocationInvocationResultsInvocationResult
		if b := r.Body; b != nil && b.Invocation != nil && b.Invocation.InvocationResults != nil {
			for _, x := range b.Invocation.InvocationResults.InvocationResult {
				if x != nil && (x.InstanceId == nil || *x.InstanceId == cfg.InstanceID) {
					res = x
				}
			}
		}
		if res == nil {
			continue // not listed yet
		}
		switch st := dara.StringValue(res.InvocationStatus); st {
		case "Success":
			return nil
		case "Pending", "Running", "Scheduled", "Stopping", "":
		default:
			return &KeyCommandError{Step: step, InvokeID: id, Status: st, ErrorCode: dara.StringValue(res.ErrorCode),
				ErrorInfo: dara.StringValue(res.ErrorInfo), Output: printable([]byte(dara.StringValue(res.Output)))}
		}
	}
}
