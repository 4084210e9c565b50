package aliyun_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const instance = "i-bp1emulated0000001"

// fast is the emulator with the agent's dial delay and pacing turned
// off, for functional tests; the default (measured) behaviour has its own
// tests.
func fast() aliyuntest.Config {
	return aliyuntest.Config{
		Instances: map[string]string{instance: "127.0.0.1"},
		DialDelay: -1,
		FlowLimit: aliyuntest.UnpacedRate,
	}
}

func newServer(t testing.TB, cfg aliyuntest.Config) *aliyuntest.Server {
	t.Helper()
	srv, err := aliyuntest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func config(srv *aliyuntest.Server, addr string) aliyun.Config {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return aliyun.Config{
		Region: srv.Region(), InstanceID: instance, PortNumber: n,
		Endpoint: srv.Endpoint(), Credential: srv.Credential(),
		HoldFirstWrite: 200 * time.Millisecond,
	}
}

// waitNoSessions fails unless the emulator has no session or connection
// open within 5 s.
func waitNoSessions(t testing.TB, srv *aliyuntest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := srv.WaitNoSessions(ctx); n != 0 {
		t.Fatalf("emulator still has sessions open: %v, stats %+v", srv.SessionIDs(), srv.Stats())
	}
}

func os_ErrDeadlineExceeded() error { return osErrDeadline }

var osErrDeadline = os.ErrDeadlineExceeded

// onConn retries a fault injection until it reached a connection: the
// emulator registers a websocket just after the handshake the client
// already saw complete.
func onConn(t testing.TB, f func() int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the emulator never saw the connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
