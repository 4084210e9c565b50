package ssmtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/gorilla/websocket"

	"github.com/jumpless/jumpless/internal/testca"
)

// Pacing selects how the emulated agent paces target → client data.
type Pacing int

const (
	// Unpaced sends each chunk read from the target at once (no sleep).
	Unpaced Pacing = iota
	// Realistic reproduces the real agent's loop: read at most 1024 bytes
	// from the target, send one message, sleep 1 ms, repeat — including the
	// agent's per-message cost, calibrated so that a full-speed client sees
	// the download rate measured against AWS (see RealisticMessagePeriod).
	Realistic
)

func (p Pacing) String() string {
	switch p {
	case Unpaced:
		return "Unpaced"
	case Realistic:
		return "Realistic"
	}
	return fmt.Sprintf("Pacing(%d)", int(p))
}

// DefaultAgentVersion is the AgentVersion the emulated agent announces when
// Config.AgentVersion is empty: a current 4-part version, newer than every
// threshold in reference §8.1 (mux > 3.0.196.0, smux keep-alive switch >
// 3.1.1511.0, duplicate re-ack ≥ 3.2.1041.0).
const DefaultAgentVersion = "3.3.1611.0"

// DefaultForbiddenAddresses are the agent's default denied forwarding
// addresses ([A] agent/appconfig/constants.go: instance metadata, DNS and
// time services; reference §9.2).
var DefaultForbiddenAddresses = []string{
	"169.254.169.254", "fd00:ec2::254", "169.254.169.253", "fd00:ec2::253",
	"169.254.169.123", "fd00:ec2::123", "169.254.169.250", "169.254.169.251", "fd00:ec2::240",
}

// Defaults for Config fields.
const (
	DefaultRegion           = "us-east-1"
	DefaultHandshakeTimeout = 15 * time.Second // agent: datachannel.go:51
	DefaultDrainTimeout     = 2 * time.Second  // agent: datachannel.go:388-403
	DefaultChunkSize        = 1024             // agent: StreamDataPayloadSize

	// DefaultKillLoss is Config.KillLoss's default: the frames a dying
	// socket takes with it. The real path lost about 700 agent frames when
	// the client stalled for a second before a kill (a second of the
	// agent's output in the kernel buffers on both sides); 480 is fewer,
	// and enough that the agent's one-per-100 ms repair (≈ 48 s) outlasts
	// an SSH keepalive interval plus its timeout (15 s + 30 s by default).
	DefaultKillLoss = 480
)

// Config configures a Server. The zero value is usable (no targets, so every
// StartSession is answered TargetNotConnected).
type Config struct {
	// Targets maps an instance id ("i-0123456789abcdef0", "mi-...") to the
	// TCP address the agent dials for it. A value without a port
	// ("127.0.0.1") is joined with the session's portNumber parameter;
	// "host:port" is dialed as is. A StartSession for an id not in the map is
	// answered TargetNotConnected, as AWS does for an instance whose agent is
	// not connected. nil: no targets.
	Targets map[string]string

	// Addr is the TCP address to listen on (API and data channel).
	// "": "127.0.0.1:0" (a free loopback port). An unspecified host
	// ("0.0.0.0:4566", ":4566") is announced as 127.0.0.1 in URL and
	// StreamUrl.
	Addr string

	// AdvertiseAddr is the host:port announced in URL and StreamUrl instead
	// of the listening address, for a proxy in front of the server (a
	// benchmark adding network delay). "": the listening address.
	AdvertiseAddr string

	// Pacing of target → client data. Zero value: Unpaced.
	Pacing Pacing

	// ChunkSize is the most bytes the agent reads from the target for one
	// message. 0: 1024 (the real agent's StreamDataPayloadSize).
	ChunkSize int

	// TLS makes the API https:// and the StreamUrl wss://, with a
	// certificate for 127.0.0.1/localhost issued by a CA generated for this
	// server (CertPool). false: http:// and ws://.
	TLS bool

	// AgentVersion is the version the agent announces in HandshakeRequest.
	// It also selects old-agent behaviour: below 3.2.1041.0 the agent does
	// not re-acknowledge duplicates; at or below 2.3.722.0 it ignores the
	// TerminateSession flag. "": DefaultAgentVersion.
	AgentVersion string

	// AccessKeyID, SecretAccessKey and SessionToken are the credentials the
	// API accepts (SigV4). "" AccessKeyID/SecretAccessKey: random keys are
	// generated (see AWSConfig). "" SessionToken: requests must not carry
	// X-Amz-Security-Token.
	AccessKeyID, SecretAccessKey, SessionToken string

	// Region is the region requests must be signed for. "": "us-east-1".
	Region string

	// Strict records every ill-formed client frame as a *Violation (see
	// Violations and OnViolation). false: ill-formed frames are handled the
	// way the real service and agent handle them and not recorded.
	Strict bool

	// OnViolation, if set, is called (from a gateway goroutine) for each
	// strict-mode finding. nil: findings are only recorded.
	OnViolation func(*Violation)

	// HandshakeDiscardWindow is how long after its HandshakeComplete write
	// returns the agent keeps acknowledging and discarding client stream
	// data (reference §7.5: the real agent flips its "handshake complete"
	// flag only after that write returns). 0: the flag flips right after the
	// write returns, like the real agent, so the race exists but is as
	// narrow as on a real host (microseconds).
	HandshakeDiscardWindow time.Duration

	// ExtraHandshakeActions are requested by the agent in its
	// HandshakeRequest after the SessionType action, where a real agent puts
	// KMSEncryption when a session is encrypted (reference §7.2, §7.6; the
	// real agent does that only for non-Port plugins, so with the port
	// documents emulated here this stands in for an encrypted session or an
	// action a future agent may add). The agent treats the client's answers
	// as the real one does: any ActionStatus other than Success (1) fails
	// the session, with the client's error in the channel_closed output.
	// nil: only SessionType, as for every real port session.
	ExtraHandshakeActions []HandshakeAction

	// HandshakeTimeout is how long after StartSession the agent waits for
	// the client's HandshakeResponse before failing the session.
	// 0: 15 s (the real agent's value).
	HandshakeTimeout time.Duration

	// DrainTimeout is how long the agent waits for its unacknowledged output
	// to be acknowledged when a session ends, before the service sends
	// channel_closed. 0: 2 s (the real agent's value).
	DrainTimeout time.Duration

	// TargetDialDelay delays the agent's target dial after HandshakeComplete,
	// widening the window in which client data is answered "not ready".
	// 0: no delay.
	TargetDialDelay time.Duration

	// ForbiddenAddresses are the IP addresses the agent refuses to forward
	// to with the remote-host document: it resolves "host" once and ends
	// the session with "Forwarding to IP address <host> is forbidden." when
	// any resolved address is listed ([A] plugins/port/port.go). Nil:
	// DefaultForbiddenAddresses (the agent's defaults, which a real agent on
	// EC2 extends with the VPC's reserved addresses).
	ForbiddenAddresses []string

	// Hosts is the emulated instance's resolver: a host name in a port
	// session's address (e.g. "db.internal") → the address the agent uses
	// instead ("127.0.0.1"). Names not listed resolve with the machine's
	// resolver. Nil: none.
	Hosts map[string]string

	// BufferWhileDisconnected models a gateway that keeps the agent's
	// output: it holds the frames it cannot deliver while the client's
	// websocket is gone, remembers every output_stream_data frame until the
	// client's acknowledge for it passes through, and on the client's
	// reconnect replays all of those in sequence order (the agent's own
	// head-of-line retransmission continues too, so the client sees
	// duplicates). Whether MGS does anything like this is not known (it is
	// not in either AWS repository). false: frames in flight or sent while
	// the client is away are lost and only the agent's retransmission
	// repairs them — one message per RTO (≤ 1 s; with an unpaced agent
	// the RTO reaches 1 s) — the pessimistic, source-backed behaviour.
	BufferWhileDisconnected bool

	// AgentRTO pins the agent's retransmission timeout instead of
	// estimating it from RTT samples (reference §6.5). The resender still
	// looks at the head of the unacknowledged messages every 100 ms and
	// resends it once it is older than the RTO: pinned below 100 ms (10 ms
	// is the estimate's floor), a loss burst is repaired one message per
	// tick, as long as each acknowledgement returns within a tick. The real
	// agent's estimate moves between about 10 ms and its 1 s cap with the
	// RTT samples, which include queueing behind a fast sender and a loaded
	// host, so how fast it repairs a burst varies up to elevenfold from run
	// to run; a test that needs a repair of known length pins it. 0:
	// estimated like the real agent (200 ms at first, capped at 1 s).
	// Negative: an error.
	AgentRTO time.Duration

	// KillLoss is how many frames each KillWebsocket loses in the dying
	// socket (its kernel buffers, on both sides) before the service
	// notices: from the call, frames in either direction cross into the
	// dead socket and are lost, until KillLoss frames were lost, or nothing
	// crossed for 100 ms (an idle session has nothing in its buffers), or
	// 2 s passed; then the agent stops sending, the socket closes and the
	// service pauses the agent, as before. Agent frames lost that way, and
	// those whose acknowledgement was lost, are repaired after the client
	// resumes only by the agent's head-of-line retransmission, one message
	// per 100 ms tick (reference §6.5): a stall of about KillLoss × 100 ms
	// (with BufferWhileDisconnected the gateway replays them at once).
	// 0: DefaultKillLoss (480). Negative: nothing is lost in the socket
	// (kinder than a real path: for tests about something else).
	KillLoss int

	// IdleTimeout ends a session from the service side (channel_closed with
	// Output IdleTimeoutOutput) when no stream data crossed the gateway in
	// either direction for this long; acknowledges and pings do not count
	// (reference §9.5: the service measures idleness from data-channel
	// traffic). AWS's default is 20 minutes. 0: no idle timeout.
	IdleTimeout time.Duration

	// MaxSessionDuration ends a session from the service side
	// (channel_closed with Output MaxDurationOutput) this long after
	// StartSession. 0: unlimited.
	MaxSessionDuration time.Duration

	// Instances are what DescribeInstanceInformation reports per instance
	// id: tags, ping status, last ping time (see Instance). Ids of Targets
	// not listed here are reported Online without tags. An instance listed
	// with a PingStatus other than Online gets TargetNotConnected from
	// StartSession. nil: none.
	Instances map[string]Instance

	// InstanceConnect maps an EC2 instance id to the authorized_keys file
	// of its sshd (one the emulator owns and rewrites, e.g.
	// testenv.SSHD.InstanceConnectKeysPath) into which SendSSHPublicKey
	// installs the pushed key, with OpenSSH's expiry-time option set to
	// the end of InstanceConnectWindow, so that the real sshd refuses the
	// key after the window. A known EC2 instance (in Targets or Instances)
	// that is not listed here accepts pushes and installs nothing, like an
	// instance without EC2 Instance Connect. nil: none.
	InstanceConnect map[string]string

	// StartDelay is how long after StartAutomationExecution
	// (AWS-StartEC2Instance) a Stopped instance's agent is Online.
	// 0: at once.
	StartDelay time.Duration

	// InstanceConnectWindow is how long a pushed key stays usable (rounded
	// down to the second). 0: DefaultInstanceConnectWindow (60 s, AWS's).
	InstanceConnectWindow time.Duration

	// Secrets maps a Secrets Manager secret name to its SecretString,
	// served by GetSecretValue (by name or SecretARN); SetSecret rotates
	// one. nil: none.
	Secrets map[string]string

	// Logger receives debug/info logs. nil: silent. Secrets (keys, tokens)
	// are never logged.
	Logger *slog.Logger
}

// HandshakeAction is one requested client action of the agent's
// HandshakeRequest (reference §7.2), e.g.
// {ActionType: "KMSEncryption", ActionParameters: {"KMSKeyId":"alias/x","Challenge":"..."}}.
type HandshakeAction struct {
	ActionType       string          // e.g. "KMSEncryption"
	ActionParameters json.RawMessage // JSON object; nil: null
}

// Server is a running emulator. Create it with NewServer; stop it with Close.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	hs     *http.Server
	url    string
	wsBase string
	pool   *x509.CertPool
	caPEM  []byte
	tr     *http.Transport
	up     websocket.Upgrader
	ctx    context.Context
	cancel context.CancelFunc

	listenAddr string // where ln listens (URL may advertise another address)

	mu       sync.Mutex
	closed   bool
	sessions map[string]*session
	viols    []error
	wg       sync.WaitGroup

	faults [2]faultState
	st     counters
	mgs    mgsState // real agents attached through MGS (mgs.go)

	blackholed atomic.Bool // Blackhole: the network path to the service is dead

	// Ended sessions are forgotten (removed from sessions) so that a
	// long-running emulator does not grow; the ids of the last
	// maxEndedRemembered stay known, so that ResumeSession answers "no
	// token" and TerminateSession succeeds for them as for an ended
	// session, rather than DoesNotExistException. Guarded by mu.
	ended     map[string]struct{}
	endedRing []string
	endedNext int

	instances map[string]Instance     // s.mu
	apiFaults map[string]*APIFault    // s.mu
	secrets   map[string]*secretValue // s.mu
	keysMu    sync.Mutex              // serializes authorized_keys rewrites
}

// maxEndedRemembered bounds the ids of ended sessions the server keeps.
const maxEndedRemembered = 4096

// forget removes an ended session, remembering its id (bounded).
func (s *Server) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[id]; !ok {
		return
	}
	delete(s.sessions, id)
	if s.ended == nil {
		s.ended = make(map[string]struct{})
	}
	if len(s.endedRing) < maxEndedRemembered {
		s.endedRing = append(s.endedRing, id)
	} else {
		delete(s.ended, s.endedRing[s.endedNext])
		s.endedRing[s.endedNext] = id
		s.endedNext = (s.endedNext + 1) % maxEndedRemembered
	}
	s.ended[id] = struct{}{}
}

// SessionCount returns how many sessions the server holds in memory: the
// open ones and those still ending. Ended sessions are forgotten.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// recentlyEnded reports whether id is a forgotten ended session.
func (s *Server) recentlyEnded(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ended[id]
	return ok
}

// NewServer starts an emulator listening on Config.Addr (a free port on
// 127.0.0.1 by default).
func NewServer(cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = "AKIA" + randHex(8)
	}
	if cfg.SecretAccessKey == "" {
		cfg.SecretAccessKey = randHex(20)
	}
	if cfg.AgentVersion == "" {
		cfg.AgentVersion = DefaultAgentVersion
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.AgentRTO < 0 {
		return nil, fmt.Errorf("ssmtest: AgentRTO %v is negative; want 0 (estimated like the real agent) or the timeout to pin", cfg.AgentRTO)
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.Pacing != Unpaced && cfg.Pacing != Realistic {
		return nil, fmt.Errorf("ssmtest: unknown Pacing %d", int(cfg.Pacing))
	}
	if _, err := parseVersion(cfg.AgentVersion); err != nil {
		return nil, fmt.Errorf("ssmtest: AgentVersion: %w", err)
	}
	targets := make(map[string]string, len(cfg.Targets))
	for k, v := range cfg.Targets {
		targets[k] = v
	}
	cfg.Targets = targets
	if cfg.ForbiddenAddresses == nil {
		cfg.ForbiddenAddresses = DefaultForbiddenAddresses
	}
	cfg.ForbiddenAddresses = append([]string(nil), cfg.ForbiddenAddresses...)
	hosts := make(map[string]string, len(cfg.Hosts))
	for k, v := range cfg.Hosts {
		hosts[k] = v
	}
	cfg.Hosts = hosts
	cfg.ExtraHandshakeActions = append([]HandshakeAction(nil), cfg.ExtraHandshakeActions...)
	for i, a := range cfg.ExtraHandshakeActions {
		if a.ActionType == "" || (a.ActionParameters != nil && !json.Valid(a.ActionParameters)) {
			return nil, fmt.Errorf("ssmtest: ExtraHandshakeActions[%d]: want a non-empty ActionType and JSON ActionParameters", i)
		}
	}

	if cfg.InstanceConnectWindow <= 0 {
		cfg.InstanceConnectWindow = DefaultInstanceConnectWindow
	}
	s := &Server{cfg: cfg, sessions: make(map[string]*session),
		instances: make(map[string]Instance), apiFaults: make(map[string]*APIFault), secrets: make(map[string]*secretValue)}
	for id, in := range cfg.Instances {
		s.instances[id] = in.withDefaults()
	}
	ic := make(map[string]string, len(cfg.InstanceConnect))
	for k, v := range cfg.InstanceConnect {
		ic[k] = v
	}
	s.cfg.InstanceConnect = ic
	for name, v := range cfg.Secrets {
		s.SetSecret(name, v)
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.up = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("ssmtest: listen on %s: %w", addr, err)
	}
	tcpAddr := ln.Addr().(*net.TCPAddr)
	host := tcpAddr.IP
	if host.IsUnspecified() {
		host = net.IPv4(127, 0, 0, 1)
	}
	hostPort := net.JoinHostPort(host.String(), strconv.Itoa(tcpAddr.Port))
	scheme, wsScheme := "http", "ws"
	s.tr = &http.Transport{ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	if cfg.TLS {
		ca, err := testca.New("ssmtest", host)
		if err != nil {
			ln.Close()
			s.cancel()
			return nil, err
		}
		s.pool = ca.Pool
		s.caPEM = ca.PEM
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{ca.Leaf}, MinVersion: tls.VersionTLS12})
		scheme, wsScheme = "https", "wss"
		s.tr.TLSClientConfig = &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	}
	s.ln = ln
	s.listenAddr = hostPort
	if cfg.AdvertiseAddr != "" {
		hostPort = cfg.AdvertiseAddr
	}
	s.url = scheme + "://" + hostPort
	s.wsBase = wsScheme + "://" + hostPort
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.serveAPI)
	mux.HandleFunc("/v1/data-channel/", s.routeDataChannel)
	mux.HandleFunc("/v1/control-channel/", s.serveControlChannel)
	s.hs = &http.Server{
		Handler:           s.unlessBlackholed(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slogErrorLog(s.log),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.hs.Serve(ln)
	}()
	s.log.Info("ssmtest: listening", "url", s.url, "pacing", cfg.Pacing.String(), "agentVersion", cfg.AgentVersion)
	return s, nil
}

// ListenAddr returns the host:port the server listens on; it differs from
// URL's when Config.AdvertiseAddr is set.
func (s *Server) ListenAddr() string { return s.listenAddr }

// URL returns the SSM API endpoint, "http://127.0.0.1:port" or
// "https://127.0.0.1:port" (Config.TLS).
func (s *Server) URL() string { return s.url }

// StreamURL returns the data-channel URL StartSession gives for sessionID:
// ws(s)://127.0.0.1:port/v1/data-channel/<sessionID>?role=publish_subscribe.
func (s *Server) StreamURL(sessionID string) string {
	return s.wsBase + "/v1/data-channel/" + sessionID + "?role=publish_subscribe"
}

// SetTarget adds or replaces the address the agent of instance id dials
// (as Config.Targets); an empty addr removes the instance, so later
// StartSession calls for it get TargetNotConnected. Running sessions are not
// affected.
func (s *Server) SetTarget(id, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr == "" {
		delete(s.cfg.Targets, id)
		return
	}
	s.cfg.Targets[id] = addr
}

// Region returns the region requests must be signed for.
func (s *Server) Region() string { return s.cfg.Region }

// Credentials returns the access key id and secret key the API accepts.
func (s *Server) Credentials() (accessKeyID, secretAccessKey string) {
	return s.cfg.AccessKeyID, s.cfg.SecretAccessKey
}

// CertPool returns a pool holding the generated CA, or nil unless
// Config.TLS. Use it as RootCAs for the API and the websocket.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// CACertPEM returns the generated CA certificate in PEM form (nil unless
// Config.TLS), for tools that take a CA bundle file (the AWS CLI's
// --ca-bundle, SSL_CERT_FILE for a session-manager-plugin process).
func (s *Server) CACertPEM() []byte { return s.caPEM }

// HTTPClient returns an HTTP client for the API that trusts the CA (when
// Config.TLS) and ignores proxy and TLS environment variables. Its idle
// connections are closed by Close.
func (s *Server) HTTPClient() *http.Client { return &http.Client{Transport: s.tr} }

// AWSConfig returns an aws.Config for the emulator: its region, static
// credentials, BaseEndpoint = URL(), and an HTTP client trusting the CA. It
// reads no environment or shared configuration, so tests do not depend on
// AWS_CA_BUNDLE, SSL_CERT_FILE or AWS_* variables.
func (s *Server) AWSConfig() aws.Config {
	return aws.Config{
		Region:       s.cfg.Region,
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(s.cfg.AccessKeyID, s.cfg.SecretAccessKey, s.cfg.SessionToken)),
		BaseEndpoint: aws.String(s.url),
		HTTPClient:   s.HTTPClient(),
	}
}

// Violations returns the strict-mode findings so far (each a *Violation), in
// the order they were found.
func (s *Server) Violations() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.viols...)
}

// SessionIDs returns the ids of the sessions that are still open, sorted.
func (s *Server) SessionIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, ss := range s.sessions {
		if !ss.isEnded() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Close stops the server: it ends every session (without draining and
// without channel_closed), closes every websocket, target connection and the
// listener, and waits for all of its goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ss := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		ss = append(ss, x)
	}
	s.mu.Unlock()
	err := s.hs.Close()
	s.cancel()
	for _, x := range ss {
		x.finish(endServerClosed, "", false)
	}
	s.wg.Wait()
	s.tr.CloseIdleConnections()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// goTracked runs f in a goroutine owned by the server (waited for by Close).
// It returns false, without running f, once Close has started.
func (s *Server) goTracked(f func()) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// session looks up a session by id.
func (s *Server) session(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// matching returns the sessions with the given id ("" = every session).
func (s *Server) matching(id string) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for sid, x := range s.sessions {
		if id == "" || sid == id {
			out = append(out, x)
		}
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Sessions.
	SessionsOpen       int64 // started and not yet ended (any end path decrements it)
	SessionsStarted    int64 // successful StartSession calls
	SessionsEnded      int64 // sessions that ended, by any path
	SessionsTerminated int64 // ended by the TerminateSession API or the client's TerminateSession flag
	SessionsFailed     int64 // ended with an error output (dial failure, handshake timeout/failure)

	// API.
	APIRequests int64 // requests to the SSM API
	APIErrors   int64 // requests answered with an AWS error
	Resumes     int64 // successful ResumeSession calls that issued a token

	// Websockets (client side of the gateway).
	WebsocketsAccepted       int64 // OpenDataChannel with a valid token
	WebsocketsRejected       int64 // closed for a bad first frame or token
	WebsocketsKilled         int64 // closed by KillWebsocket
	WebsocketsStalled        int64 // turned into a black hole by StallWebsocket
	WebsocketsClosedNormally int64 // closed by the client with a close frame, code 1000 (anything else is an abnormal closure, 1006)

	// Frames crossing the gateway.
	FramesFromClient   int64 // frames read from client websockets (after the OpenDataChannel)
	FramesToAgent      int64 // frames delivered to the agent (after ToAgent faults)
	FramesFromAgent    int64 // frames the agent handed to the gateway for the client
	FramesToClient     int64 // frames written to client websockets (after ToClient faults)
	FramesMalformed    int64 // client frames dropped because they could not be decoded
	FramesStalled      int64 // frames lost in either direction on a stalled websocket (StallWebsocket)
	FramesLostInSocket int64 // frames lost in either direction in a dying socket (KillWebsocket, Config.KillLoss)
	FramesLost         int64 // agent frames lost because no client websocket was connected or the write failed
	FramesBuffered     int64 // agent frames held for a disconnected client (BufferWhileDisconnected)
	FramesReplayed     int64 // held frames written to the client's next websocket
	FramesDropped      int64 // dropped by fault injection (both directions)
	FramesDuplicated   int64 // duplicated by fault injection
	FramesReordered    int64 // held back and sent after the next frame by fault injection
	FramesDelayed      int64 // delayed by fault injection
	DigestsCorrupted   int64 // digests corrupted by fault injection
	ControlToClient    int64 // service messages sent to the client (channel_closed, ...)
	AgentSessionState  int64 // agent_session_state messages consumed by the gateway (never forwarded)

	// Agent reliability layer.
	AgentMessagesSent  int64 // output_stream_data messages (first transmissions)
	Retransmissions    int64 // output_stream_data retransmissions
	AcksSent           int64 // acknowledge messages sent by the agent
	AcksReceived       int64 // client acknowledges the agent matched to an unacked message
	DuplicatesReacked  int64 // client duplicates acknowledged again
	OutOfOrderBuffered int64 // client messages acked and buffered ahead of a gap
	NotReady           int64 // client data refused (no ack) because the target was not connected yet
	Discarded          int64 // client data acked and discarded before the handshake-complete flag
	Pauses             int64 // pause_publication received by the agent
	Handshakes         int64 // sessions whose agent flipped its handshake-complete flag (client data is processed from then on)
	TargetDials        int64 // successful target TCP dials (mux mode: one per smux stream)

	// Target.
	BytesToTarget   int64 // client Output bytes the agent wrote to targets
	BytesFromTarget int64 // bytes the agent read from targets (sent as Output)

	// Pacing (target → client loop). PacedTime is the wall time the loop
	// spent per message (from the end of the target read to the end of the
	// pacing sleep), so PacedMessages*ChunkSize/PacedTime is the ceiling of
	// the loop and PacedBytes/PacedTime its rate with the actual chunk sizes.
	PacedMessages int64
	PacedBytes    int64
	PacedTime     time.Duration

	// Real agents (gateway mode, mgs.go).
	AgentsConnected     int64 // control channels of real agents accepted
	AgentDataChannels   int64 // data-channel websockets of real agents accepted (a reconnect counts again)
	AgentTasksCompleted int64 // sessions a real agent reported complete (agent_task_complete, once per session)
	FramesLostToAgent   int64 // client frames lost because the real agent's data channel was not connected or the write failed

	// Strict mode.
	Violations int64

	// Credential APIs.
	KeysPushed       int64 // successful SendSSHPublicKey calls
	InstancesStarted int64 // Stopped instances started by StartAutomationExecution
	SecretFetches    int64 // successful GetSecretValue calls
}

type counters struct {
	sessionsOpen, sessionsStarted, sessionsEnded, sessionsTerminated, sessionsFailed  atomic.Int64
	apiRequests, apiErrors, resumes                                                   atomic.Int64
	wsAccepted, wsRejected, wsKilled, wsStalled, framesStalled, framesLostInSocket    atomic.Int64
	wsClosedNormally                                                                  atomic.Int64
	framesFromClient, framesToAgent, framesFromAgent, framesToClient, framesMalformed atomic.Int64
	framesLost, framesDropped, framesDuplicated, framesReordered, framesDelayed       atomic.Int64
	framesBuffered, framesReplayed                                                    atomic.Int64
	digestsCorrupted, controlToClient, agentSessionState                              atomic.Int64
	agentSent, retrans, acksSent, acksReceived, dupReacked, oooBuffered               atomic.Int64
	notReady, discarded, pauses, handshakes, targetDials                              atomic.Int64
	bytesToTarget, bytesFromTarget                                                    atomic.Int64
	pacedMessages, pacedBytes, pacedNanos                                             atomic.Int64
	violations                                                                        atomic.Int64
	agentsConnected, agentTasksCompleted, framesLostToAgent, agentDataChannels        atomic.Int64
	keysPushed, secretFetches, instancesStarted                                       atomic.Int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.st
	return Stats{
		SessionsOpen: c.sessionsOpen.Load(), SessionsStarted: c.sessionsStarted.Load(),
		SessionsEnded: c.sessionsEnded.Load(), SessionsTerminated: c.sessionsTerminated.Load(),
		SessionsFailed: c.sessionsFailed.Load(),
		APIRequests:    c.apiRequests.Load(), APIErrors: c.apiErrors.Load(), Resumes: c.resumes.Load(),
		WebsocketsAccepted: c.wsAccepted.Load(), WebsocketsRejected: c.wsRejected.Load(), WebsocketsKilled: c.wsKilled.Load(),
		WebsocketsStalled: c.wsStalled.Load(), FramesStalled: c.framesStalled.Load(), FramesLostInSocket: c.framesLostInSocket.Load(), WebsocketsClosedNormally: c.wsClosedNormally.Load(),
		FramesFromClient: c.framesFromClient.Load(), FramesToAgent: c.framesToAgent.Load(),
		FramesFromAgent: c.framesFromAgent.Load(), FramesToClient: c.framesToClient.Load(),
		FramesMalformed: c.framesMalformed.Load(), FramesLost: c.framesLost.Load(),
		FramesBuffered: c.framesBuffered.Load(), FramesReplayed: c.framesReplayed.Load(),
		FramesDropped: c.framesDropped.Load(), FramesDuplicated: c.framesDuplicated.Load(),
		FramesReordered: c.framesReordered.Load(), FramesDelayed: c.framesDelayed.Load(),
		DigestsCorrupted: c.digestsCorrupted.Load(), ControlToClient: c.controlToClient.Load(),
		AgentSessionState: c.agentSessionState.Load(),
		AgentMessagesSent: c.agentSent.Load(), Retransmissions: c.retrans.Load(),
		AcksSent: c.acksSent.Load(), AcksReceived: c.acksReceived.Load(),
		DuplicatesReacked: c.dupReacked.Load(), OutOfOrderBuffered: c.oooBuffered.Load(),
		NotReady: c.notReady.Load(), Discarded: c.discarded.Load(), Pauses: c.pauses.Load(),
		Handshakes: c.handshakes.Load(), TargetDials: c.targetDials.Load(),
		BytesToTarget: c.bytesToTarget.Load(), BytesFromTarget: c.bytesFromTarget.Load(),
		PacedMessages: c.pacedMessages.Load(), PacedBytes: c.pacedBytes.Load(),
		PacedTime:  time.Duration(c.pacedNanos.Load()),
		Violations: c.violations.Load(),
		KeysPushed: c.keysPushed.Load(), SecretFetches: c.secretFetches.Load(), InstancesStarted: c.instancesStarted.Load(),
		AgentsConnected: c.agentsConnected.Load(), AgentTasksCompleted: c.agentTasksCompleted.Load(),
		FramesLostToAgent: c.framesLostToAgent.Load(), AgentDataChannels: c.agentDataChannels.Load(),
	}
}

// Blackhole makes the network path to the service die silently, as a
// dead NAT, VPN or firewall does: every client websocket turns into a black
// hole (see StallWebsocket), and from now on every HTTP request (API calls,
// data-channel dials) is accepted by TCP but never answered, until the
// client gives up or the server closes. The sessions stay alive at the
// service. It cannot be undone.
func (s *Server) Blackhole() {
	s.blackholed.Store(true)
	s.StallWebsocket("")
}

// unlessBlackholed wraps h: after Blackhole, requests hang unanswered.
func (s *Server) unlessBlackholed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.blackholed.Load() {
			select {
			case <-r.Context().Done():
			case <-s.ctx.Done():
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}
