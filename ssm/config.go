package ssm

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// DefaultClientVersion is the ClientVersion this package advertises in
// OpenDataChannel and in the HandshakeResponse when Config.ClientVersion is
// empty.
//
// The agent picks its behaviour from this string (reference §8.1): it uses
// smux multiplexing for port-forwarding documents iff the version is
// ≥ 1.1.70, and it turns smux keep-alive off iff the version is > 1.2.331.0.
// "1.2.650.0" is a real released session-manager-plugin version that
// satisfies both, so a real agent treats us exactly as it treats a current
// AWS plugin. For AWS-StartSSHSession (no "type" property) the agent uses
// its basic, single-stream mode whatever the version. Do not advertise the
// plugin repository's placeholder "1.2.0.0": the agent would pick mux but keep
// smux keep-alive on, and drop a client that sends no smux NOPs after ~30 s.
const DefaultClientVersion = "1.2.650.0"

// DefaultDocumentName is the session document used when Config.DocumentName
// is empty.
const DefaultDocumentName = "AWS-StartSSHSession"

// Defaults for the zero values of Config fields.
const (
	DefaultPortNumber       = 22
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultHoldFirstWrite   = 2 * time.Second
	DefaultMaxPayload       = 1024
	DefaultSendWindow       = 1024
	DefaultWriteBuffer      = 256 << 10
	DefaultReadBuffer       = 4 << 20
	DefaultReorderBuffer    = 16384
	DefaultPingInterval     = 2 * time.Second
	DefaultPingTimeout      = 8 * time.Second
	DefaultResumeTimeout    = 2 * time.Minute
	DefaultCloseTimeout     = 5 * time.Second
	DefaultMinRTO           = time.Second
	DefaultMaxRTO           = 10 * time.Second
)

// Config configures Dial. Only Target and either AWS (region and credentials)
// or API are required; every other zero value selects a documented default.
type Config struct {
	// AWS holds the region and credentials, loaded the SDK's way (e.g.
	// config.LoadDefaultConfig). Required unless API is set; with API set
	// it is not used.
	AWS aws.Config

	// API is the SSM control plane. Nil: ssm.NewFromConfig(AWS) with
	// Endpoint and RootCAs applied. A caller-provided API is used as is.
	API API

	// Endpoint is the SSM API endpoint URL (the SDK's BaseEndpoint).
	// Empty: the SDK's default for the region (or AWS.BaseEndpoint).
	Endpoint string

	// RootCAs are the roots trusted for the SSM API (when this package
	// builds the client) and for the data-channel WebSocket. Nil: the
	// system roots (and, for the API, AWS.HTTPClient as configured).
	RootCAs *x509.CertPool

	// Target is the managed instance: "i-" or "mi-" followed by hex digits,
	// or a tag selector "tag:Key=Value" (e.g. "tag:Name=etl-bastion"),
	// resolved by Dial through DescribeInstanceInformation to the one
	// matching instance whose agent is Online (see ResolveTarget; errors
	// are *TargetError). Required.
	Target string

	// CheckTarget makes Dial check, for an instance id, that the
	// instance's agent is Online (DescribeInstanceInformation) before
	// StartSession, so that an offline or unknown instance is reported as a
	// *TargetError with its last ping time rather than the service's bare
	// TargetNotConnected. It costs one API call and needs
	// ssm:DescribeInstanceInformation. Tag selectors are always checked.
	// false: no check for instance ids.
	CheckTarget bool

	// StartStopped starts the target when its agent is not Online and it
	// is the only matching EC2 instance, through the AWS-StartEC2Instance
	// Automation runbook (ssm:StartAutomationExecution; the runbook calls
	// ec2:StartInstances with the caller's permissions), then waits up to
	// StartTimeout for its agent to come Online (Instance.StartedIn says
	// how long it took). Nothing here ever stops an instance: one it
	// started keeps running. It implies the DescribeInstanceInformation
	// check of CheckTarget. false: an offline agent is ErrTargetOffline.
	StartStopped bool

	// StartTimeout bounds the wait for a started instance's agent.
	// Zero: DefaultStartTimeout (5 minutes).
	StartTimeout time.Duration

	// StartPollInterval is the time between DescribeInstanceInformation
	// calls while waiting. Zero: DefaultStartPollInterval (5 s).
	StartPollInterval time.Duration

	// DocumentName is the session document. Empty: "AWS-StartSSHSession".
	DocumentName string

	// PortNumber is the port on the target (document parameter
	// "portNumber"). Zero: 22.
	PortNumber int

	// Parameters are extra document parameters, merged over portNumber.
	// Nil: none.
	Parameters map[string][]string

	// Reason is passed to StartSession for auditing. Empty: none.
	Reason string

	// ClientVersion is the version advertised to the agent. Empty:
	// DefaultClientVersion (see there for why it matters).
	ClientVersion string

	// HandshakeTimeout bounds the wait for the agent's handshake after the
	// data channel is open. Zero: 30s.
	HandshakeTimeout time.Duration

	// HoldFirstWrite: after HandshakeComplete, written data is held (kept,
	// not sent) until the first stream byte arrives from the agent or this
	// long has passed, whichever is first. The real agent may ack and
	// discard client data that arrives right as the handshake completes
	// (reference §7.5); an SSH server speaks first, so holding costs nothing.
	// Zero: 2s. Negative: no hold.
	HoldFirstWrite time.Duration

	// MaxPayload is the largest payload of an upload message. Zero: 1024
	// (what AWS's plugin sends; larger values are accepted by agent code but
	// not verified against the real service).
	MaxPayload int

	// SendWindow is the number of sent but unacknowledged messages after
	// which no new data is sent. Zero: 1024.
	SendWindow int

	// WriteBuffer is the number of written bytes not yet sent after which
	// Write blocks. Zero: 256 KiB.
	WriteBuffer int

	// ReadBuffer is the number of received in-order bytes not yet Read after
	// which the session stops reading the WebSocket (acknowledgements for
	// accepted data keep flowing). Zero: 4 MiB.
	ReadBuffer int

	// ReorderBuffer is the number of out-of-order messages kept while
	// waiting for a gap to be filled; beyond it they are dropped unacked.
	// Zero: 16384.
	ReorderBuffer int

	// PingInterval is how often a WebSocket ping is sent. Zero: 2s.
	// Negative: no pings and no read deadline (a dead path is then only
	// noticed by TCP, or by the SSH keepalive above).
	PingInterval time.Duration

	// PingTimeout is how long the WebSocket may stay silent (no pong, no
	// frame of any kind) before it is considered dead and the session
	// resumes on a new one. Any frame counts, so a busy socket whose pongs
	// queue behind data is not taken for dead, and a silent dead path is
	// noticed within PingTimeout. Zero: 8s. Ignored when PingInterval is
	// negative.
	PingTimeout time.Duration

	// ResumeTimeout bounds the attempts to re-establish a broken data
	// channel (ResumeSession + redial). Zero: 2 minutes.
	ResumeTimeout time.Duration

	// CloseTimeout bounds Close: draining written data, the TerminateSession
	// flag and the TerminateSession API call. It also bounds the
	// TerminateSession call made when Dial fails after StartSession, and
	// how long a cancelled Dial still waits for an in-flight StartSession
	// response (to terminate the session it names). Zero: 5s.
	CloseTimeout time.Duration

	// MinRTO and MaxRTO bound the retransmission timeout (RFC 6298 §2.4
	// recommends a 1 s floor; losses in the middle of a stream are repaired
	// sooner by acknowledgement-driven fast retransmit). Zero: 1s and
	// 10s.
	MinRTO, MaxRTO time.Duration

	// OnFlag, if set, is called for every flag message the agent sends
	// (reference §4.6), in stream order, e.g. [FlagConnectToPortError] when
	// the agent of a mux port session could not connect a stream to its
	// target (§8.4). It runs on the session's reader with the session's
	// lock held: it must return at once and must not call the Session.
	// Nil: flags are only logged.
	OnFlag func(Flag)

	// DisconnectOnClose makes Close send the DisconnectToPort flag (after
	// written data is acknowledged, before TerminateSession), as AWS's
	// plugin does when a connection of a basic port session ends (§8.3).
	// False: only TerminateSession.
	DisconnectOnClose bool

	// Logger receives debug and warning logs. Nil: no logging.
	Logger *slog.Logger
}

// Flag is the value of a flag message (reference §4.6).
type Flag uint32

// Flags the agent and the client exchange.
const (
	FlagDisconnectToPort   = Flag(wire.DisconnectToPort)   // client → agent: close the target connection (basic mode)
	FlagTerminateSession   = Flag(wire.TerminateSession)   // client → agent: end the session
	FlagConnectToPortError = Flag(wire.ConnectToPortError) // agent → client: a mux stream could not reach the target
)

// String names the flag as AWS's sources do.
func (f Flag) String() string {
	switch f {
	case FlagDisconnectToPort:
		return "DisconnectToPort"
	case FlagTerminateSession:
		return "TerminateSession"
	case FlagConnectToPortError:
		return "ConnectToPortError"
	}
	return fmt.Sprintf("Flag(%d)", uint32(f))
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.DocumentName == "" {
		c.DocumentName = DefaultDocumentName
	}
	if c.PortNumber == 0 {
		c.PortNumber = DefaultPortNumber
	}
	if c.ClientVersion == "" {
		c.ClientVersion = DefaultClientVersion
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.HoldFirstWrite == 0 {
		c.HoldFirstWrite = DefaultHoldFirstWrite
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.SendWindow == 0 {
		c.SendWindow = DefaultSendWindow
	}
	if c.WriteBuffer == 0 {
		c.WriteBuffer = DefaultWriteBuffer
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.ReorderBuffer == 0 {
		c.ReorderBuffer = DefaultReorderBuffer
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.ResumeTimeout == 0 {
		c.ResumeTimeout = DefaultResumeTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.MinRTO == 0 {
		c.MinRTO = DefaultMinRTO
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.StartPollInterval == 0 {
		c.StartPollInterval = DefaultStartPollInterval
	}
	if c.MaxRTO == 0 {
		c.MaxRTO = DefaultMaxRTO
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with c as a [*ConfigError] (matching
// [ErrInvalidConfig]), after applying the same defaults as Dial: it makes
// exactly the checks Dial makes before its first network call, and makes
// none itself. A nil result does not mean the target is reachable or the
// credentials are accepted; only Dial finds that out.
func (c Config) Validate() error {
	d := c.withDefaults()
	return d.validate()
}

// validate checks a Config that has been through withDefaults.
func (c *Config) validate() error {
	if err := validTarget(c.Target); err != nil {
		return err
	}
	if c.API == nil {
		if c.AWS.Region == "" {
			return &ConfigError{"AWS.Region", "no region: set AWS.Region or load the config with config.LoadDefaultConfig(ctx, config.WithRegion(...))"}
		}
		if !validRegion(c.AWS.Region) {
			return &ConfigError{"AWS.Region", fmt.Sprintf("%q is not a region name: want lowercase letters, digits and dashes ending in a number, such as \"us-east-1\" or \"eu-central-1\"", c.AWS.Region)}
		}
		if c.AWS.Credentials == nil {
			return &ConfigError{"AWS.Credentials", "no credentials provider: load the config with config.LoadDefaultConfig or set AWS.Credentials"}
		}
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return &ConfigError{"Endpoint", "must be an absolute http(s) URL such as https://ssm.us-east-1.amazonaws.com"}
		}
	}
	if !validVersion(c.ClientVersion) {
		return &ConfigError{"ClientVersion", fmt.Sprintf("%q is not a dotted numeric version: the agent compares it number by number to choose its behaviour (reference §8.1); use e.g. %q, or leave it empty", c.ClientVersion, DefaultClientVersion)}
	}
	if c.PortNumber < 0 || c.PortNumber > 65535 {
		return &ConfigError{"PortNumber", "must be between 1 and 65535 (0 selects 22)"}
	}
	type pos struct {
		name string
		v    int
	}
	for _, p := range []pos{{"MaxPayload", c.MaxPayload}, {"SendWindow", c.SendWindow}, {"WriteBuffer", c.WriteBuffer}, {"ReadBuffer", c.ReadBuffer}, {"ReorderBuffer", c.ReorderBuffer}} {
		if p.v < 0 {
			return &ConfigError{p.name, "must not be negative (0 selects the default)"}
		}
	}
	if c.MaxPayload > 1<<20 {
		return &ConfigError{"MaxPayload", "must be at most 1 MiB"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HandshakeTimeout", c.HandshakeTimeout}, {"StartTimeout", c.StartTimeout}, {"StartPollInterval", c.StartPollInterval}, {"ResumeTimeout", c.ResumeTimeout}, {"CloseTimeout", c.CloseTimeout}, {"MinRTO", c.MinRTO}, {"MaxRTO", c.MaxRTO}} {
		if d.v < 0 {
			return &ConfigError{d.name, "must not be negative (0 selects the default)"}
		}
	}
	if c.PingInterval > 0 && c.PingTimeout <= c.PingInterval {
		return &ConfigError{"PingTimeout", fmt.Sprintf("%v is not longer than PingInterval (%v): an idle but healthy data channel would be taken for dead between pings; make it a few intervals (0 selects 8s, PingInterval 0 selects 2s)", c.PingTimeout, c.PingInterval)}
	}
	if c.MinRTO > c.MaxRTO {
		return &ConfigError{"MinRTO", "must not exceed MaxRTO"}
	}
	return nil
}

// validTarget checks the instance id format: "i-" or "mi-" followed by hex.
func validTarget(t string) error {
	if t == "" {
		return &ConfigError{"Target", `empty: set the managed instance id, e.g. "i-0123456789abcdef0", or a tag selector, e.g. "tag:Name=etl-bastion"`}
	}
	if IsSelector(t) {
		_, _, err := ParseSelector(t)
		return err
	}
	rest, ok := strings.CutPrefix(t, "i-")
	if !ok {
		rest, ok = strings.CutPrefix(t, "mi-")
	}
	valid := ok && len(rest) >= 8 && len(rest) <= 32
	for i := 0; valid && i < len(rest); i++ {
		c := rest[i]
		valid = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !valid {
		return &ConfigError{"Target", `"` + t + `" is not an instance id: want "i-" or "mi-" followed by 8-32 lowercase hex digits, e.g. "i-0123456789abcdef0", or a tag selector such as "tag:Name=etl-bastion"`}
	}
	return nil
}

// validVersion reports whether v is a dotted numeric version such as
// "1.2.650.0": 1 to 4 numbers of at most 9 digits.
func validVersion(v string) bool {
	parts := strings.Split(v, ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 9 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// validRegion reports whether r looks like an AWS region name:
// lowercase-letter words separated by dashes, the last one a number
// ("us-east-1", "us-gov-west-1", "ap-southeast-5"). It only catches typos
// and misplaced values (an endpoint URL, an availability zone); whether the
// region exists is the service's answer.
func validRegion(r string) bool {
	parts := strings.Split(r, "-")
	if len(r) > 32 || len(parts) < 3 {
		return false
	}
	for i, p := range parts {
		if p == "" {
			return false
		}
		for j := 0; j < len(p); j++ {
			c := p[j]
			if i == len(parts)-1 {
				if c < '0' || c > '9' {
					return false
				}
			} else if c < 'a' || c > 'z' {
				return false
			}
		}
	}
	return true
}
