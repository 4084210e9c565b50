package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// BenchmarkDownloadRealistic measures download throughput through the
// emulator with the real agent's pacing (~0.7 MiB/s per session), with 4
// concurrent connections spread over 1, 2 or 4 sessions: the reason
// Config.Sessions exists. Figures belong in BENCHMARKS.md:
//
//	go test -run '^$' -bench DownloadRealistic -benchtime 1x ./tunnel
func BenchmarkDownloadRealistic(b *testing.B) {
	const conns, perConn = 4, 1 << 20
	source := startSource(b, perConn)
	for _, sessions := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			sshd := testenv.StartSSHD(b)
			srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: sshd.Addr}, Pacing: ssmtest.Realistic})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			cfg := ssmConfig(srv, sshd)
			cfg.Sessions = sessions
			tun, err := tunnel.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer tun.Close()
			b.SetBytes(conns * perConn)
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				for range conns {
					wg.Go(func() {
						c, err := tun.DialContext(context.Background(), "tcp", source)
						if err != nil {
							b.Error(err)
							return
						}
						defer c.Close()
						if n, err := io.Copy(io.Discard, c); err != nil || n != perConn {
							b.Errorf("read %d bytes, %v", n, err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}

// startSource serves n bytes to every connection, then closes it.
func startSource(b *testing.B, n int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	buf := make([]byte, n)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { c.Write(buf); c.Close() })
		}
	})
	return ln.Addr().String()
}
