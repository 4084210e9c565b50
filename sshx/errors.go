package sshx

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Sentinel errors. Match them with errors.Is; the typed errors below carry
// details.
var (
	// ErrHostKeyMismatch: the server offered a host key different from the
	// one configured (pinned key, fingerprint or known_hosts entry).
	ErrHostKeyMismatch = errors.New("sshx: host key mismatch")
	// ErrUnknownHost: known_hosts has no entry for the host (HostKeyAlias).
	ErrUnknownHost = errors.New("sshx: host not in known_hosts")
	// ErrAuthFailed: the server rejected every authentication method.
	ErrAuthFailed = errors.New("sshx: authentication failed")
	// ErrPassphraseMissing: the private key is encrypted and Config.Passphrase is empty.
	ErrPassphraseMissing = errors.New("sshx: private key is passphrase-protected; set Config.Passphrase")
	// ErrPassphraseWrong: Config.Passphrase does not decrypt the private key.
	ErrPassphraseWrong = errors.New("sshx: wrong passphrase for private key")
	// ErrKeyUnreadable: the private key could not be read or parsed.
	ErrKeyUnreadable = errors.New("sshx: private key unreadable")
	// ErrNoHostKeyCheck: the Config has no way to verify the server's host key.
	ErrNoHostKeyCheck = errors.New("sshx: no host key verification configured: set KnownHostsFile, HostKey or HostKeyFingerprint (InsecureIgnoreHostKey only for tests)")
	// ErrNoAuthMethod: the Config has no authentication method.
	ErrNoAuthMethod = errors.New("sshx: no authentication method configured: set PrivateKeyFile, PrivateKey, Signers or Agent")
	// ErrKeepaliveTimeout: the server did not answer a keepalive within
	// Config.KeepaliveTimeout; the path to it is considered dead.
	ErrKeepaliveTimeout = errors.New("sshx: keepalive timeout: no answer from the SSH server")
	// ErrClosed: the client was closed by Close. It also matches
	// net.ErrClosed.
	ErrClosed error = closedError{}
	// ErrConnectionLost: the SSH connection ended without Close: the
	// underlying connection failed or was closed by the server or the path
	// (for an SSM session: the session ended), or the server sent a
	// disconnect. The error matching it wraps the cause, so errors.Is and
	// errors.As reach the transport's own types (for example
	// ssm.ErrSessionTerminated). A connection that merely ended is reported
	// with io.ErrUnexpectedEOF, never io.EOF.
	ErrConnectionLost = errors.New("sshx: SSH connection lost")
	// ErrInvalidConfig: a Config field is malformed (the error says which).
	ErrInvalidConfig = errors.New("sshx: invalid config")
	// ErrConnectFailed: DialContext reached the SSH server (the bastion),
	// but it could not connect to the dialed address: wrong host or port,
	// nothing listening, or a security group or firewall between the
	// bastion and the target. See DialError.
	ErrConnectFailed = errors.New("sshx: the bastion could not connect to the address")
	// ErrForwardingProhibited: the SSH server refuses TCP forwarding to the
	// dialed address (sshd_config AllowTcpForwarding or PermitOpen). See
	// DialError.
	ErrForwardingProhibited = errors.New("sshx: the SSH server does not allow forwarding to the address")
)

// HostKeyError reports a host key that failed verification. It matches
// ErrHostKeyMismatch or ErrUnknownHost with errors.Is.
type HostKeyError struct {
	// Host is the name the key was checked under (HostKeyAlias or addr).
	Host string
	// Fingerprint is the SHA256 fingerprint of the key the server offered.
	Fingerprint string
	// KeyType is the type of the offered key ("ssh-ed25519", ...).
	KeyType string
	// Key is the offered host key (public; see KnownHostsLine).
	Key ssh.PublicKey
	// Want lists the fingerprints that would have been accepted.
	Want []string
	// Source names what was checked: "known_hosts <path>", "pinned key" or
	// "fingerprint".
	Source string
	// Err is ErrHostKeyMismatch or ErrUnknownHost.
	Err error
}

// Error describes the failure, with the offered fingerprint and what to do.
func (e *HostKeyError) Error() string {
	var b strings.Builder
	if errors.Is(e.Err, ErrUnknownHost) {
		fmt.Fprintf(&b, "sshx: host %q not found in %s; server offered %s key %s (add it to known_hosts, or set HostKeyAlias to the name it is stored under)",
			e.Host, e.Source, e.KeyType, e.Fingerprint)
		return b.String()
	}
	fmt.Fprintf(&b, "sshx: host key mismatch for %q: server offered %s key %s", e.Host, e.KeyType, e.Fingerprint)
	if len(e.Want) > 0 {
		fmt.Fprintf(&b, ", %s expects %s", e.Source, strings.Join(e.Want, " or "))
	}
	b.WriteString(" (possible man-in-the-middle, or the host was rebuilt: verify the new key before trusting it)")
	return b.String()
}

// Unwrap returns Err.
func (e *HostKeyError) Unwrap() error { return e.Err }

// KnownHostsLine returns a known_hosts line trusting the offered key for
// Host ("i-0123... ssh-ed25519 AAAA..."), for a user to add after verifying
// the fingerprint out of band. It is "" when Key is nil.
func (e *HostKeyError) KnownHostsLine() string {
	if e.Key == nil {
		return ""
	}
	return knownhosts.Line([]string{e.Host}, e.Key)
}

// AuthError reports that the server accepted none of the authentication
// methods. It matches ErrAuthFailed with errors.Is.
type AuthError struct {
	// User is the login name.
	User string
	// Methods describes each key source offered, in order, e.g.
	// "publickey file /home/u/.ssh/id_ed25519 (ssh-ed25519 SHA256:...)" or
	// "publickey agent (2 keys)".
	Methods []string
	// Err is the underlying error from x/crypto/ssh.
	Err error
}

// Error names the user and the keys tried.
func (e *AuthError) Error() string {
	m := "none"
	if len(e.Methods) > 0 {
		m = strings.Join(e.Methods, "; ")
	}
	return fmt.Sprintf("sshx: authentication failed for user %q, tried: %s (check User and that the public key is in the server's authorized_keys): %v", e.User, m, e.Err)
}

// Is reports whether target is ErrAuthFailed.
func (e *AuthError) Is(target error) bool { return target == ErrAuthFailed }

// Unwrap returns Err.
func (e *AuthError) Unwrap() error { return e.Err }

// KeyError reports a private key that could not be used. It matches
// ErrPassphraseMissing, ErrPassphraseWrong or ErrKeyUnreadable with
// errors.Is. Its message names the file, never the key's contents.
type KeyError struct {
	// Path is the key file, or "" for Config.PrivateKey.
	Path string
	// Err is ErrPassphraseMissing, ErrPassphraseWrong, or an error wrapping
	// ErrKeyUnreadable.
	Err error
}

// Error names the key file (never its contents) and the problem.
func (e *KeyError) Error() string {
	where := "Config.PrivateKey"
	if e.Path != "" {
		where = e.Path
	}
	return fmt.Sprintf("sshx: private key %s: %v", where, e.Err)
}

// Unwrap returns Err.
func (e *KeyError) Unwrap() error { return e.Err }

// unreadable wraps cause so that it matches ErrKeyUnreadable.
type unreadable struct{ cause error }

func (u unreadable) Error() string   { return "unreadable: " + u.cause.Error() }
func (u unreadable) Unwrap() []error { return []error{ErrKeyUnreadable, u.cause} }

// DialError reports that the SSH server refused to open a direct-tcpip
// channel for DialContext. It matches ErrConnectFailed (the server could
// not connect to Addr) or ErrForwardingProhibited (the server does not
// allow forwarding) with errors.Is, and unwraps to the
// *ssh.OpenChannelError, so errors.As works for either type.
type DialError struct {
	// Addr is the address passed to DialContext ("host:port").
	Addr string
	// Reason is the server's rejection code (ssh.ConnectionFailed when
	// it could not reach Addr).
	Reason ssh.RejectionReason
	// Message is the server's explanation, e.g. "Connection refused";
	// it may be empty.
	Message string
	// Err is the *ssh.OpenChannelError from x/crypto/ssh.
	Err error
}

// Error says which address could not be reached, why, and what to check.
func (e *DialError) Error() string {
	why := e.Reason.String()
	if e.Message != "" {
		why = e.Message + " (" + why + ")"
	}
	switch e.Reason {
	case ssh.ConnectionFailed:
		return fmt.Sprintf("sshx: the bastion could not connect to %s: %s (check the address and that the instance's security group allows it)", e.Addr, why)
	case ssh.Prohibited:
		return fmt.Sprintf("sshx: the SSH server refused to forward to %s: %s (check AllowTcpForwarding and PermitOpen in its sshd_config)", e.Addr, why)
	default:
		return fmt.Sprintf("sshx: the SSH server could not open a connection to %s: %s", e.Addr, why)
	}
}

// Is reports whether target is the sentinel for e.Reason: ErrConnectFailed
// or ErrForwardingProhibited.
func (e *DialError) Is(target error) bool {
	switch target {
	case ErrConnectFailed:
		return e.Reason == ssh.ConnectionFailed
	case ErrForwardingProhibited:
		return e.Reason == ssh.Prohibited
	}
	return false
}

// Unwrap returns Err.
func (e *DialError) Unwrap() error { return e.Err }

type closedError struct{}

func (closedError) Error() string        { return "sshx: client closed" }
func (closedError) Is(target error) bool { return target == net.ErrClosed }

// lostError returns the error for a connection that ended without Close:
// it matches ErrConnectionLost and wraps cause (io.EOF, which would make a
// cut-off stream look complete to errors.Is(err, io.EOF), becomes
// io.ErrUnexpectedEOF).
func lostError(cause error) error {
	if cause == nil || cause == io.EOF {
		return fmt.Errorf("%w: the server or the path to it closed the connection: %w", ErrConnectionLost, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, cause)
}
