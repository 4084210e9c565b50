// Package instanceconnect authenticates SSH to an EC2 instance with a
// throwaway key pushed through EC2 Instance Connect, so that a job needs no
// key file: [New] generates an Ed25519 key in memory, [Key.Push] sends its
// public half with SendSSHPublicKey (the instance's sshd accepts it for 60
// seconds), and [Key.Signer] authenticates with it.
//
// The private key exists only in the process's memory: it is never written
// to disk, logged, or put in an error. Package tunnel uses it through
// tunnel.Config.InstanceConnect, pushing again for a session that opens
// after the pushed key's window has passed.
package instanceconnect

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go"
	"golang.org/x/crypto/ssh"
)

// KeyValidity is how long EC2 Instance Connect keeps a pushed key usable
// (AWS documentation: 60 seconds).
const KeyValidity = 60 * time.Second

// DefaultReuse is Config.Reuse when zero: a pushed key is used for new SSH
// logins for 40 s, leaving 20 s of KeyValidity for the login itself.
const DefaultReuse = 40 * time.Second

// API is the EC2 Instance Connect call a Key needs.
// *github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect.Client satisfies it.
type API interface {
	SendSSHPublicKey(ctx context.Context, in *ec2instanceconnect.SendSSHPublicKeyInput, optFns ...func(*ec2instanceconnect.Options)) (*ec2instanceconnect.SendSSHPublicKeyOutput, error)
}

var _ API = (*ec2instanceconnect.Client)(nil)

// Errors; an [*Error] matches one of them (errors.Is).
var (
	// ErrInvalidConfig: the Config cannot work (see the message).
	ErrInvalidConfig = errors.New("instanceconnect: invalid config")
	// ErrNotEC2: the target is not an EC2 instance (e.g. an "mi-" hybrid
	// managed instance); EC2 Instance Connect works with EC2 only.
	ErrNotEC2 = errors.New("instanceconnect: target is not an EC2 instance")
	// ErrDenied: IAM denied ec2-instance-connect:SendSSHPublicKey, or the
	// credentials were refused.
	ErrDenied = errors.New("instanceconnect: SendSSHPublicKey denied")
	// ErrThrottled: the service throttled SendSSHPublicKey (after the SDK's
	// retries).
	ErrThrottled = errors.New("instanceconnect: SendSSHPublicKey throttled")
	// ErrInstanceNotFound: the service does not know the instance (wrong
	// id or region, or the instance is not running).
	ErrInstanceNotFound = errors.New("instanceconnect: instance not found or not running")
	// ErrNotInstalled: the push succeeded but the instance's sshd refused
	// the key right after: EC2 Instance Connect is not installed (or not
	// configured as sshd's AuthorizedKeysCommand) on the instance, or the
	// OS user does not exist there.
	ErrNotInstalled = errors.New("instanceconnect: key pushed but refused by the instance's sshd")
)

// Error is a failure of EC2 Instance Connect. It matches its Kind
// (errors.Is) and unwraps to the cause (an SDK error or an SSH
// authentication error).
type Error struct {
	Kind       error  // one of the Err* sentinels, or nil for other API failures
	InstanceID string // the instance
	OSUser     string // the login
	Fix        string // what to do
	Err        error  // cause
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	} else {
		b.WriteString("instanceconnect: SendSSHPublicKey failed")
	}
	fmt.Fprintf(&b, " (instance %s, user %s)", e.InstanceID, e.OSUser)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Config configures New.
type Config struct {
	// AWS holds region and credentials. Required unless API is set.
	AWS aws.Config
	// API is the EC2 Instance Connect client. Nil:
	// ec2instanceconnect.NewFromConfig(AWS).
	API API
	// InstanceID is the EC2 instance ("i-..."). Required.
	InstanceID string
	// OSUser is the login the key is pushed for; it must be the SSH user.
	// Required.
	OSUser string
	// AvailabilityZone is passed to SendSSHPublicKey. "": not sent (AWS
	// no longer requires it).
	AvailabilityZone string
	// Reuse is how long after a successful push new logins use the key
	// without pushing again. It must be shorter than KeyValidity. Zero:
	// DefaultReuse (40 s).
	Reuse time.Duration
	// Logger receives debug records (pushes, with the key's fingerprint,
	// never the key). Nil: no logging.
	Logger *slog.Logger
}

// Key is a throwaway Ed25519 key for one instance and user. Its methods are
// safe for concurrent use.
type Key struct {
	cfg    Config
	api    API
	log    *slog.Logger
	signer ssh.Signer
	pub    string // authorized_keys format

	mu       sync.Mutex
	pushedAt time.Time // last successful push; zero: never
	pushes   int
}

// New validates cfg and generates the key in memory; it makes no network
// call. Errors match ErrInvalidConfig or ErrNotEC2.
func New(cfg Config) (*Key, error) {
	if cfg.InstanceID == "" {
		return nil, fmt.Errorf("%w: InstanceID is empty: set the EC2 instance id (i-...)", ErrInvalidConfig)
	}
	if !strings.HasPrefix(cfg.InstanceID, "i-") {
		return nil, &Error{Kind: ErrNotEC2, InstanceID: cfg.InstanceID, OSUser: cfg.OSUser,
			Fix: "EC2 Instance Connect works with EC2 instances (i-...) only; for a hybrid managed instance (mi-...) use a key file (sshx.Config.PrivateKeyFile)"}
	}
	if cfg.OSUser == "" {
		return nil, fmt.Errorf("%w: OSUser is empty: set the SSH login (e.g. ec2-user)", ErrInvalidConfig)
	}
	if cfg.Reuse == 0 {
		cfg.Reuse = DefaultReuse
	}
	if cfg.Reuse < 0 || cfg.Reuse >= KeyValidity {
		return nil, fmt.Errorf("%w: Reuse %v must be between 0 and %v (a pushed key is valid for %v)", ErrInvalidConfig, cfg.Reuse, KeyValidity, KeyValidity)
	}
	api := cfg.API
	if api == nil {
		if cfg.AWS.Region == "" || cfg.AWS.Credentials == nil {
			return nil, fmt.Errorf("%w: set AWS (region and credentials, e.g. config.LoadDefaultConfig) or API", ErrInvalidConfig)
		}
		api = ec2instanceconnect.NewFromConfig(cfg.AWS)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("instanceconnect: generate key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("instanceconnect: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Key{cfg: cfg, api: api, log: log, signer: signer,
		pub: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}, nil
}

// Signer returns the key for SSH authentication (sshx.Config.Signers).
func (k *Key) Signer() ssh.Signer { return k.signer }

// Fingerprint returns the public key's SHA256 fingerprint (safe to log).
func (k *Key) Fingerprint() string { return ssh.FingerprintSHA256(k.signer.PublicKey()) }

// Pushes returns the number of successful pushes.
func (k *Key) Pushes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pushes
}

// Push sends the public key with SendSSHPublicKey unless it was pushed less
// than Config.Reuse ago, so that a login started now falls inside the
// instance's 60-second window. Concurrent calls push once. Errors are
// [*Error] matching ErrDenied, ErrThrottled, ErrInstanceNotFound, or
// nothing for other API failures.
func (k *Key) Push(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.pushedAt.IsZero() && time.Since(k.pushedAt) < k.cfg.Reuse {
		return nil
	}
	in := &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId:     aws.String(k.cfg.InstanceID),
		InstanceOSUser: aws.String(k.cfg.OSUser),
		SSHPublicKey:   aws.String(k.pub),
	}
	if k.cfg.AvailabilityZone != "" {
		in.AvailabilityZone = aws.String(k.cfg.AvailabilityZone)
	}
	start := time.Now()
	out, err := k.api.SendSSHPublicKey(ctx, in)
	if err == nil && (out == nil || !out.Success) {
		err = errors.New("SendSSHPublicKey answered Success=false")
	}
	if err != nil {
		return k.apiError(err)
	}
	k.pushedAt = start // the window started no later than the request
	k.pushes++
	k.log.Debug("instanceconnect: key pushed", "instance", k.cfg.InstanceID, "user", k.cfg.OSUser, "fingerprint", k.Fingerprint())
	return nil
}

func (k *Key) apiError(err error) error {
	e := &Error{InstanceID: k.cfg.InstanceID, OSUser: k.cfg.OSUser, Err: err}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDeniedException", "AuthException", "UnrecognizedClientException", "InvalidSignatureException":
			e.Kind = ErrDenied
			e.Fix = "allow ec2-instance-connect:SendSSHPublicKey on this instance for this user (see the README's Credentials section)"
		case "ThrottlingException":
			e.Kind = ErrThrottled
			e.Fix = "retry later or open fewer tunnels at once"
		case "EC2InstanceNotFoundException", "EC2InstanceStateInvalidException", "EC2InstanceUnavailableException":
			e.Kind = ErrInstanceNotFound
			e.Fix = "check the instance id, the region, and that the instance is running"
		case "InvalidArgsException":
			if strings.Contains(strings.ToLower(ae.ErrorMessage()), "instance") {
				e.Kind = ErrNotEC2
				e.Fix = "EC2 Instance Connect works with EC2 instances (i-...) only"
			}
		}
	}
	return e
}

// LoginRefused turns an SSH authentication failure that happened with the
// key inside its window into an [*Error] matching ErrNotInstalled (which
// unwraps to authErr). Outside the window it returns authErr unchanged.
func (k *Key) LoginRefused(authErr error) error {
	k.mu.Lock()
	fresh := !k.pushedAt.IsZero() && time.Since(k.pushedAt) < KeyValidity
	k.mu.Unlock()
	if !fresh {
		return authErr
	}
	return &Error{Kind: ErrNotInstalled, InstanceID: k.cfg.InstanceID, OSUser: k.cfg.OSUser, Err: authErr,
		Fix: "install EC2 Instance Connect on the instance (package ec2-instance-connect; preinstalled on Amazon Linux 2/2023 and Ubuntu AMIs), make sure sshd uses its AuthorizedKeysCommand, and that the user exists"}
}
