package ssmtest_test

import (
	"bytes"
	"crypto/sha256"
	"net"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// BenchmarkRealisticDownload measures what a full-speed client (acks at
// once) receives from the Realistic agent: SSMTEST_BENCH_MIB MiB (default 8)
// per iteration from a TCP target, sha256-checked. It reports the median
// client-observed rate and the emulator's own pacing ceiling
// (PacedMessages·1024 B / PacedTime). Run:
//
//	SSMTEST_BENCH_MIB=32 go test -run '^$' -bench RealisticDownload -benchtime 3x ./ssm/ssmtest/
func BenchmarkRealisticDownload(b *testing.B) {
	benchDownload(b, ssmtest.Realistic)
}

// BenchmarkUnpacedDownload is the same without pacing.
func BenchmarkUnpacedDownload(b *testing.B) {
	benchDownload(b, ssmtest.Unpaced)
}

func benchDownload(b *testing.B, p ssmtest.Pacing) {
	mib := 8
	if v, err := strconv.Atoi(os.Getenv("SSMTEST_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	size := mib << 20
	payload := randBytes(size)
	want := sha256.Sum256(payload)
	target := startTCP(b, func(c net.Conn) { _, _ = c.Write(payload) })
	srv := newServer(b, ssmtest.Config{Pacing: p, Targets: map[string]string{instance: target.ln.Addr().String()}})
	var rates []float64
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, out := startSession(b, srv, instance)
		c := dialRaw(b, srv, *out.StreamUrl, *out.TokenValue)
		c.waitHandshake(5 * time.Second)
		start := time.Now()
		got, err := c.read(size, time.Duration(mib)*10*time.Second)
		el := time.Since(start)
		if err != nil || sha256.Sum256(got) != want || !bytes.Equal(got[:16], payload[:16]) {
			b.Fatalf("download: %d bytes, %v", len(got), err)
		}
		rates = append(rates, float64(size)/el.Seconds()/(1<<20))
		c.close()
	}
	b.StopTimer()
	sort.Float64s(rates)
	st := srv.Stats()
	b.ReportMetric(rates[len(rates)/2], "MiB/s-median")
	b.ReportMetric(float64(st.PacedMessages)*1024/st.PacedTime.Seconds()/(1<<20), "MiB/s-ceiling")
	b.Logf("rates %v MiB/s; paced %d messages, %d bytes in %v", rates, st.PacedMessages, st.PacedBytes, st.PacedTime)
}
