package sshx

import (
	"context"
	"io"
	"testing"

	"github.com/jumpless/jumpless/internal/testenv"
	"golang.org/x/crypto/ssh"
)

// BenchmarkConnEcho measures round-trip throughput of one direct-tcpip
// connection through a real sshd to an echo server (bytes counted once).
func BenchmarkConnEcho(b *testing.B) {
	s := testenv.StartSSHD(b)
	echo := testenv.EchoServer(b)
	c, err := NewClient(context.Background(), dialTB(b, s.Addr), s.Addr, Config{User: s.User, Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	conn, err := c.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	chunk := make([]byte, 32<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, len(chunk))
		for i := 0; i < b.N; i++ {
			if _, err := io.ReadFull(conn, buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDialContext measures opening and closing a direct-tcpip channel.
func BenchmarkDialContext(b *testing.B) {
	s := testenv.StartSSHD(b)
	echo := testenv.EchoServer(b)
	c, err := NewClient(context.Background(), dialTB(b, s.Addr), s.Addr, Config{User: s.User, Signers: []ssh.Signer{s.ClientSigner}, HostKey: s.HostKey})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		conn, err := c.DialContext(context.Background(), "tcp", echo)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
