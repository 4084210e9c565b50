package ssm_test

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

const benchChunk = 1 << 20 // bytes per benchmark op

// startSource serves an endless byte stream to every connection.
func startSource(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// startSink counts the bytes it receives.
func startSink(b *testing.B, n *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					k, err := c.Read(buf)
					n.Add(int64(k))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

var pacings = []ssmtest.Pacing{ssmtest.Unpaced, ssmtest.Realistic}

// BenchmarkDownload measures target → client throughput (one op = 1 MiB).
// For Realistic it also reports the share of the emulated agent's pacing
// ceiling (1024 B per ssmtest.RealisticMessagePeriod).
func BenchmarkDownload(b *testing.B) {
	for _, p := range pacings {
		b.Run(p.String(), func(b *testing.B) {
			srv := newEmulator(b, ssmtest.Config{Pacing: p}, startSource(b))
			cfg := clientConfig(srv)
			cfg.HoldFirstWrite = -1
			s := dial(b, cfg)
			defer s.Close()
			// Let the first message arrive before timing.
			if _, err := io.ReadFull(s, make([]byte, 1024)); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(s, benchChunk), buf); err != nil {
					b.Fatal(err)
				}
			}
			el := time.Since(start)
			b.StopTimer()
			if p == ssmtest.Realistic {
				ceiling := float64(ssmtest.DefaultChunkSize) / ssmtest.RealisticMessagePeriod.Seconds()
				b.ReportMetric(100*float64(b.N)*benchChunk/el.Seconds()/ceiling, "%ceiling")
			}
		})
	}
}

// BenchmarkUpload measures client → target throughput (one op = 1 MiB,
// counted when the target has received it).
func BenchmarkUpload(b *testing.B) {
	for _, p := range pacings {
		b.Run(p.String(), func(b *testing.B) {
			var got atomic.Int64
			srv := newEmulator(b, ssmtest.Config{Pacing: p}, startSink(b, &got))
			cfg := clientConfig(srv)
			cfg.HoldFirstWrite = -1
			s := dial(b, cfg)
			defer s.Close()
			buf := make([]byte, benchChunk)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := s.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			want := int64(b.N) * benchChunk
			for got.Load() < want {
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
}
