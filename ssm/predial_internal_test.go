package ssm

import (
	"context"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestStreamGuessNamesWrongHost(t *testing.T) {
	for _, tc := range []struct {
		cfg          Config
		scheme, addr string
		ok           bool
	}{
		{Config{AWS: aws.Config{Region: "eu-west-1"}}, "wss", "ssmmessages.eu-west-1.amazonaws.com:443", true},
		{Config{Endpoint: "https://ssm.us-east-1.amazonaws.com"}, "wss", "ssmmessages.us-east-1.amazonaws.com:443", true},
		{Config{AWS: aws.Config{BaseEndpoint: aws.String("http://127.0.0.1:4566")}}, "ws", "127.0.0.1:4566", true},
		{Config{Endpoint: "https://vpce-1.ssm.eu-west-1.vpce.amazonaws.com"}, "wss", "vpce-1.ssm.eu-west-1.vpce.amazonaws.com:443", true},
		{Config{API: nil}, "", "", false},
	} {
		scheme, addr, ok := streamGuess(&tc.cfg)
		if scheme != tc.scheme || addr != tc.addr || ok != tc.ok {
			t.Errorf("streamGuess(%+v) = %q, %q, %v; want %q, %q, %v", tc.cfg.Endpoint, scheme, addr, ok, tc.scheme, tc.addr, tc.ok)
		}
	}
}

// TestPredialUsedForOtherHost guards the fallback: a pre-dialed connection
// is handed over only for the StreamUrl's own host, scheme and port, and is
// closed by discard otherwise.
func TestPredialUsedForOtherHost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	cfg := Config{Endpoint: "http://" + ln.Addr().String()}
	p := startPredial(context.Background(), &cfg)
	if p == nil {
		t.Fatal("no predial for an http endpoint")
	}
	srvConn := <-accepted
	defer srvConn.Close()
	for _, u := range []string{
		"wss://" + ln.Addr().String() + "/v1/data-channel/s?role=publish_subscribe",
		"ws://127.0.0.2:1/v1/data-channel/s",
	} {
		if _, _, ok := p.take(context.Background(), u); ok {
			t.Fatalf("take(%q) handed over a connection to %s", u, p.addr)
		}
	}
	p.discard()
	// The unused connection is closed: the server side reads EOF.
	if _, err := srvConn.Read(make([]byte, 1)); err == nil {
		t.Fatal("pre-dialed connection still open after discard")
	}
	q := startPredial(context.Background(), &cfg)
	defer q.discard()
	c2 := <-func() chan net.Conn {
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		return accepted
	}()
	defer c2.Close()
	conn, bc, ok := q.take(context.Background(), "ws://"+ln.Addr().String()+"/v1/data-channel/s")
	if !ok || conn == nil || bc == nil {
		t.Fatal("take refused the StreamUrl of the pre-dialed host")
	}
	conn.Close()
}
