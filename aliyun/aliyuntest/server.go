package aliyuntest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alibabacloud-go/tea/dara"
	credentials "github.com/aliyun/credentials-go/credentials"
	"github.com/gorilla/websocket"
)

// Defaults of the emulated agent and service.
const (
	DefaultDialDelay    = time.Second       // the agent dials the target 1 s after its websocket opens
	DefaultIdleTimeout  = 180 * time.Second // the agent's inbound idle timer
	DefaultSessionLimit = 20                // connected sessions per instance (documented)
	DefaultRate         = 204800            // the agent's "200 kbps" without a flow limit
	// UnpacedRate is a flow limit at which the agent's integer pacing
	// formula gives an interval of 0 (measured 24.8 MB/s on the real agent).
	UnpacedRate = 32768000
)

// Config configures NewServer. Every zero value selects the documented,
// measured (pessimistic) behaviour.
type Config struct {
	// Instances maps instance ids to the host their agent reaches as
	// "localhost" (usually "127.0.0.1"): PortNumber is dialled there, and
	// a TargetServer is dialled as given. Unknown instances get
	// InvalidInstance.NotFound.
	Instances map[string]string

	// Hosts resolves TargetServer names the way the instance's resolver
	// would (name → IP). Names not listed are dialled as given.
	Hosts map[string]string

	// Region is the only region served. "": "cn-hangzhou".
	Region string

	// AccessKeyID and AccessKeySecret are the keys requests must be signed
	// with. "": generated (see Server.Credential).
	AccessKeyID, AccessKeySecret string

	// FlowLimit is the agent's download rate in bits per second (the
	// server's flowLimit; the server also sends it to the client as a
	// Status 7). Zero: no flow limit, the agent's own 204 800 bit/s
	// (2048 B per 83 ms = 24.3 KB/s measured) and no Status 7 to the
	// client. UnpacedRate: no pacing (for fast tests).
	FlowLimit int64

	// DialDelay is how long after the websocket opens the agent dials the
	// target; Input arriving before is dropped (v578). Zero: 1 s, as
	// measured. Negative: dial before the first client message is read
	// (for fast tests; no Input is lost).
	DialDelay time.Duration

	// IdleTimeout ends a channel that received no message for this long:
	// assumption from newer agents (IdleTimeout); v578 only set a flag. The
	// client gets Status 5 "IdleTimeout". Zero: 180 s. Negative: never.
	IdleTimeout time.Duration

	// SessionLimit is the number of sessions per instance that may be
	// open (started and not ended) at once; StartTerminalSession beyond it
	// fails with SessionLimitExceeded (code name assumed). Zero: 20.
	SessionLimit int

	// AuthorizedKeys is an sshd authorized_keys file: InvokeCommand of
	// SendPublicKeyCommand appends the key there and removes it after
	// KeyWindow (unless OnSendPublicKey set a hook). "": the command fails,
	// as on an instance without the config_ecs_instance_connect plug-in.
	AuthorizedKeys string

	// KeyWindow is how long a temporary key stays installed. Zero: 60 s
	// (Alibaba's documented window); tests set it shorter.
	KeyWindow time.Duration

	// CommandDelay is how long each Cloud Assistant command invocation
	// (RunCommand, InvokeCommand) stays Running before it finishes; a
	// RunCommand whose Timeout is shorter ends as Timeout
	// (ExecutionTimeout). Zero: DefaultCommandDelay (300 ms). Negative:
	// finished at once. SetCommandDelay changes it.
	CommandDelay time.Duration

	// AgentState makes every command invocation end as
	// DescribeInvocationResults reports an agent that cannot run it: one of
	// AgentNeedUpgrade, AgentNotRunning, AgentNotResponse, AgentUpgrading.
	// "": a healthy agent, new enough. SetAgentState changes it.
	AgentState string

	// RealAgent is the instance id served by a real Cloud Assistant agent
	// instead of the emulated one: the server then also listens for the
	// agent (TLS; see AgentHost, CACertPEM) and relays that instance's
	// connections to it. "": every instance is emulated.
	RealAgent string

	// Logger receives the emulator's logs. Nil: none.
	Logger *slog.Logger
}

// Stats counts what the emulator saw.
type Stats struct {
	SessionsStarted, SessionsEnded int64
	SessionsOpen                   int // started and not ended
	ConnsOpen                      int // client websockets open now
	ConnsTotal                     int64
	TargetDials                    int64 // TCP dials of targets (re-dials included)
	BytesToTarget, BytesToClient   int64
	Keepalives                     int64 // empty Inputs received
	ClosesReceived                 int64 // Close (type 3) received
	NormalCloses                   int64 // client websockets ended with a close frame 1000
	InputsReceived                 int64 // non-empty Inputs received
	MaxInputPayload                int64 // largest Input payload received
	InputsDropped                  int64 // Input that arrived before the target dial (lost)
	SignatureFailures              int64
	APICalls                       map[string]int64
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	ln   net.Listener
	http *http.Server
	up   websocket.Upgrader

	mu       sync.Mutex
	sessions map[string]*session
	nextID   int
	calls    map[string]int64
	closed   bool
	wg       sync.WaitGroup

	agent       *agentLeg
	apiDelay    atomic.Int64 // nanoseconds added before every API answer
	invocations map[string]*invocation
	keyHook     func(instance, user, publicKey string) error
	plugin      map[string]bool // instances where the key plug-in was installed
	agentState  string
	cmdDelay    atomic.Int64
	keyMu       sync.Mutex
	keyTimers   []*time.Timer

	stats struct {
		started, ended, connsTotal, dials, toTarget, toClient, keepalives, closes, dropped, sigFail atomic.Int64
		normalCloses, inputs, maxInput                                                              atomic.Int64
	}
}

// NewServer starts an emulator on 127.0.0.1.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = "cn-hangzhou"
	}
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = "LTAI5t" + randHex(9)
	}
	if cfg.AccessKeySecret == "" {
		cfg.AccessKeySecret = randHex(15)
	}
	if cfg.DialDelay == 0 {
		cfg.DialDelay = DefaultDialDelay
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.KeyWindow == 0 {
		cfg.KeyWindow = 60 * time.Second
	}
	if cfg.SessionLimit == 0 {
		cfg.SessionLimit = DefaultSessionLimit
	}
	if cfg.FlowLimit < 0 || (cfg.FlowLimit > 0 && cfg.FlowLimit < 16384) {
		return nil, fmt.Errorf("aliyuntest: FlowLimit %d: the agent's formula needs ≥ 16384 bit/s (it panics below)", cfg.FlowLimit)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger,
		ln:          ln,
		sessions:    map[string]*session{},
		calls:       map[string]int64{},
		invocations: map[string]*invocation{},
		plugin:      map[string]bool{},
		agentState:  cfg.AgentState,
		up:          websocket.Upgrader{ReadBufferSize: 8 << 10, WriteBufferSize: 8 << 10},
	}
	s.cmdDelay.Store(int64(cfg.CommandDelay))
	mux := http.NewServeMux()
	mux.HandleFunc("/session", s.serveClient)
	mux.HandleFunc("/", s.serveAPI)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if cfg.RealAgent != "" {
		if err := s.startAgentLeg(); err != nil {
			ln.Close()
			return nil, err
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.http.Serve(ln)
	}()
	return s, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Endpoint is the ECS OpenAPI endpoint ("http://127.0.0.1:port").
func (s *Server) Endpoint() string { return "http://" + s.ln.Addr().String() }

// Addr is the listener's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Region is the region served.
func (s *Server) Region() string { return s.cfg.Region }

// AccessKeyID is the key id requests must be signed with.
func (s *Server) AccessKeyID() string { return s.cfg.AccessKeyID }

// AccessKeySecret is the secret requests must be signed with.
func (s *Server) AccessKeySecret() string { return s.cfg.AccessKeySecret }

// Credential is an access-key credential of the credentials library with
// the server's keys.
func (s *Server) Credential() credentials.Credential {
	c, err := credentials.NewCredential(&credentials.Config{
		Type:            dara.String("access_key"),
		AccessKeyId:     dara.String(s.cfg.AccessKeyID),
		AccessKeySecret: dara.String(s.cfg.AccessKeySecret),
	})
	if err != nil {
		panic(err) // cannot happen with a static key pair
	}
	return c
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	open, conns := 0, 0
	for _, ss := range s.sessions {
		if !ss.ended {
			open++
		}
		conns += len(ss.chans)
	}
	calls := make(map[string]int64, len(s.calls))
	for k, v := range s.calls {
		calls[k] = v
	}
	s.mu.Unlock()
	return Stats{
		SessionsStarted: s.stats.started.Load(), SessionsEnded: s.stats.ended.Load(),
		SessionsOpen: open, ConnsOpen: conns, ConnsTotal: s.stats.connsTotal.Load(),
		TargetDials: s.stats.dials.Load(), BytesToTarget: s.stats.toTarget.Load(), BytesToClient: s.stats.toClient.Load(),
		Keepalives: s.stats.keepalives.Load(), ClosesReceived: s.stats.closes.Load(), InputsDropped: s.stats.dropped.Load(),
		NormalCloses: s.stats.normalCloses.Load(), InputsReceived: s.stats.inputs.Load(), MaxInputPayload: s.stats.maxInput.Load(),
		SignatureFailures: s.stats.sigFail.Load(), APICalls: calls,
	}
}

// SessionIDs lists the sessions not ended, sorted.
func (s *Server) SessionIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, ss := range s.sessions {
		if !ss.ended {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// WaitNoSessions waits until no session is open (or ctx ends) and
// returns the number still open.
func (s *Server) WaitNoSessions(ctx context.Context) int {
	for {
		st := s.Stats()
		if st.SessionsOpen == 0 && st.ConnsOpen == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return st.SessionsOpen + st.ConnsOpen
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops the server, drops every websocket and closes every target
// connection.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, t := range s.keyTimers {
		t.Stop()
	}
	var chans []*channel
	for _, ss := range s.sessions {
		for c := range ss.chans {
			chans = append(chans, c)
		}
	}
	s.mu.Unlock()
	err := s.http.Close()
	if s.agent != nil {
		s.agent.close()
	}
	for _, c := range chans {
		c.kill()
	}
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) host(instance string) (string, bool) {
	if instance != "" && instance == s.cfg.RealAgent {
		return "", true
	}
	h, ok := s.cfg.Instances[instance]
	return h, ok
}
