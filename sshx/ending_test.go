package sshx

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/internal/testenv"
)

// verifyNoLeaks checks, after every other cleanup of the test, that the
// test left no goroutine behind.
func verifyNoLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// errPathBroke is the transport failure breakConn injects.
var errPathBroke = errors.New("test: path broke")

// breakConn is a transport whose reads can be frozen (nothing delivered,
// nothing closed) and then broken (reads fail with errPathBroke).
type breakConn struct {
	net.Conn
	mu      sync.Mutex
	frozen  bool
	broken  bool
	changed chan struct{}
}

func newBreakConn(c net.Conn) *breakConn { return &breakConn{Conn: c, changed: make(chan struct{})} }

func (b *breakConn) set(f func()) {
	b.mu.Lock()
	f()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *breakConn) freeze() { b.set(func() { b.frozen = true }) }
func (b *breakConn) break_() { b.set(func() { b.broken = true }) }

func (b *breakConn) Read(p []byte) (int, error) {
	for {
		b.mu.Lock()
		broken, frozen, ch := b.broken, b.frozen, b.changed
		b.mu.Unlock()
		if broken {
			return 0, errPathBroke
		}
		if !frozen {
			n, err := b.Conn.Read(p)
			b.mu.Lock()
			broken = b.broken
			b.mu.Unlock()
			if broken {
				return 0, errPathBroke
			}
			return n, err
		}
		<-ch
	}
}

func (b *breakConn) Close() error {
	b.break_()
	return b.Conn.Close()
}

// startDownload serves an endless byte stream to every connection.
func startDownload(t *testing.T) string {
	return testenv.TCPServer(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// readUntilError reads from c until an error and returns it with the byte
// count.
func readUntilError(c net.Conn) (int64, error) {
	n, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy reports the far end's io.EOF as nil
	}
	return n, err
}

// TestTransportLossIsNeverEOF guards the loud end of a lost SSH
// connection: an open conn mid-download, an idle conn and a dial in flight
// all fail with an error matching ErrConnectionLost that wraps the
// transport's own error — never io.EOF, which would make a cut-off stream
// look complete — and Err names the cause.
func TestTransportLossIsNeverEOF(t *testing.T) {
	verifyNoLeaks(t)
	s := testenv.StartSSHD(t)
	download := startDownload(t)
	echo := testenv.EchoServer(t)
	bc := newBreakConn(dial(t, s.Addr))
	c, err := NewClient(context.Background(), bc, s.Addr, Config{
		User: s.User, Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey, KeepaliveInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dl, err := c.DialContext(context.Background(), "tcp", download)
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	idle, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	roundTrip(t, idle, "x")

	type result struct {
		n   int64
		err error
	}
	dlRes := make(chan result, 1)
	go func() { n, err := readUntilError(dl); dlRes <- result{n, err} }()
	idleRes := make(chan error, 1)
	go func() { _, err := idle.Read(make([]byte, 1)); idleRes <- err }()
	time.Sleep(200 * time.Millisecond) // the download is flowing

	// Freeze the path, start a dial that cannot be answered, then break
	// the path.
	bc.freeze()
	dialRes := make(chan error, 1)
	go func() {
		conn, err := c.DialContext(context.Background(), "tcp", echo)
		if conn != nil {
			conn.Close()
		}
		dialRes <- err
	}()
	time.Sleep(200 * time.Millisecond)
	broke := time.Now()
	bc.break_()

	check := func(what string, err error) {
		t.Helper()
		if err == nil || err == io.EOF || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v; want a loud error, never io.EOF", what, err)
			return
		}
		if !errors.Is(err, ErrConnectionLost) || !errors.Is(err, errPathBroke) {
			t.Errorf("%s: %v; want ErrConnectionLost wrapping the transport's error", what, err)
		}
	}
	wait := func(what string) {
		if d := time.Since(broke); d > 2*time.Second {
			t.Errorf("%s: took %v after the path broke", what, d)
		}
	}
	r := <-dlRes
	wait("download")
	if r.n == 0 {
		t.Error("download read nothing before the break")
	}
	check("download Read", r.err)
	check("idle Read", <-idleRes)
	wait("idle")
	check("dial in flight", <-dialRes)
	wait("dial")
	<-c.Done()
	check("Err", c.Err())
	_, err = c.DialContext(context.Background(), "tcp", echo)
	check("new dial", err)
	if _, err := idle.Write([]byte("x")); err == nil {
		t.Error("Write on a lost connection succeeded")
	} else {
		check("idle Write", err)
	}
}

// TestKeepaliveTimeoutReachesConns guards the keepalive ending: open
// conns fail with ErrKeepaliveTimeout, not io.EOF.
func TestKeepaliveTimeoutReachesConns(t *testing.T) {
	verifyNoLeaks(t)
	s := testenv.StartSSHD(t)
	echo := testenv.EchoServer(t)
	bc := newBreakConn(dial(t, s.Addr))
	c, err := NewClient(context.Background(), bc, s.Addr, Config{
		User: s.User, Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey,
		KeepaliveInterval: 100 * time.Millisecond, KeepaliveTimeout: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	idle, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	roundTrip(t, idle, "x")
	bc.freeze()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = idle.Read(make([]byte, 1))
	if err == io.EOF || !errors.Is(err, ErrKeepaliveTimeout) {
		t.Fatalf("idle Read: %v; want ErrKeepaliveTimeout", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrKeepaliveTimeout) {
		t.Fatalf("Err = %v", c.Err())
	}
}

// TestFarEndCloseReadsEverythingThenEOF guards the one meaning of io.EOF:
// the far end closed the connection after sending; every byte arrives.
func TestFarEndCloseReadsEverythingThenEOF(t *testing.T) {
	verifyNoLeaks(t)
	s := testenv.StartSSHD(t)
	const size = 4 << 20
	src := testenv.TCPServer(t, func(c net.Conn) {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		c.Write(buf)
		c.Close()
	})
	c := mustConnect(t, s, Config{Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	defer c.Close()
	conn, err := c.DialContext(context.Background(), "tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("ReadAll: %v after %d bytes", err, len(got))
	}
	if len(got) != size {
		t.Fatalf("read %d bytes, want %d", len(got), size)
	}
	for i := range got {
		if got[i] != byte(i*7) {
			t.Fatalf("byte %d differs", i)
		}
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end: %v, want io.EOF", err)
	}
}
