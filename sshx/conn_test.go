package sshx

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"golang.org/x/crypto/ssh"
)

// closeWriter is what callers (the CLI's forwarder) assert for.
type closeWriter interface{ CloseWrite() error }

// tcpTarget starts a TCP server on 127.0.0.1:0 that runs handle for each
// accepted connection, then closes it. Listener and handlers are closed and
// waited for in t.Cleanup.
func tcpTarget(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	return testenv.TCPServer(t, func(c net.Conn) { handle(c.(*net.TCPConn)) })
}

// readAllThenReply is a target that reads until EOF, then writes back what
// it read and closes: without a half-close from the client it never
// replies.
func readAllThenReply(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return
	}
	c.Write(b)
}

func tunnelTo(t *testing.T, s *testenv.SSHD, addr string) net.Conn {
	t.Helper()
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	conn, err := c.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestCloseWriteSendsEOFAndKeepsReading guards half-close: every byte
// written before CloseWrite reaches the far end, then its EOF, and the
// reply sent after that EOF is still read. Without CloseWrite the target
// waits for EOF forever and the read times out.
func TestCloseWriteSendsEOFAndKeepsReading(t *testing.T) {
	s := testenv.StartSSHD(t)
	target := tcpTarget(t, readAllThenReply)
	conn := tunnelTo(t, s, target)
	cw, ok := conn.(closeWriter)
	if !ok {
		t.Fatalf("%T has no CloseWrite", conn)
	}
	// 3 MiB: more than the conn's buffer and the SSH channel window, so
	// CloseWrite must wait for queued data before sending the EOF.
	msg := make([]byte, 3<<20)
	rand.Read(msg)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(conn)
		got <- b
	}()
	for off := 0; off < len(msg); off += 50000 {
		end := min(off+50000, len(msg))
		if _, err := conn.Write(msg[off:end]); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("second CloseWrite: %v", err)
	}
	if _, err := conn.Write([]byte("late")); err == nil {
		t.Fatal("Write after CloseWrite succeeded")
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, msg) {
			t.Fatalf("reply after half-close: got %d bytes, want the %d written", len(b), len(msg))
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no reply: the far end never saw EOF")
	}
}

// TestWithoutCloseWriteTargetWaits is the control for the half-close
// test: the same target does not reply while the conn is only written to,
// so the test above cannot pass without the EOF.
func TestWithoutCloseWriteTargetWaits(t *testing.T) {
	s := testenv.StartSSHD(t)
	target := tcpTarget(t, readAllThenReply)
	conn := tunnelTo(t, s, target)
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read without half-close: n=%d err=%v, want a timeout", n, err)
	}
}

// TestFarEndEOFThenWriteStillWorks guards the other half-close: the far
// end sends a banner and shuts down its write side; Read returns the
// banner then io.EOF, and Write still reaches the far end.
func TestFarEndEOFThenWriteStillWorks(t *testing.T) {
	s := testenv.StartSSHD(t)
	received := make(chan []byte, 1)
	target := tcpTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write([]byte("banner"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		received <- b
	})
	conn := tunnelTo(t, s, target)
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil || string(b) != "banner" {
		t.Fatalf("read until far end EOF: %q, %v", b, err)
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := conn.Write([]byte("after your EOF")); err != nil {
		t.Fatalf("write after far end EOF: %v", err)
	}
	if err := conn.(closeWriter).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	select {
	case got := <-received:
		if string(got) != "after your EOF" {
			t.Fatalf("far end got %q", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("far end got nothing")
	}
}

// TestCloseDeliversWrittenData guards Close right after Write: data the
// Write accepted is sent before the channel closes, as with TCP.
func TestCloseDeliversWrittenData(t *testing.T) {
	s := testenv.StartSSHD(t)
	received := make(chan int, 1)
	target := tcpTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		received <- int(n)
	})
	conn := tunnelTo(t, s, target)
	msg := make([]byte, 1<<20)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
	select {
	case n := <-received:
		if n != len(msg) {
			t.Fatalf("far end got %d bytes, want %d", n, len(msg))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("far end never saw the close")
	}
}

// TestDeadlineInterruptsBlockedReadAndWrite guards deadlines set while a
// Read or Write is already blocked, and Close unblocking a Read.
func TestDeadlineInterruptsBlockedReadAndWrite(t *testing.T) {
	s := testenv.StartSSHD(t)
	stop := make(chan struct{})
	target := tcpTarget(t, func(c *net.TCPConn) { <-stop }) // never reads, never writes
	defer close(stop)
	conn := tunnelTo(t, s, target)

	errc := make(chan error, 1)
	go func() { _, err := conn.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked read: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read deadline set during a blocked Read did not fire")
	}

	// Fill the conn buffer, the channel window and the socket buffers
	// until Write blocks, then let the deadline end it.
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	chunk := make([]byte, 256<<10)
	var err error
	start := time.Now()
	for total := 0; err == nil && total < 1<<30; total += len(chunk) {
		_, err = conn.Write(chunk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a far end that does not read: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("write deadline took %v", d)
	}

	conn.SetReadDeadline(time.Time{})
	go func() { _, err := conn.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read during Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

// TestConcurrentWritesStayWhole guards concurrent Writes: each Write's
// bytes arrive contiguous, as with TCP.
func TestConcurrentWritesStayWhole(t *testing.T) {
	s := testenv.StartSSHD(t)
	target := tcpTarget(t, readAllThenReply)
	conn := tunnelTo(t, s, target)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	const writers, size = 4, 200 << 10 // each larger than the conn buffer
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn.Write(bytes.Repeat([]byte{'a' + byte(i)}, size))
		}()
	}
	wg.Wait()
	if err := conn.(closeWriter).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil || len(b) != writers*size {
		t.Fatalf("got %d bytes, %v", len(b), err)
	}
	for off := 0; off < len(b); off += size {
		if run := b[off : off+size]; bytes.Count(run, run[:1]) != size {
			t.Fatalf("writes interleaved at offset %d", off)
		}
	}
}

// TestDialClosedPortIsDialError guards the typed error for a target the
// bastion cannot reach: *DialError naming the address, ErrConnectFailed,
// and the *ssh.OpenChannelError still reachable with errors.As.
func TestDialClosedPortIsDialError(t *testing.T) {
	s := testenv.StartSSHD(t)
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, err = c.DialContext(context.Background(), "tcp", closed)
	var (
		de *DialError
		oc *ssh.OpenChannelError
		oe *net.OpError
	)
	if !errors.As(err, &de) || de.Addr != closed || de.Reason != ssh.ConnectionFailed {
		t.Fatalf("got %v (%T), want *DialError for %s", err, err, closed)
	}
	if !errors.Is(err, ErrConnectFailed) || errors.Is(err, ErrForwardingProhibited) {
		t.Fatalf("errors.Is: %v", err)
	}
	if !errors.As(err, &oc) || oc.Reason != ssh.ConnectionFailed {
		t.Fatalf("errors.As *ssh.OpenChannelError: %v", err)
	}
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Fatalf("errors.As *net.OpError: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"bastion could not connect to " + closed, "security group"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if c.Err() != nil {
		t.Fatalf("client broken by a refused dial: %v", c.Err())
	}
}

// TestPassphraseIgnoredForUnencryptedKey guards Config.Passphrase's
// documented behaviour: with an unencrypted key (OpenSSH or PEM format)
// it is ignored by Validate and NewClient.
func TestPassphraseIgnoredForUnencryptedKey(t *testing.T) {
	s := testenv.StartSSHD(t)
	for _, format := range []string{"", "PEM"} {
		path, pub := keygen(t, "ecdsa", format, "")
		s.AuthorizeKey(pub)
		cfg := Config{PrivateKeyFile: path, Passphrase: []byte("not-needed"), HostKey: s.HostKey}
		if err := cfg.Validate(); err != nil {
			t.Errorf("format %q: Validate: %v", format, err)
		}
		c := mustConnect(t, s, cfg)
		c.Close()
	}
}

// ringsHeld reports whether tc holds a pooled read or write ring.
func ringsHeld(tc *tunnelConn) (read, write bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.rbuf.bp != nil, tc.wbuf.bp != nil
}

// TestIdleConnHoldsRingBuffers guards lean idle connections: a connection
// that has moved data (a 1 MiB echo, so both rings were used) and is now
// idle holds no 64 KiB ring in either direction, and still works after.
func TestIdleConnHoldsRingBuffers(t *testing.T) {
	s := testenv.StartSSHD(t)
	conn := tunnelTo(t, s, testenv.EchoServer(t))
	tc := conn.(*tunnelConn)
	if r, w := ringsHeld(tc); r || w {
		t.Fatalf("fresh conn holds rings: read %v, write %v", r, w)
	}
	for round := range 2 {
		msg := make([]byte, 1<<20)
		rand.Read(msg)
		errc := make(chan error, 1)
		go func() { _, err := conn.Write(msg); errc <- err }()
		got := make([]byte, len(msg))
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(conn, got); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("round %d: echo differs", round)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, w := ringsHeld(tc)
			if !r && !w {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: idle conn still holds rings 10s after the echo: read %v, write %v", round, r, w)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
