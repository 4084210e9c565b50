package ssm_test

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

const benchChunk = 1 << 20 // bytes per benchmark op

// startSource serves an endless byte stream to every connection.
func startSource(b *testing.B) string {
	return testenv.TCPServer(b, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// startSink counts the bytes it receives.
func startSink(b *testing.B, n *atomic.Int64) string {
	return testenv.TCPServer(b, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	})
}

var pacings = []ssmtest.Pacing{ssmtest.Unpaced, ssmtest.Realistic}

// BenchmarkDownload measures target → client throughput (one op = 1 MiB),
// in the steady state: the handshake and a 64 KiB warm-up happen before the
// timer starts and Close after it stops, and the rate is the client's
// accepted bytes (Stats().BytesReceived) over the timed window.
//
// For Realistic it also reports the emulated agent's own ceiling over the
// same window, from its Stats(): ΔPacedMessages · 1024 B / ΔPacedTime
// (MiB/s-ceiling), and the client's rate as a share of it (%ceiling), so the
// figure does not move with the host's timer overshoot; %nominal is the
// share of the calibrated 1024 B per ssmtest.RealisticMessagePeriod. Use
// -benchtime 16x or more: one op takes ≈ 1.4 s in Realistic mode.
func BenchmarkDownload(b *testing.B) {
	for _, p := range pacings {
		b.Run(p.String(), func(b *testing.B) {
			srv := newEmulator(b, ssmtest.Config{Pacing: p}, startSource(b))
			cfg := clientConfig(srv)
			cfg.HoldFirstWrite = -1
			s := dial(b, cfg)
			defer s.Close()
			// Warm up: the agent's loop is running and the first bytes are
			// through before timing.
			if _, err := io.ReadFull(s, make([]byte, 64<<10)); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			b.ResetTimer()
			e0, c0, start := srv.Stats(), s.Stats(), time.Now()
			for range b.N {
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(s, benchChunk), buf); err != nil {
					b.Fatal(err)
				}
			}
			el := time.Since(start)
			e1, c1 := srv.Stats(), s.Stats()
			b.StopTimer()
			rate := float64(c1.BytesReceived-c0.BytesReceived) / el.Seconds()
			b.ReportMetric(rate/(1<<20), "MiB/s")
			if c1.DroppedUnacked != 0 {
				b.Errorf("client dropped %d messages unacknowledged", c1.DroppedUnacked)
			}
			if p == ssmtest.Realistic {
				dt := (e1.PacedTime - e0.PacedTime).Seconds()
				ceiling := float64(e1.PacedMessages-e0.PacedMessages) * ssmtest.DefaultChunkSize / dt
				nominal := float64(ssmtest.DefaultChunkSize) / ssmtest.RealisticMessagePeriod.Seconds()
				b.ReportMetric(ceiling/(1<<20), "MiB/s-ceiling")
				b.ReportMetric(100*rate/ceiling, "%ceiling")
				b.ReportMetric(100*rate/nominal, "%nominal")
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

// BenchmarkDownloadReordered is BenchmarkDownload (Unpaced) with 5% of the
// agent's frames reordered, so the client parks messages in its reorder
// buffer: the lossy-path allocations (see BENCHMARKS.md for the
// memprofile filtered to package ssm).
func BenchmarkDownloadReordered(b *testing.B) {
	srv := newEmulator(b, ssmtest.Config{}, startSource(b))
	srv.SetFaults(ssmtest.ToClient, ssmtest.Faults{Seed: 1, Reorder: 0.05, Match: ssmtest.FrameInfo.IsStreamData})
	cfg := clientConfig(srv)
	cfg.HoldFirstWrite = -1
	s := dial(b, cfg)
	defer s.Close()
	if _, err := io.ReadFull(s, make([]byte, 1024)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := io.CopyBuffer(io.Discard, io.LimitReader(s, benchChunk), buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := s.Stats(); st.OutOfOrder == 0 {
		b.Fatalf("no message was parked out of order: %+v", st)
	}
}
