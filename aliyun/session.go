package aliyun

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/gorilla/websocket"
)

// Session is one Session Manager session (StartTerminalSession): a
// WebSocketUrl on which each Dial opens one connection to the target.
// Close ends it at the service (EndTerminalSession). Safe for concurrent
// use.
type Session struct {
	cfg       Config
	api       API
	closeIdle func()
	log       *slog.Logger

	id    string
	url   string
	token string

	mu        sync.Mutex
	conns     map[*Conn]struct{}
	dialed    int
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg and calls StartTerminalSession. It opens no
// connection yet (see Session.Dial).
func Start(ctx context.Context, cfg Config) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Session{cfg: cfg, api: cfg.API, log: cfg.Logger, conns: map[*Conn]struct{}{}, closeIdle: func() {}}
	if s.api == nil {
		client, closeIdle, err := NewECSClient(cfg)
		if err != nil {
			return nil, err
		}
		s.api, s.closeIdle = client, closeIdle
	}
	req := &ecs.StartTerminalSessionRequest{
		RegionId:   dara.String(cfg.Region),
		InstanceId: []*string{dara.String(cfg.InstanceID)},
		PortNumber: dara.Int32(int32(cfg.PortNumber)),
	}
	if cfg.TargetServer != "" {
		req.TargetServer = dara.String(cfg.TargetServer)
	}
	if cfg.ConnectionType != "" {
		req.ConnectionType = dara.String(cfg.ConnectionType)
	}
	// The call is not abandoned when ctx ends: the service may already
	// have created the session, and only its answer tells which session to
	// end. It is cut CloseTimeout after ctx ends at the latest.
	apiCtx, cancelAPI := context.WithCancel(context.WithoutCancel(ctx))
	var grace *time.Timer
	var graceMu sync.Mutex
	stopWatch := context.AfterFunc(ctx, func() {
		graceMu.Lock()
		grace = time.AfterFunc(cfg.CloseTimeout, cancelAPI)
		graceMu.Unlock()
	})
	resp, err := s.api.StartTerminalSessionWithContext(apiCtx, req, &dara.RuntimeOptions{})
	stopWatch()
	graceMu.Lock()
	if grace != nil {
		grace.Stop()
	}
	graceMu.Unlock()
	cancelAPI()
	if err != nil {
		s.closeIdle()
		if err := ctxErr(ctx); err != nil {
			return nil, fmt.Errorf("aliyun: StartTerminalSession: %w", err)
		}
		return nil, apiError("StartTerminalSession", err)
	}
	if resp == nil || resp.Body == nil || dara.StringValue(resp.Body.SessionId) == "" || dara.StringValue(resp.Body.WebSocketUrl) == "" {
		s.closeIdle()
		return nil, fmt.Errorf("aliyun: StartTerminalSession returned no SessionId or WebSocketUrl")
	}
	s.id = *resp.Body.SessionId
	s.url = fixURL(*resp.Body.WebSocketUrl)
	s.token = dara.StringValue(resp.Body.SecurityToken)
	s.log = s.log.With("session", s.id)
	s.log.Info("aliyun: session started", "instance", cfg.InstanceID, "port", cfg.PortNumber, "target", cfg.TargetServer)
	if ctx.Err() != nil {
		s.Close()
		return nil, fmt.Errorf("aliyun: StartTerminalSession: %w", ctx.Err())
	}
	return s, nil
}

// fixURL replaces a lower-case "sessionid" parameter name with
// "sessionId", as Alibaba's CLI does for older responses.
func fixURL(u string) string { return strings.Replace(u, "sessionid=", "sessionId=", 1) }

// Dial starts a session (StartTerminalSession) and opens its first
// connection. Closing the Conn also ends the session. On any error,
// including ctx's end, the session is ended before Dial returns.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	// The per-instance limit is checked before any API call.
	if err := instanceConns.acquire(cfg.Region, cfg.InstanceID); err != nil {
		return nil, err
	}
	s, err := Start(ctx, cfg)
	if err != nil {
		instanceConns.release(cfg.Region, cfg.InstanceID)
		return nil, err
	}
	c, err := s.dial(ctx, true)
	if err != nil {
		s.Close()
		return nil, err
	}
	c.own = true
	return c, nil
}

// ID is the session id ("s-…").
func (s *Session) ID() string { return s.id }

// Dial opens one more connection to the target on this session (one
// websocket; the agent opens one TCP connection for it). It refuses a
// connection beyond InstanceSessionLimit open in this process for the
// same instance with an error matching ErrSessionLimit.
func (s *Session) Dial(ctx context.Context) (*Conn, error) { return s.dial(ctx, false) }

// dial opens a connection; acquired says the caller already counted it
// in instanceConns (it is released on every failure).
func (s *Session) dial(ctx context.Context, acquired bool) (*Conn, error) {
	if !acquired {
		if err := instanceConns.acquire(s.cfg.Region, s.cfg.InstanceID); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		instanceConns.release(s.cfg.Region, s.cfg.InstanceID)
		return nil, ErrClosed
	}
	s.dialed++
	idx := s.dialed
	s.mu.Unlock()
	d := websocket.Dialer{
		HandshakeTimeout: 30 * time.Second,
		Proxy:            http.ProxyFromEnvironment,
		ReadBufferSize:   16 << 10,
		WriteBufferSize:  MaxChunk + 64,
	}
	if s.cfg.RootCAs != nil {
		d.TLSClientConfig = &tls.Config{RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	}
	h := http.Header{}
	h.Set("x-acs-session-token", s.token)
	ws, resp, err := d.DialContext(ctx, s.url, h)
	if err != nil {
		instanceConns.release(s.cfg.Region, s.cfg.InstanceID)
		if err := ctxErr(ctx); err != nil {
			return nil, fmt.Errorf("aliyun: opening the session websocket: %w", err)
		}
		return nil, wsDialError(err, resp)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := newConn(ws, s, idx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		instanceConns.release(s.cfg.Region, s.cfg.InstanceID)
		return nil, ErrClosed
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c, nil
}

// WebsocketError is a refused websocket upgrade.
type WebsocketError struct {
	StatusCode int // HTTP status of the refusal; 0 if none
	Err        error
}

func (e *WebsocketError) Error() string {
	if e.StatusCode != 0 {
		hint := ""
		switch e.StatusCode {
		case http.StatusForbidden, http.StatusUnauthorized:
			hint = " (the WebSocketUrl is valid for 10 minutes and ends with the session: start a new session)"
		case http.StatusNotFound:
			hint = " (the session is unknown or ended)"
		case http.StatusTooManyRequests:
			hint = " (too many connections: at most 20 per instance)"
		}
		return fmt.Sprintf("aliyun: session websocket refused: HTTP %d%s", e.StatusCode, hint)
	}
	return fmt.Sprintf("aliyun: session websocket: %v", e.Err)
}

// Unwrap returns the dialer's error.
func (e *WebsocketError) Unwrap() error { return e.Err }

// Is matches ErrSessionLimit for an HTTP 429 refusal.
func (e *WebsocketError) Is(target error) bool {
	return target == ErrSessionLimit && e.StatusCode == http.StatusTooManyRequests
}

func wsDialError(err error, resp *http.Response) error {
	e := &WebsocketError{Err: err}
	if resp != nil {
		e.StatusCode = resp.StatusCode
		if resp.Body != nil {
			resp.Body.Close()
		}
	}
	return e
}

func (s *Session) connClosed(c *Conn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		instanceConns.release(s.cfg.Region, s.cfg.InstanceID)
	}
}

func (s *Session) remoteAddr() net.Addr {
	host := s.cfg.TargetServer
	if host == "" {
		host = s.cfg.InstanceID
	}
	return addr(net.JoinHostPort(host, strconv.Itoa(s.cfg.PortNumber)))
}

type addr string

func (a addr) Network() string { return "aliyun" }
func (a addr) String() string  { return string(a) }

// Close closes the session's connections and ends the session at the
// service (EndTerminalSession), bounded by CloseTimeout. Idempotent.
func (s *Session) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	return s.closeCtx(ctx)
}

func (s *Session) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Session) closeCtx(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeOnce.Do(func() {
		s.mu.Lock()
		conns := make([]*Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		_, err := s.api.EndTerminalSessionWithContext(ctx, &ecs.EndTerminalSessionRequest{
			RegionId:  dara.String(s.cfg.Region),
			SessionId: dara.String(s.id),
		}, &dara.RuntimeOptions{})
		if err != nil {
			s.closeErr = apiError("EndTerminalSession", err)
			s.log.Warn("aliyun: ending the session failed", "err", s.closeErr)
		} else {
			s.log.Info("aliyun: session ended")
		}
		s.closeIdle()
	})
	return s.closeErr
}

// instanceConns counts this process's open connections per instance.
var instanceConns = &connCounter{n: map[string]int{}}

type connCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *connCounter) acquire(region, instance string) error {
	k := region + "/" + instance
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k] >= InstanceSessionLimit {
		return fmt.Errorf("%w: %d connections to %s are open in this process; Session Manager connects at most %d per instance: close some or use fewer Sessions",
			ErrSessionLimit, c.n[k], instance, InstanceSessionLimit)
	}
	c.n[k]++
	return nil
}

func (c *connCounter) release(region, instance string) {
	k := region + "/" + instance
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k] > 0 {
		c.n[k]--
	}
	if c.n[k] == 0 {
		delete(c.n, k)
	}
}

// ctxErr is ctx.Err(), or DeadlineExceeded once ctx's deadline has passed
// (a network error caused by the deadline can come before ctx.Err is set).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// WebSocketURL is the session's WebSocketUrl. It carries the session's
// token: never log it.
func (s *Session) WebSocketURL() string { return s.url }
