package ssmtest

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
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
