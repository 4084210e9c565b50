package tunnel_test

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkThroughput compares one connection through jumpless (emulator
// Unpaced, one session) with plain x/crypto/ssh direct-tcpip over TCP to
// the same sshd, both directions, one op = 1 MiB. CPU-s/GiB is the whole
// test process (client, emulator and the byte source/sink; sshd is a
// separate process), so it over-states the client's own share.
//
//	go test -run '^$' -bench Throughput -benchtime 64x -count 3 ./tunnel
func BenchmarkThroughput(b *testing.B) {
	const chunk = 1 << 20
	sshd := testenv.StartSSHD(b)
	source := testenv.TCPServer(b, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	var sunk atomic.Int64
	sink := testenv.TCPServer(b, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			sunk.Add(int64(k))
			if err != nil {
				return
			}
		}
	})
	dialers := []struct {
		name string
		open func(b *testing.B) (func(ctx context.Context, network, addr string) (net.Conn, error), func())
	}{
		{"ssh-direct", func(b *testing.B) (func(context.Context, string, string) (net.Conn, error), func()) {
			nc, err := net.Dial("tcp", sshd.Addr)
			if err != nil {
				b.Fatal(err)
			}
			c, err := sshx.NewClient(context.Background(), nc, sshd.Addr, sshx.Config{User: sshd.User, Signers: []ssh.Signer{sshd.ClientSigner}, HostKey: sshd.HostKey})
			if err != nil {
				b.Fatal(err)
			}
			return c.DialContext, func() { c.Close() }
		}},
		{"jumpless", func(b *testing.B) (func(context.Context, string, string) (net.Conn, error), func()) {
			srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr}})
			if err != nil {
				b.Fatal(err)
			}
			tun, err := tunnel.Open(context.Background(), ssmConfig(srv, sshd))
			if err != nil {
				b.Fatal(err)
			}
			return tun.DialContext, func() { tun.Close(); srv.Close() }
		}},
	}
	for _, dir := range []string{"down", "up"} {
		for _, d := range dialers {
			b.Run(dir+"/"+d.name, func(b *testing.B) {
				dial, closeFn := d.open(b)
				defer closeFn()
				addr := source
				if dir == "up" {
					addr = sink
				}
				c, err := dial(context.Background(), "tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, 64<<10)
				if dir == "down" { // warm up
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(chunk)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				base := sunk.Load()
				for range b.N {
					if dir == "down" {
						if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, chunk), buf); err != nil {
							b.Fatal(err)
						}
						continue
					}
					for off := 0; off < chunk; off += len(buf) {
						if _, err := c.Write(buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				if dir == "up" {
					for sunk.Load()-base < int64(b.N)*chunk {
						time.Sleep(100 * time.Microsecond)
					}
				}
				b.StopTimer()
				cpu := cpuTime() - cpu0
				b.ReportMetric(cpu.Seconds()/(float64(b.N)*chunk/(1<<30)), "CPU-s/GiB")
			})
		}
	}
}
