package ssm_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

const testTarget = "i-0123456789abcdef0"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer is a TCP echo server on loopback. With banner set it speaks
// first, like an SSH server, then echoes.
type echoServer struct {
	ln     net.Listener
	banner []byte
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	got    int64 // bytes echoed
}

func startEcho(t testing.TB, banner []byte) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, banner: banner}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				if len(e.banner) > 0 {
					if _, err := c.Write(e.banner); err != nil {
						return
					}
				}
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						e.mu.Lock()
						e.got += int64(n)
						e.mu.Unlock()
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) echoed() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got
}

func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// newEmulator starts an emulator whose testTarget is addr.
func newEmulator(t testing.TB, cfg ssmtest.Config, addr string) *ssmtest.Server {
	t.Helper()
	if cfg.Targets == nil {
		cfg.Targets = map[string]string{testTarget: addr}
	}
	srv, err := ssmtest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// clientConfig is the Config for srv, built without the environment.
func clientConfig(srv *ssmtest.Server) ssm.Config {
	return ssm.Config{
		AWS:     srv.AWSConfig(),
		RootCAs: srv.CertPool(),
		Target:  testTarget,
	}
}

func dial(t testing.TB, cfg ssm.Config) *ssm.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := ssm.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return s
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// randomReader is a fast deterministic source of random bytes.
type randomReader struct{ r *rand.ChaCha8 }

func newRandom(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return &randomReader{rand.NewChaCha8(s)}
}

func (r *randomReader) Read(p []byte) (int, error) {
	_, _ = r.r.Read(p)
	return len(p), nil
}

// echoTransfer writes n random bytes to conn and reads the echo back
// concurrently, comparing SHA-256 of both; onProgress is called with the
// bytes read so far after every read. It fails when nothing was echoed back
// for idle: a hang, not a loaded host's slow progress (the deadline moves
// with every read).
func echoTransfer(t testing.TB, conn net.Conn, n int64, idle time.Duration, onProgress func(int64)) {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(idle)); err != nil {
		t.Fatal(err)
	}
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, io.TeeReader(io.LimitReader(newRandom(7), n), sent))
		werr <- err
	}()
	got := sha256.New()
	buf := make([]byte, 64<<10)
	var total int64
	for total < n {
		k, err := conn.Read(buf[:min(int64(len(buf)), n-total)])
		got.Write(buf[:k])
		total += int64(k)
		if k > 0 {
			conn.SetDeadline(time.Now().Add(idle)) // reads and the writer's writes
		}
		if onProgress != nil {
			onProgress(total)
		}
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", total, n, err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(sent.Sum(nil)) != string(got.Sum(nil)) {
		t.Fatalf("sha256 of echoed bytes differs from what was sent (%d bytes)", n)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
