package portmux_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/xtaci/smux"
	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/portmux"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a net.Conn that records what the client writes.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.buf.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf.Bytes()...)
}

// agent is an smux v1 server playing the agent: each stream is served by
// serve.
func agent(t *testing.T, c net.Conn, serve func(*smux.Stream)) *smux.Session {
	t.Helper()
	cfg := smux.DefaultConfig()
	cfg.Version = 1
	cfg.KeepAliveDisabled = true
	s, err := smux.Server(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			st, err := s.AcceptStream()
			if err != nil {
				return
			}
			wg.Go(func() { serve(st) })
		}
	})
	t.Cleanup(func() { s.Close(); wg.Wait() })
	return s
}

func echo(st *smux.Stream) { io.Copy(st, st); st.Close() }

// client starts a portmux session on l (cfg.Addr "db:5432" when empty),
// closed when the test ends.
func client(t *testing.T, l net.Conn, cfg portmux.Config) *portmux.Session {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "db:5432"
	}
	s, err := portmux.Client(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// open opens a stream of s, closed when the test ends.
func open(t *testing.T, s *portmux.Session) *portmux.Conn {
	t.Helper()
	c, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStreamIDsNotOddFromThree(t *testing.T) {
	a, b := net.Pipe()
	rec := &recorder{Conn: a}
	agent(t, b, echo)
	s := client(t, rec, portmux.Config{})
	for range 2 {
		c, err := s.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hi" {
			t.Fatalf("echo %q %v", got, err)
		}
		c.Close()
	}
	w := rec.bytes()
	// smux v1 frames: ver | cmd | len LE16 | sid LE32. First SYN: stream 3.
	if len(w) < 8 || !bytes.Equal(w[:8], []byte{1, 0, 0, 0, 3, 0, 0, 0}) {
		t.Fatalf("first frame % x; want SYN of stream 3 (01 00 0000 03000000)", w[:min(8, len(w))])
	}
	var ids []uint32
	for i := 0; i+8 <= len(w); {
		if w[i] != 1 {
			t.Fatalf("frame at %d has version %d; want 1", i, w[i])
		}
		if w[i+1] == 3 {
			t.Fatalf("client sent a keep-alive NOP with KeepAlive off")
		}
		n := int(w[i+2]) | int(w[i+3])<<8
		sid := uint32(w[i+4]) | uint32(w[i+5])<<8 | uint32(w[i+6])<<16 | uint32(w[i+7])<<24
		if w[i+1] == 0 {
			ids = append(ids, sid)
		}
		i += 8 + n
	}
	if len(ids) != 2 || ids[0] != 3 || ids[1] != 5 {
		t.Fatalf("SYN stream ids %v; want [3 5]", ids)
	}
}

func TestConnectToPortErrorReadAsEOF(t *testing.T) {
	a, b := net.Pipe()
	flags := make(chan struct{}, 4)
	// The agent's answer to a failed dial: the flag (on the data
	// channel), then the stream's FIN.
	agent(t, b, func(st *smux.Stream) {
		flags <- struct{}{}
		st.Close()
	})
	s := client(t, a, portmux.Config{SessionID: "s-1", ConnectErrors: flags})
	c := open(t, s)
	_, err := c.Read(make([]byte, 1))
	var ce *link.ConnectError
	if !errors.As(err, &ce) || ce.Addr != "db:5432" || ce.SessionID != "s-1" {
		t.Fatalf("Read = %v; want *link.ConnectError for db:5432", err)
	}
	if err := c.Ready(context.Background()); !errors.Is(err, link.ErrConnect) {
		t.Fatalf("Ready = %v", err)
	}
	if st := s.Stats(); st.ConnectErrors != 1 {
		t.Fatalf("Stats.ConnectErrors = %d", st.ConnectErrors)
	}
}

func TestTargetCloseWithoutFlagIsEOF(t *testing.T) {
	a, b := net.Pipe()
	agent(t, b, func(st *smux.Stream) { st.Write([]byte("bye")); st.Close() })
	s := client(t, a, portmux.Config{ConnectErrorWait: 10 * time.Millisecond})
	c := open(t, s)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want bye and a clean EOF (the target closed)", got, err)
	}
}

func TestDeadLinkReadsAsEOF(t *testing.T) {
	a, b := net.Pipe()
	agent(t, b, func(st *smux.Stream) { st.Write([]byte("x")) })
	s := client(t, a, portmux.Config{})
	c := open(t, s)
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	b.Close() // the session's byte stream ends
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, portmux.ErrSessionDown) {
		t.Fatalf("Read after the link died = %v; want ErrSessionDown, never io.EOF", err)
	}
	if _, err := c.Write([]byte("y")); !errors.Is(err, portmux.ErrSessionDown) {
		t.Fatalf("Write after the link died = %v; want ErrSessionDown", err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session not done after its link died")
	}
}

func TestCloseWriteSendsFIN(t *testing.T) {
	a, b := net.Pipe()
	rec := &recorder{Conn: a}
	agent(t, b, echo)
	s := client(t, rec, portmux.Config{})
	c := open(t, s)
	before := len(rec.bytes())
	if err := c.CloseWrite(); !errors.Is(err, portmux.ErrNoHalfClose) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CloseWrite = %v", err)
	}
	if after := len(rec.bytes()); after != before {
		t.Fatalf("CloseWrite wrote %d bytes (a FIN would close the target completely)", after-before)
	}
}

func TestStalledStreamFreezesSession(t *testing.T) {
	a, b := net.Pipe()
	const big = 6 << 20 // more than smux's 4 MiB session buffer
	agent(t, b, func(st *smux.Stream) {
		var cmd [1]byte
		if _, err := io.ReadFull(st, cmd[:]); err != nil {
			return
		}
		if cmd[0] == 'B' {
			st.Write(make([]byte, big))
		}
		io.Copy(st, st)
	})
	s := client(t, a, portmux.Config{})
	stalled, _ := s.Open(context.Background())
	defer stalled.Close()
	stalled.Write([]byte("B")) // 6 MiB that nobody reads for now
	other, _ := s.Open(context.Background())
	defer other.Close()
	other.Write([]byte("e"))
	for i := range 20 {
		other.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := other.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(other, got); err != nil || string(got) != "ping" {
			t.Fatalf("round trip %d on a second stream while the first is unread: %q %v", i, got, err)
		}
	}
	n, err := io.CopyN(io.Discard, stalled, big)
	if err != nil || n != big {
		t.Fatalf("stalled stream: %d bytes, %v; want %d", n, err, big)
	}
}

func TestReadDeadlineIgnoredByBlockedRead(t *testing.T) {
	a, b := net.Pipe()
	agent(t, b, echo)
	s := client(t, a, portmux.Config{})
	c := open(t, s)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline = %v", err)
	}
	c.SetReadDeadline(time.Time{})
	go func() { time.Sleep(100 * time.Millisecond); c.SetDeadline(time.Now()) }()
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Read after SetDeadline(now) = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("blocked Read returned after %v", d)
	}
	c.SetDeadline(time.Time{})
	c.Write([]byte("z"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("Read after clearing the deadline: %v", err)
	}
}
