package aliyun_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/tunnel"
)

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// wrongKeys returns a credential the emulator does not know.
func wrongKeys(t *testing.T) aliyun.Config {
	other, err := aliyuntest.NewServer(aliyuntest.Config{Instances: fast().Instances})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	return aliyun.Config{Credential: other.Credential()}
}

// badInputCase is one bad input: how to spoil the Config, the sentinel
// the error must match, and the words of the fix it must carry.
type badInputCase struct {
	name  string
	spoil func(t *testing.T, c *aliyun.Config) // nil: spoiled by the mode
	want  error
	fix   string
}

var badInputs = []badInputCase{
	{"UnknownInstance", func(t *testing.T, c *aliyun.Config) { c.InstanceID = "i-bp1unknown00000000" }, aliyun.ErrInstanceNotFound, "check the instance id and the region"},
	{"WrongKeys", func(t *testing.T, c *aliyun.Config) { c.Credential = wrongKeys(t).Credential }, aliyun.ErrAuth, "check the access key id and secret"},
	{"SessionLimitReached", nil, aliyun.ErrSessionLimit, "close sessions or lower Sessions"},
	{"TargetPortClosed", nil, link.ErrConnect, "something listens there"},
}

// TestBadInputDirectModeIsTypedSaysWhatToFixLeavesNothing: in direct mode
// (one session per database connection, pgx through a Transport), each bad
// input is an error matching its sentinel whose text says what to fix,
// and afterwards the emulator has no session or connection open (goleak
// checks goroutines at the end of the package).
func TestBadInputDirectModeIsTypedSaysWhatToFixLeavesNothing(t *testing.T) {
	pg := testenv.PostgresAddr(t)
	_, pgPort, _ := net.SplitHostPort(pg)
	for _, bc := range badInputs {
		t.Run(bc.name, func(t *testing.T) {
			ecfg := fast()
			ecfg.SessionLimit = 2
			srv := newServer(t, ecfg)
			cfg := config(srv, pg)
			dsn := "postgres://postgres@127.0.0.1:" + pgPort + "/test?sslmode=disable&connect_timeout=20"
			var held []*aliyun.Conn
			switch bc.name {
			case "SessionLimitReached":
				echo := testenv.EchoServer(t)
				for range 2 {
					c, err := aliyun.Dial(context.Background(), config(srv, echo))
					if err != nil {
						t.Fatal(err)
					}
					held = append(held, c)
				}
			case "TargetPortClosed":
				_, p, _ := net.SplitHostPort(closedPort(t))
				dsn = "postgres://postgres@127.0.0.1:" + p + "/test?sslmode=disable&connect_timeout=20"
			default:
				bc.spoil(t, &cfg)
			}
			tr, err := aliyun.NewTransport(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dialer.ConnectPgx(tctx(t, 30*time.Second), tr, dsn)
			for _, c := range held {
				c.Close()
			}
			if !errors.Is(err, bc.want) || !strings.Contains(err.Error(), bc.fix) {
				t.Fatalf("err = %v; want %v saying %q", err, bc.want, bc.fix)
			}
			waitNoSessions(t, srv)
		})
	}
}

// TestBadInputSSHModeIsTypedSaysWhatToFixLeavesNothing: the same bad
// inputs through a tunnel in SSH mode (the session's port is sshd's; a
// closed one is the target port closed).
func TestBadInputSSHModeIsTypedSaysWhatToFixLeavesNothing(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	for _, bc := range badInputs {
		t.Run(bc.name, func(t *testing.T) {
			ecfg := fast()
			ecfg.SessionLimit = 2
			srv := newServer(t, ecfg)
			tcfg := sshTunnelConfig(srv, sshd, 1)
			cfg := config(srv, sshd.Addr)
			switch bc.name {
			case "SessionLimitReached":
				tcfg.Sessions = 3
			case "TargetPortClosed":
				cfg = config(srv, closedPort(t))
			default:
				bc.spoil(t, &cfg)
			}
			tcfg.DialBastion = func(ctx context.Context) (net.Conn, error) { return aliyun.Dial(ctx, cfg) }
			tun, err := tunnel.Open(tctx(t, 30*time.Second), tcfg)
			if err == nil {
				tun.Close()
			}
			if !errors.Is(err, bc.want) || !strings.Contains(err.Error(), bc.fix) {
				t.Fatalf("err = %v; want %v saying %q", err, bc.want, bc.fix)
			}
			waitNoSessions(t, srv)
		})
	}
}

// TestTunnelBeyondTheInstanceLimitIsRefusedBeforeTheAPI guards the
// "before" half of the 20-sessions-per-instance limit for a tunnel: one
// with Sessions above InstanceSessionLimit fails with ErrSessionLimit
// naming Sessions, without asking the API for the 21st session, and
// leaves nothing open.
func TestTunnelBeyondTheInstanceLimitIsRefusedBeforeTheAPI(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	ecfg := fast()
	ecfg.SessionLimit = 100 // the emulator would allow it: the refusal is the client's
	srv := newServer(t, ecfg)
	_, err := tunnel.Open(tctx(t, 60*time.Second), sshTunnelConfig(srv, sshd, aliyun.InstanceSessionLimit+1))
	if !errors.Is(err, aliyun.ErrSessionLimit) || !strings.Contains(err.Error(), "use fewer Sessions") {
		t.Fatalf("tunnel with %d sessions: %v", aliyun.InstanceSessionLimit+1, err)
	}
	if n := srv.Stats().APICalls["StartTerminalSession"]; n > int64(aliyun.InstanceSessionLimit) {
		t.Fatalf("%d StartTerminalSession calls: the client asked beyond the limit", n)
	}
	waitNoSessions(t, srv)
}

// TestDirectModeCancelDuringConnectLeavesNoSession: a database connection
// whose context ends while its session opens leaves no session behind.
func TestDirectModeCancelDuringConnectLeavesNoSession(t *testing.T) {
	tr, srv := directTransport(t)
	dsn := testenv.PostgresDSN(t)
	for _, d := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 80 * time.Millisecond, 200 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		conn, err := dialer.ConnectPgx(ctx, tr, dsn)
		cancel()
		if err == nil {
			bounded(func(c context.Context) { conn.Close(c) })
		}
	}
	waitNoSessions(t, srv)
	if srv.Stats().SessionsStarted == 0 {
		t.Fatal("no session was started: the test did not exercise the cleanup")
	}
}
