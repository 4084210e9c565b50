package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// EchoServer starts a TCP echo server on 127.0.0.1:0 and returns its
// address. Every accepted connection gets back the bytes it sends until it
// half-closes or closes. The listener, all connections and all goroutines
// are closed and waited for in t.Cleanup.
func EchoServer(t testing.TB) string {
	t.Helper()
	return TCPServer(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	})
}

// TCPServer starts a TCP server on 127.0.0.1:0 that runs handle for each
// accepted connection (see Serve) and returns its address.
func TCPServer(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	Serve(t, ln, handle)
	return ln.Addr().String()
}

// Serve accepts connections on ln and runs handle for each in its own
// goroutine, closing the connection when handle returns. In t.Cleanup the
// listener and all open connections are closed (which is how a blocked
// handle is told to return) and all goroutines are waited for.
func Serve(t testing.TB, ln net.Listener, handle func(c net.Conn)) {
	t.Helper()
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				handle(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		ln.Close()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
