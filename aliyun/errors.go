package aliyun

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/jumpless/jumpless/aliyun/internal/axt"
)

var (
	// ErrInvalidConfig is matched by every *ConfigError.
	ErrInvalidConfig = errors.New("aliyun: invalid config")

	// ErrInstanceNotFound: the API does not know the instance (check
	// InstanceID and Region).
	ErrInstanceNotFound = errors.New("aliyun: instance not found")

	// ErrAuth: the API refused the credentials or the request signature
	// (check the access key pair, STS token or RAM role).
	ErrAuth = errors.New("aliyun: credentials refused")

	// ErrSessionLimit: the per-instance (20) or per-region limit of
	// Session Manager sessions is reached; close sessions or use fewer.
	ErrSessionLimit = errors.New("aliyun: session limit reached")

	// ErrSessionLost: the websocket ended without the server saying why;
	// bytes in flight may be lost. Never io.EOF.
	ErrSessionLost = errors.New("aliyun: session lost")

	// ErrSessionClosed is matched by every *StatusError (the server
	// ended the connection with Status 2, 5 or 6).
	ErrSessionClosed = errors.New("aliyun: session closed by the server")
)

// ConfigError reports a bad Config field; it matches ErrInvalidConfig.
type ConfigError struct {
	Field   string
	Problem string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("aliyun: invalid config: %s: %s", e.Field, e.Problem)
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// APIError is an error answer of the ECS OpenAPI, in Alibaba's shape.
// It matches ErrInstanceNotFound, ErrAuth or ErrSessionLimit when its
// Code says so.
type APIError struct {
	Op         string // "StartTerminalSession", "EndTerminalSession", ...
	StatusCode int
	Code       string // e.g. "InvalidInstance.NotFound"
	Message    string
	RequestID  string
	Err        error // the SDK's error
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("aliyun: %s: %s", e.Op, e.Code)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if h := e.hint(); h != "" {
		s += " (" + h + ")"
	}
	return s
}

func (e *APIError) hint() string {
	switch e.kind() {
	case ErrInstanceNotFound:
		return "check the instance id and the region"
	case ErrAuth:
		return "check the access key id and secret, STS token or RAM role"
	case ErrSessionLimit:
		return "at most 20 sessions per instance are connected at once: close sessions or lower Sessions"
	}
	return ""
}

func (e *APIError) kind() error {
	c := e.Code
	switch {
	case strings.HasPrefix(c, "InvalidInstance") && strings.HasSuffix(c, "NotFound"),
		strings.HasPrefix(c, "InvalidInstanceId") && strings.HasSuffix(c, "NotFound"):
		return ErrInstanceNotFound
	case c == "SignatureDoesNotMatch", c == "IncompleteSignature", c == "InvalidAccessKeyId.NotFound",
		c == "InvalidAccessKeyId.Inactive", c == "InvalidSecurityToken.Expired", c == "InvalidSecurityToken.Malformed",
		c == "InvalidSecurityToken.MismatchWithAccessKey", c == "Forbidden.RAM", c == "NoPermission", c == "InvalidCredentials":
		return ErrAuth
	// Assumption (no public list of this API's error codes names the
	// limit): any code that speaks of a session limit or quota.
	case strings.Contains(c, "Session") && (strings.Contains(c, "Limit") || strings.Contains(c, "Quota")),
		strings.Contains(c, "LimitExceed"), strings.Contains(c, "QuotaExceed"):
		return ErrSessionLimit
	}
	return nil
}

// Is matches the sentinel errors its Code implies.
func (e *APIError) Is(target error) bool { k := e.kind(); return k != nil && k == target }

// Unwrap returns the SDK's error.
func (e *APIError) Unwrap() error { return e.Err }

// apiError converts an SDK error into an *APIError, or wraps err as is
// when it is not an answer of the API (network error, ctx cancellation).
func apiError(op string, err error) error {
	if err == nil {
		return nil
	}
	var code, data, msg *string
	var status *int
	var te *tea.SDKError
	var de *dara.SDKError
	switch {
	case errors.As(err, &te):
		code, data, msg, status = te.Code, te.Data, te.Message, te.StatusCode
	case errors.As(err, &de):
		code, data, msg, status = de.Code, de.Data, de.Message, de.StatusCode
	}
	if code == nil || *code == "" {
		return fmt.Errorf("aliyun: %s: %w", op, err)
	}
	ae := &APIError{Op: op, Code: *code, Err: err}
	if status != nil {
		ae.StatusCode = *status
	}
	// The SDK keeps the answer's fields as a JSON string in Data.
	if data != nil {
		var body struct{ RequestId, Message string }
		if json.Unmarshal([]byte(*data), &body) == nil {
			ae.RequestID, ae.Message = body.RequestId, body.Message
		}
	}
	if ae.Message == "" && msg != nil {
		ae.Message = *msg
	}
	return ae
}

// StatusError is a Status 2 (Aborted), 5 (Closed) or 6 (Exited) from the
// server, with its reason (e.g. "AgentTimeout", "FlowExceedLimit").
type StatusError struct {
	Code   byte
	Reason string
}

func (e *StatusError) Error() string {
	name := axt.StatusCode(e.Code).String()
	s := fmt.Sprintf("aliyun: session closed by the server: Status %d (%s)", e.Code, name)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	switch e.Reason {
	case "FlowExceedLimit":
		s += " (uploads went faster than the server's rate: keep UploadRate at or below it)"
	case "AgentTimeout", "InitChannelFailed", "OpenChannelFailed":
		s += " (the Cloud Assistant agent on the instance did not answer: check it runs and is ≥ 2.2.3.256)"
	}
	return s
}

// Unwrap makes errors.Is(err, ErrSessionClosed) true.
func (e *StatusError) Unwrap() error { return ErrSessionClosed }
