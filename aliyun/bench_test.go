package aliyun_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/internal/testenv"
)

// download opens one connection to a target that sends size bytes and
// returns how long the bytes took from the first to the last.
func download(b *testing.B, cfg aliyun.Config, size int) time.Duration {
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 32<<10)
	n, err := c.Read(buf)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := io.ReadFull(c, make([]byte, size-n)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start) * time.Duration(size) / time.Duration(size-n)
}

// BenchmarkDefaultPacingDownload measures, in one run, one connection's
// download through the emulated agent at its default pacing (no flow
// limit: 2048 B per 83 ms; the real agent measured 24.3 KB/s) and 8
// connections in parallel, each its own session. Metrics: KB/s of one,
// KB/s of 8, and their ratio.
//
//	go test -run '^$' -bench DefaultPacingDownload -benchtime 1x ./aliyun/
func BenchmarkDefaultPacingDownload(b *testing.B) {
	srv := newServer(b, aliyuntest.Config{Instances: map[string]string{instance: "127.0.0.1"}})
	benchPacing(b, srv)
}

// BenchmarkRealAgentDefaultPacingDownload is the same through Alibaba's
// real agent (root and ../shared/peers/aliyun needed).
//
//	go test -run '^$' -bench RealAgentDefaultPacingDownload -benchtime 1x ./aliyun/
func BenchmarkRealAgentDefaultPacingDownload(b *testing.B) {
	benchPacing(b, startRealAgent(b, 0))
}

func benchPacing(b *testing.B, srv *aliyuntest.Server) {
	const size = 192 << 10
	payload := make([]byte, size)
	addr := testenv.TCPServer(b, func(c net.Conn) {
		c.Write(payload)
		io.Copy(io.Discard, c)
	})
	cfg := config(srv, addr)
	cfg.HoldFirstWrite = -1
	for range b.N {
		one := download(b, cfg, size)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var slowest time.Duration
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := download(b, cfg, size)
				mu.Lock()
				slowest = max(slowest, d)
				mu.Unlock()
			}()
		}
		wg.Wait()
		oneKB := float64(size) / one.Seconds() / 1000
		eightKB := float64(8*size) / slowest.Seconds() / 1000
		b.ReportMetric(oneKB, "KB/s-1conn")
		b.ReportMetric(eightKB, "KB/s-8conns")
		b.ReportMetric(eightKB/oneKB, "x-8vs1")
	}
}
