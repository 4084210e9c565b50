package ssmtest

import (
	"bytes"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// countConn records each Write (one per system call on a real socket).
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestHoldConnGathersHeldWritesInOrder(t *testing.T) {
	cc := &countConn{}
	hc := &holdConn{Conn: cc}
	if _, err := hc.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	hc.hold()
	for _, s := range []string{"b", "c", "d"} {
		if _, err := hc.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if len(cc.writes) != 1 {
		t.Fatalf("held writes reached the socket before release: %q", cc.writes)
	}
	if err := hc.release(); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Write([]byte("e")); err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "bcd", "e"}
	if len(cc.writes) != len(want) {
		t.Fatalf("socket writes %q, want %q", cc.writes, want)
	}
	for i, w := range want {
		if string(cc.writes[i]) != w {
			t.Fatalf("socket writes %q, want %q", cc.writes, want)
		}
	}
}

func TestHoldConnFlushesLargeHeldBatches(t *testing.T) {
	cc := &countConn{}
	hc := &holdConn{Conn: cc}
	hc.hold()
	frame := make([]byte, 1024)
	for range 2 * holdFlushAt / len(frame) {
		if _, err := hc.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if len(cc.writes) != 2 {
		t.Fatalf("%d socket writes while holding 128 KiB, want 2 (one per 64 KiB)", len(cc.writes))
	}
	if err := hc.release(); err != nil || len(cc.writes) != 2 {
		t.Fatalf("release: %v, %d writes (nothing left to write)", err, len(cc.writes))
	}
}

func TestHoldConnFailedFlushFailsLaterWrites(t *testing.T) {
	broken := errors.New("connection reset")
	cc := &countConn{err: broken}
	hc := &holdConn{Conn: cc}
	hc.hold()
	if _, err := hc.Write([]byte("x")); err != nil {
		t.Fatalf("held write = %v; want it gathered", err)
	}
	if err := hc.release(); !errors.Is(err, broken) {
		t.Fatalf("release = %v; want the socket's error", err)
	}
	if _, err := hc.Write([]byte("y")); !errors.Is(err, broken) {
		t.Fatalf("write after a failed flush = %v; want the socket's error", err)
	}
}

// TestHoldConnCloseSendsHeldWrites guards the service's last words: a
// frame gathered in a batch (channel_closed) when the connection is closed
// still leaves, as bytes written to a socket before close do.
func TestHoldConnCloseSendsHeldWrites(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	hc := &holdConn{Conn: a}
	hc.hold()
	if _, err := hc.Write([]byte("channel_closed")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := b.Read(buf)
		got <- string(buf[:n])
	}()
	if err := hc.Close(); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "channel_closed" {
		t.Fatalf("peer read %q before the close, want the held frame", s)
	}
}

// TestHoldConnCloseDoesNotWaitForBlockedWrite guards Close against a
// writer blocked on a peer that does not read: Close ends that write
// instead of waiting for it.
func TestHoldConnCloseDoesNotWaitForBlockedWrite(t *testing.T) {
	a, b := net.Pipe() // unbuffered: a write blocks until b reads
	defer b.Close()
	hc := &holdConn{Conn: a}
	wrote := make(chan error, 1)
	go func() {
		_, err := hc.Write([]byte("never read"))
		wrote <- err
	}()
	for hc.mu.TryLock() { // wait until the writer holds mu
		hc.mu.Unlock()
		runtime.Gosched()
	}
	closed := make(chan error, 1)
	go func() { closed <- hc.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a write blocked on a peer that does not read")
	}
	if err := <-wrote; err == nil {
		t.Fatal("the blocked write succeeded after Close; want an error")
	}
}

// TestHoldConnStopHoldingWritesThrough guards the session's end: after
// stopHolding (the service's channel_closed, then the TLS close_notify and
// a deadline) nothing waits in the batch for a release that may come too
// late to be written.
func TestHoldConnStopHoldingWritesThrough(t *testing.T) {
	cc := &countConn{}
	hc := &holdConn{Conn: cc}
	hc.hold()
	if _, err := hc.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := hc.stopHolding(); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Write([]byte("channel_closed")); err != nil {
		t.Fatal(err)
	}
	if len(cc.writes) != 2 || string(cc.writes[0]) != "data" || string(cc.writes[1]) != "channel_closed" {
		t.Fatalf("socket writes %q while still held after stopHolding; want [data channel_closed]", cc.writes)
	}
}
