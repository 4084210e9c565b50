package sshx

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults applied to zero Config fields.
const (
	DefaultUser              = "ec2-user"
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultKeepaliveTimeout  = 30 * time.Second
	DefaultHandshakeTimeout  = 30 * time.Second
)

// Config configures a Client. Authentication needs at least one of
// PrivateKeyFile, PrivateKey, Signers or Agent; host key verification needs
// at least one of KnownHostsFile, HostKey or HostKeyFingerprint (or
// InsecureIgnoreHostKey). When several host key sources are set, the
// server's key must satisfy every one of them.
type Config struct {
	// User is the login name. Zero: DefaultUser ("ec2-user").
	User string

	// PrivateKey is a private key in PEM (PKCS#1, PKCS#8, SEC1) or OpenSSH
	// format: RSA, ECDSA or Ed25519. Zero: none. Used before PrivateKeyFile
	// when both are set.
	PrivateKey []byte
	// PrivateKeyFile is the path of a private key file (formats as
	// PrivateKey). Zero: none.
	PrivateKeyFile string
	// Passphrase decrypts an encrypted PrivateKey/PrivateKeyFile. Zero: the
	// key must be unencrypted (else ErrPassphraseMissing). Ignored for
	// unencrypted keys.
	Passphrase []byte
	// Signers are additional keys, tried after the private key. Zero: none.
	Signers []ssh.Signer
	// Agent enables ssh-agent authentication through AgentSocket, tried
	// after the keys above. Zero: no agent (unless AgentSocket is set).
	Agent bool
	// AgentSocket is the ssh-agent unix socket. Zero: $SSH_AUTH_SOCK.
	// Setting it implies Agent.
	AgentSocket string

	// KnownHostsFile is an OpenSSH known_hosts file (hashed entries
	// allowed) in which HostKeyAlias is looked up. Zero: not used.
	KnownHostsFile string
	// HostKey is the pinned server host key. Zero: not used. ParseHostKey
	// turns an authorized_keys or known_hosts line into one.
	HostKey ssh.PublicKey
	// HostKeyFingerprint is the pinned server key fingerprint,
	// "SHA256:<base64>" as printed by ssh-keygen -l. Zero: not used.
	HostKeyFingerprint string
	// HostKeyAlias is the name looked up in KnownHostsFile, e.g. an
	// instance id or "host:port" (port 22 when omitted). Zero: the addr
	// passed to NewClient.
	HostKeyAlias string
	// InsecureIgnoreHostKey accepts any host key. Never use it outside
	// tests: it makes man-in-the-middle attacks undetectable. Zero: host
	// keys are verified.
	InsecureIgnoreHostKey bool

	// KeepaliveInterval is the time between keepalive@openssh.com
	// requests. Zero: DefaultKeepaliveInterval (15s); negative: no
	// keepalives.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long a keepalive may go unanswered before the
	// client is closed with ErrKeepaliveTimeout; when the transport is a
	// ProgressReporter (an SSM session), how long it may go unanswered
	// with no progress of the transport either. Zero:
	// DefaultKeepaliveTimeout (30s).
	KeepaliveTimeout time.Duration
	// HandshakeTimeout bounds the SSH handshake and authentication in
	// NewClient (the ctx bounds it too). Zero: DefaultHandshakeTimeout
	// (30s).
	HandshakeTimeout time.Duration

	// Logger receives debug and warning records. Zero: no logging. Secrets
	// are never logged.
	Logger *slog.Logger

	// key is the private key parsed by LoadKey, and keySource its
	// description for AuthError ("file PATH" or "PrivateKey").
	key       ssh.Signer
	keySource string
}

// LoadKey reads and decrypts the private key of c (PrivateKey or
// PrivateKeyFile, with Passphrase) once and returns a copy of c that holds
// the parsed key instead of the key material and passphrase, so that a
// config used for several clients (one per SSM session) does not read and
// decrypt the key, a deliberately slow operation, for every one of them.
// A config without a private key is returned unchanged. Errors are those
// NewClient would return (*KeyError, ErrPassphraseMissing,
// ErrPassphraseWrong).
func (c Config) LoadKey() (Config, error) {
	if len(c.PrivateKey) == 0 && c.PrivateKeyFile == "" {
		return c, nil
	}
	s, src, err := loadPrivateKey(c.PrivateKey, c.PrivateKeyFile, c.Passphrase)
	if err != nil {
		return c, err
	}
	c.key, c.keySource = s, src
	c.PrivateKey, c.PrivateKeyFile, c.Passphrase = nil, "", nil
	return c, nil
}

// withDefaults returns a copy of c with zero fields set to their defaults,
// or an error for malformed fields.
func (c Config) withDefaults() (Config, error) {
	if c.User == "" {
		c.User = DefaultUser
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.KeepaliveTimeout == 0 {
		c.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if c.KeepaliveTimeout < 0 {
		return c, fmt.Errorf("%w: KeepaliveTimeout %v is negative", ErrInvalidConfig, c.KeepaliveTimeout)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.HandshakeTimeout < 0 {
		return c, fmt.Errorf("%w: HandshakeTimeout %v is negative", ErrInvalidConfig, c.HandshakeTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HostKeyFingerprint != "" {
		fp, err := ParseFingerprint(c.HostKeyFingerprint)
		if err != nil {
			return c, err
		}
		c.HostKeyFingerprint = fp
	}
	if !c.InsecureIgnoreHostKey && c.KnownHostsFile == "" && c.HostKey == nil && c.HostKeyFingerprint == "" {
		return c, ErrNoHostKeyCheck
	}
	if len(c.PrivateKey) == 0 && c.PrivateKeyFile == "" && c.key == nil && len(c.Signers) == 0 && !c.Agent && c.AgentSocket == "" {
		return c, ErrNoAuthMethod
	}
	return c, nil
}

// Validate reports the first problem NewClient would find in c before
// touching the network: missing authentication or host key source,
// malformed fingerprint or durations, unreadable known_hosts, and a private
// key that cannot be read or decrypted (*KeyError). For the agent it only
// checks that a socket path is known and exists. Errors are those NewClient
// returns.
func (c Config) Validate() error {
	cfg, err := c.withDefaults()
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	if _, _, err := hostKeyCallback(&cfg, "validate"); err != nil {
		return err
	}
	cfg.Agent, cfg.AgentSocket = false, ""
	if len(cfg.PrivateKey) > 0 || cfg.PrivateKeyFile != "" {
		a, err := cfg.authSetup()
		if err != nil {
			return err
		}
		a.close()
	}
	if c.Agent || c.AgentSocket != "" {
		sock := c.AgentSocket
		if sock == "" {
			sock = os.Getenv("SSH_AUTH_SOCK")
		}
		if sock == "" {
			return fmt.Errorf("%w: Agent is set but SSH_AUTH_SOCK is empty; start ssh-agent or set AgentSocket", ErrInvalidConfig)
		}
		if _, err := os.Stat(sock); err != nil {
			return fmt.Errorf("%w: ssh-agent socket: %v", ErrInvalidConfig, err)
		}
	}
	return nil
}
