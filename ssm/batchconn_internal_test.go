package ssm

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// recordConn records each Write it receives.
type recordConn struct {
	net.Conn
	writes [][]byte
	err    error
}

func (c *recordConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestBatchConnSendsHeldFramesInOneWrite(t *testing.T) {
	rc := &recordConn{}
	bc := newBatchConn(rc)
	bc.hold()
	for _, f := range []string{"ack1", "data1", "data2"} {
		if n, err := bc.Write([]byte(f)); err != nil || n != len(f) {
			t.Fatalf("Write(%q) = %d, %v", f, n, err)
		}
	}
	if len(rc.writes) != 0 {
		t.Fatalf("held frames reached the socket before release: %q", rc.writes)
	}
	if err := bc.release(); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 1 || string(rc.writes[0]) != "ack1data1data2" {
		t.Fatalf("socket writes = %q, want one write of the three frames in order", rc.writes)
	}
}

func TestBatchConnWritesThroughWhenNotHeld(t *testing.T) {
	rc := &recordConn{}
	bc := newBatchConn(rc)
	for _, f := range []string{"handshake", "ping"} {
		if _, err := bc.Write([]byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	if len(rc.writes) != 2 {
		t.Fatalf("socket writes = %q, want each write sent at once", rc.writes)
	}
}

func TestBatchConnFlushesLargeBatchesEarly(t *testing.T) {
	rc := &recordConn{}
	bc := newBatchConn(rc)
	bc.hold()
	frame := bytes.Repeat([]byte{1}, 1024)
	for range batchFlushAt/len(frame) + 1 {
		if _, err := bc.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if len(rc.writes) != 1 || len(rc.writes[0]) != batchFlushAt {
		t.Fatalf("got %d socket writes before release, want one of %d bytes", len(rc.writes), batchFlushAt)
	}
	if err := bc.release(); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 2 || len(rc.writes[1]) != len(frame) {
		t.Fatalf("release wrote %d writes, want the remaining frame", len(rc.writes))
	}
}

func TestBatchConnFailedFlushFailsLaterWrites(t *testing.T) {
	broken := errors.New("broken pipe")
	rc := &recordConn{}
	bc := newBatchConn(rc)
	bc.hold()
	if _, err := bc.Write([]byte("frame")); err != nil {
		t.Fatal(err)
	}
	rc.err = broken
	if err := bc.release(); !errors.Is(err, broken) {
		t.Fatalf("release = %v, want the socket's error", err)
	}
	if _, err := bc.Write([]byte("ping")); !errors.Is(err, broken) {
		t.Fatalf("Write after a failed flush = %v, want the socket's error", err)
	}
}
