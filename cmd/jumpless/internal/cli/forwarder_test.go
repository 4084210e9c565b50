package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestForwarderCopiesBothWaysAndCloseLeavesNothing guards the forwarder's
// data path (half-close included), its counters, and that close ends every
// connection and goroutine (goleak in TestMain).
func TestForwarderCopiesBothWaysAndCloseLeavesNothing(t *testing.T) {
	echo := testenv.EchoServer(t)
	specs := []forwardSpec{{Listen: "127.0.0.1:0", Remote: echo}}
	lns, err := listen(specs)
	if err != nil {
		t.Fatal(err)
	}
	var errOut syncBuf
	fw := newForwarder(&net.Dialer{}, specs, lns, &errOut, "forward")
	addr := fw.addrs()[0]

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("jumpless"), 10000)
	go func() {
		c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	c.Close()

	// One connection left open across close.
	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.Write([]byte("x"))
	buf := make([]byte, 1)
	open.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(open, buf); err != nil {
		t.Fatal(err)
	}
	fw.close()
	if _, err := open.Read(buf); err == nil {
		t.Error("connection still open after close")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after close")
	}
	if fw.total.Load() != 2 || fw.sent.Load() != int64(len(msg)+1) || fw.received.Load() != int64(len(msg)+1) {
		t.Errorf("counters: total %d sent %d received %d", fw.total.Load(), fw.sent.Load(), fw.received.Load())
	}
	if s := fw.summary(); !strings.HasPrefix(s, "2 connections, sent 80.0 kB") {
		t.Errorf("summary %q", s)
	}
}

type failDialer struct{}

func (failDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, errors.New("administratively prohibited: open failed")
}

// TestForwarderReportsFailedDialOnOneLine guards the message for a
// connection the far side refuses; the local connection is closed.
func TestForwarderReportsFailedDialOnOneLine(t *testing.T) {
	specs := []forwardSpec{{Listen: "127.0.0.1:0", Remote: "db.internal:5432"}}
	lns, err := listen(specs)
	if err != nil {
		t.Fatal(err)
	}
	var errOut syncBuf
	fw := newForwarder(failDialer{}, specs, lns, &errOut, "forward")
	defer fw.close()
	c, err := net.Dial("tcp", fw.addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded")
	}
	want := "to db.internal:5432 failed: administratively prohibited: open failed\n"
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(errOut.String(), want) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := errOut.String(); !strings.HasPrefix(got, "jumpless: forward: connection from 127.0.0.1:") || !strings.HasSuffix(got, want) {
		t.Errorf("stderr %q", got)
	}
}

// TestListenFailureClosesEarlierListeners guards that a port in use is a
// clear error and leaves nothing listening.
func TestListenFailureClosesEarlierListeners(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = listen([]forwardSpec{{Listen: "127.0.0.1:0", Remote: "a:1"}, {Listen: busy.Addr().String(), Remote: "b:2"}})
	if err == nil || !strings.Contains(err.Error(), "cannot listen on "+busy.Addr().String()+": bind: address already in use") {
		t.Fatalf("err = %v", err)
	}
}
