package ssm

import (
	"errors"
	"fmt"
	"net"
)

// Sentinel errors. Every error this package returns that belongs to one of
// these classes matches it with errors.Is.
var (
	// ErrInvalidConfig is matched by every [*ConfigError].
	ErrInvalidConfig = errors.New("ssm: invalid config")

	// ErrHandshake is matched by every [*HandshakeError].
	ErrHandshake = errors.New("ssm: handshake with the agent failed")

	// ErrHandshakeTimeout is matched by a [*HandshakeError] caused by the
	// agent not completing the handshake within Config.HandshakeTimeout.
	ErrHandshakeTimeout = errors.New("ssm: handshake timed out")

	// ErrClosed is returned by operations on a Session after Close. It also
	// matches net.ErrClosed.
	ErrClosed = &closedError{}

	// ErrSessionTerminated is matched by a [*ChannelClosedError]: the service
	// ended the session (channel_closed).
	ErrSessionTerminated = errors.New("ssm: session terminated by the service")

	// ErrSessionGone means the service no longer knows the session: a
	// reconnect's ResumeSession returned no token, or the session does not
	// exist any more.
	ErrSessionGone = errors.New("ssm: session no longer exists at the service")

	// ErrReconnect means the WebSocket broke and could not be re-established
	// within Config.ResumeTimeout.
	ErrReconnect = errors.New("ssm: data channel lost and could not be re-established")

	// ErrCredentials is matched by a [*CredentialsError]: the local
	// credentials provider failed, so no API call was made.
	ErrCredentials = errors.New("ssm: cannot get AWS credentials")
)

// CredentialsError reports that Config.AWS.Credentials could not provide
// credentials (no profile, expired SSO session, unreachable instance
// metadata, ...). No request reached the service. It matches
// [ErrCredentials] and unwraps to the provider's error.
type CredentialsError struct {
	Err error // the provider's error
}

func (e *CredentialsError) Error() string {
	return "ssm: cannot get AWS credentials from the local provider (no request was sent; fix the credentials: AWS_PROFILE, aws sso login, environment variables or the instance role): " + e.Err.Error()
}

// Is reports whether target is [ErrCredentials].
func (e *CredentialsError) Is(target error) bool { return target == ErrCredentials }

// Unwrap returns the provider's error.
func (e *CredentialsError) Unwrap() error { return e.Err }

// closedError matches both ErrClosed and net.ErrClosed.
type closedError struct{}

func (*closedError) Error() string { return "ssm: use of closed session" }

func (*closedError) Is(target error) bool { return target == net.ErrClosed }

// ConfigError reports a Config that cannot work. It matches
// [ErrInvalidConfig].
type ConfigError struct {
	Field   string // the Config field, e.g. "Target"
	Problem string // what is wrong and how to fix it
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ssm: invalid config: %s: %s", e.Field, e.Problem)
}

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// HandshakeError reports a failed agent handshake (reference §7). It matches
// [ErrHandshake], and [ErrHandshakeTimeout] when Timeout is set.
type HandshakeError struct {
	SessionID string
	Reason    string // what went wrong
	Timeout   bool   // the handshake did not complete in time
	Err       error  // underlying cause, if any
}

func (e *HandshakeError) Error() string {
	s := "ssm: handshake failed"
	if e.SessionID != "" {
		s += " (session " + e.SessionID + ")"
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is [ErrHandshake] or, for a timeout,
// [ErrHandshakeTimeout].
func (e *HandshakeError) Is(target error) bool {
	return target == ErrHandshake || (e.Timeout && target == ErrHandshakeTimeout)
}

// Unwrap returns the underlying cause.
func (e *HandshakeError) Unwrap() error { return e.Err }

// ChannelClosedError reports that the service closed the data channel
// (channel_closed) with a non-empty Output, which usually explains why, e.g.
// "Unable to connect to specified port: ...". It matches
// [ErrSessionTerminated].
type ChannelClosedError struct {
	SessionID string
	Output    string // the channel_closed Output text, as the service sent it
}

func (e *ChannelClosedError) Error() string {
	if e.Output == "" {
		return "ssm: session " + e.SessionID + " closed by the service"
	}
	return "ssm: session " + e.SessionID + " closed by the service: " + e.Output
}

// Is reports whether target is [ErrSessionTerminated].
func (e *ChannelClosedError) Is(target error) bool { return target == ErrSessionTerminated }

// APIError wraps an error from an SSM API call. errors.As still finds the
// SDK's error types through it (e.g. *types.TargetNotConnected,
// smithy.APIError).
type APIError struct {
	Op        string // "StartSession", "ResumeSession" or "TerminateSession"
	SessionID string // empty for StartSession
	Err       error
}

func (e *APIError) Error() string {
	if e.SessionID != "" {
		return "ssm: " + e.Op + " (session " + e.SessionID + "): " + e.Err.Error()
	}
	return "ssm: " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the SDK error.
func (e *APIError) Unwrap() error { return e.Err }

// DataChannelError reports a failure to open the session's WebSocket data
// channel. It never contains the token.
type DataChannelError struct {
	SessionID string
	Err       error
}

func (e *DataChannelError) Error() string {
	return "ssm: data channel of session " + e.SessionID + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *DataChannelError) Unwrap() error { return e.Err }
