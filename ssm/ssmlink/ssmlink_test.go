package ssmlink_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmlink"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const target = "i-0123456789abcdef0"

func emulator(t *testing.T, agentVersion string) *ssmtest.Server {
	t.Helper()
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: "127.0.0.1"}, AgentVersion: agentVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func listener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestPortModeMisreadsAgentVersion guards reference §8.1: mux above
// 3.0.196.0, smux keep-alive expected up to 3.1.1511.0.
func TestPortModeMisreadsAgentVersion(t *testing.T) {
	addr := listener(t)
	for _, c := range []struct {
		agent          string
		mux, keepAlive bool
	}{
		{"3.0.196.0", false, false},
		{"2.3.722.0", false, false},
		{"3.0.197.0", true, true},
		{"3.1.1511.0", true, true},
		{"3.1.1512.0", true, false},
		{ssmtest.DefaultAgentVersion, true, false},
	} {
		t.Run(c.agent, func(t *testing.T) {
			srv := emulator(t, c.agent)
			tr := ssmlink.New(ssm.Config{AWS: srv.AWSConfig(), Target: target})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			l, mode, err := tr.DialPort(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if mode.Mux != c.mux || mode.KeepAlive != c.keepAlive || mode.ConnectErrors == nil {
				t.Fatalf("agent %s: mode %+v; want mux %v, keep-alive %v, a ConnectErrors channel", c.agent, mode, c.mux, c.keepAlive)
			}
			if l.ID() == "" || l.RemoteAddr().String() != addr {
				t.Fatalf("ID %q, RemoteAddr %v", l.ID(), l.RemoteAddr())
			}
		})
	}
}

func TestForbiddenAddressNotTyped(t *testing.T) {
	srv := emulator(t, "")
	tr := ssmlink.New(ssm.Config{AWS: srv.AWSConfig(), Target: target})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, _, err := tr.DialPort(ctx, "169.254.169.254:80")
	if err == nil {
		defer l.Close()
		_, err = l.Read(make([]byte, 1))
	}
	var fe *link.ForbiddenError
	if !errors.As(err, &fe) || fe.Addr != "169.254.169.254:80" || fe.Reason != "Forwarding to IP address 169.254.169.254 is forbidden." {
		t.Fatalf("err = %v; want *link.ForbiddenError with the agent's words", err)
	}
	if err := l.Err(); !errors.Is(err, link.ErrForbidden) {
		t.Fatalf("Err = %v", err)
	}
}

func TestDialRejectsBadAddress(t *testing.T) {
	tr := ssmlink.New(ssm.Config{Target: target})
	for _, a := range []string{"db", "db:0", "db:70000", "db:x"} {
		if _, err := tr.Dial(context.Background(), a); err == nil {
			t.Errorf("Dial(%q) succeeded", a)
		}
		if _, _, err := tr.DialPort(context.Background(), a); err == nil {
			t.Errorf("DialPort(%q) succeeded", a)
		}
	}
}
