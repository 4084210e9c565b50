package aliyun

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	credentials "github.com/aliyun/credentials-go/credentials"

	"github.com/jumpless/jumpless/aliyun/internal/axt"
)

// Defaults.
const (
	DefaultPort              = 22
	DefaultHoldFirstWrite    = 3 * time.Second  // as Alibaba's CLI waits in port mode
	DefaultKeepaliveInterval = 60 * time.Second // the agent's idle timer fires at 180 s
	DefaultCloseTimeout      = 10 * time.Second
	DefaultUploadRate        = axt.DefaultRate // 204 800 bit/s, as the CLI until a Status 7
	// MaxChunk is the largest Input payload sent (Alibaba's CLI and agent use 2048).
	MaxChunk = axt.ChunkSize
	// InstanceSessionLimit is the documented number of connected sessions
	// per instance.
	InstanceSessionLimit = 20
)

// Unpaced as Config.UploadRate turns upload pacing off (until a Status 7
// from the server sets a rate).
const Unpaced = -1

// Config configures Start and Dial. Region and InstanceID are required;
// every other zero value selects a documented default.
type Config struct {
	// Region is the instance's region id, e.g. "cn-hangzhou". Required.
	Region string

	// InstanceID is the ECS instance ("i-…") running the Cloud Assistant
	// agent (Linux ≥ 2.2.3.256). Required.
	InstanceID string

	// PortNumber is the TCP port the agent connects to. Zero: 22 (SSH).
	PortNumber int

	// TargetServer is a host the instance reaches (e.g. a database in the
	// VPC); the agent then connects to TargetServer:PortNumber. "": the
	// instance itself (agents ≥ 2.2.3.515 needed for a TargetServer).
	TargetServer string

	// ConnectionType selects the network of the WebSocketUrl: "Internet"
	// or "Intranet". "": not sent (the API's default, Internet).
	ConnectionType string

	// Credential signs the API calls. Nil: the credentials library's
	// default chain (environment ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET and
	// ALIBABA_CLOUD_SECURITY_TOKEN, the profile file, OIDC, the ECS RAM
	// role). Ignored when API is set.
	Credential credentials.Credential

	// API makes the OpenAPI calls. Nil: an ECS client of Alibaba's SDK
	// built from Region, Credential, Endpoint and RootCAs.
	API API

	// Endpoint overrides the ECS OpenAPI endpoint: a host[:port] (HTTPS)
	// or a URL "http://host:port" / "https://host:port". "": the SDK's
	// endpoint for Region.
	Endpoint string

	// RootCAs verifies the TLS servers of the API (when the client is
	// built here) and of the websocket. Nil: the system roots.
	RootCAs *x509.CertPool

	// HoldFirstWrite bounds how long writes are held after the websocket
	// opens: they go out at the first Output from the target (a server
	// that speaks first, as SSH, MySQL) or after this delay (a client that
	// speaks first, as PostgreSQL), whichever comes first. The v578 agent
	// drops input that arrives before its own TCP dial (≈ 1 s after the
	// websocket opens). Zero: 3 s, as Alibaba's CLI. Negative: no hold.
	HoldFirstWrite time.Duration

	// UploadRate paces uploads (bits per second) until the server sends a
	// Status 7 rate, which then rules. Zero: 204 800 (≈ 24.7 KB/s, as
	// Alibaba's CLI). Unpaced (-1): no pacing.
	UploadRate int64

	// KeepaliveInterval is how long a connection may send nothing before
	// an empty Input goes out: the agent ends a channel that received
	// nothing for 180 s. Zero: 60 s. At most 150 s.
	KeepaliveInterval time.Duration

	// CloseTimeout bounds Close (Close message, websocket close,
	// EndTerminalSession). Zero: 10 s.
	CloseTimeout time.Duration

	// KeyWindow is how long a temporary key (NewTempKey) is accepted
	// after it was registered. Zero: TempKeyWindow (60 s, as Alibaba
	// documents); set it shorter only to match an emulator.
	KeyWindow time.Duration

	// Logger receives session start/end and failures. Secrets (tokens,
	// the token in the URL, keys) are never logged. Nil: no logging.
	Logger *slog.Logger
}

var (
	regionRE   = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)+$`)
	instanceRE = regexp.MustCompile(`^[a-z]{1,4}-[a-z0-9]{6,40}$`)
)

// Validate checks c without any network call. Errors match
// ErrInvalidConfig and name the field.
func (c *Config) Validate() error {
	bad := func(f, p string, a ...any) error { return &ConfigError{Field: f, Problem: fmt.Sprintf(p, a...)} }
	switch {
	case c.Region == "":
		return bad("Region", "required (e.g. cn-hangzhou)")
	case !regionRE.MatchString(c.Region):
		return bad("Region", "%q is not a region id (e.g. cn-hangzhou)", c.Region)
	case c.InstanceID == "":
		return bad("InstanceID", "required (an ECS instance id such as i-bp67acfmxazb4p****)")
	case !instanceRE.MatchString(c.InstanceID):
		return bad("InstanceID", "%q is not an instance id (i-… lower-case letters and digits)", c.InstanceID)
	case c.PortNumber < 0 || c.PortNumber > 65535:
		return bad("PortNumber", "%d is out of range 1..65535 (0 selects 22)", c.PortNumber)
	case strings.ContainsAny(c.TargetServer, " /\t\r\n"):
		return bad("TargetServer", "%q is not a host name or address", c.TargetServer)
	case c.ConnectionType != "" && c.ConnectionType != "Internet" && c.ConnectionType != "Intranet":
		return bad("ConnectionType", "%q: want \"Internet\", \"Intranet\" or \"\"", c.ConnectionType)
	case c.UploadRate < Unpaced:
		return bad("UploadRate", "%d: want bits per second, 0 (default) or Unpaced (-1)", c.UploadRate)
	case c.UploadRate > 0 && c.UploadRate < 8*MaxChunk:
		return bad("UploadRate", "%d bit/s is below one %d-byte chunk per second", c.UploadRate, MaxChunk)
	case c.KeepaliveInterval < 0 || c.KeepaliveInterval > 150*time.Second:
		return bad("KeepaliveInterval", "%v: want 0 (60s) up to 150s, below the agent's 180 s idle timer", c.KeepaliveInterval)
	case c.KeyWindow < 0:
		return bad("KeyWindow", "must not be negative (0 selects 60s)")
	case c.CloseTimeout < 0:
		return bad("CloseTimeout", "must not be negative (0 selects 10s)")
	}
	if c.Endpoint != "" {
		if _, _, err := splitEndpoint(c.Endpoint); err != nil {
			return bad("Endpoint", "%v", err)
		}
	}
	return nil
}

// withDefaults returns c with zero values replaced.
func (c Config) withDefaults() Config {
	if c.PortNumber == 0 {
		c.PortNumber = DefaultPort
	}
	if c.HoldFirstWrite == 0 {
		c.HoldFirstWrite = DefaultHoldFirstWrite
	}
	if c.UploadRate == 0 {
		c.UploadRate = DefaultUploadRate
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.KeyWindow == 0 {
		c.KeyWindow = TempKeyWindow
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// splitEndpoint returns the host[:port] and protocol ("HTTPS"/"HTTP").
func splitEndpoint(e string) (host, protocol string, err error) {
	if !strings.Contains(e, "://") {
		if strings.ContainsAny(e, "/?# ") {
			return "", "", fmt.Errorf("%q: want host[:port] or http(s)://host[:port]", e)
		}
		return e, "HTTPS", nil
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", "", fmt.Errorf("%q: want host[:port] or http(s)://host[:port]", e)
	}
	switch u.Scheme {
	case "https":
		return u.Host, "HTTPS", nil
	case "http":
		return u.Host, "HTTP", nil
	}
	return "", "", fmt.Errorf("%q: scheme must be http or https", e)
}
