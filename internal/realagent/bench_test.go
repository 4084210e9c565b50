package realagent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/realagent"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// downloadOnce opens an ssm session (AWS-StartSSHSession document, no SSH:
// the target is a source that writes payload and closes) and reads it all.
func downloadOnce(b *testing.B, cfg ssm.Config, payload []byte) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := ssm.Dial(ctx, cfg)
	if err != nil {
		b.Fatalf("ssm.Dial: %v", err)
	}
	defer s.Close()
	start := time.Now()
	h := sha256.New()
	n, err := io.CopyN(h, s, int64(len(payload)))
	d := time.Since(start)
	want := sha256.Sum256(payload)
	if err != nil || n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		b.Fatalf("download: %d of %d bytes, %v", n, len(payload), err)
	}
	return d
}

// BenchmarkRealAgentCalibration downloads the same payload through AWS's
// real agent and through the emulated agent with Pacing Realistic, one
// after the other in each iteration, and reports both rates and their ratio
// (emulator / real agent; 1.00 = the emulator is as fast as the real agent).
// The ssm client, the websocket/TLS path and the emulator's gateway are the
// same for both. REALAGENT_BENCH_MIB sets the payload (default 4 MiB).
func BenchmarkRealAgentCalibration(b *testing.B) {
	mib := 4
	if v, err := strconv.Atoi(os.Getenv("REALAGENT_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	payload := make([]byte, mib<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	src := testenv.TCPServer(b, func(c net.Conn) { _, _ = c.Write(payload) })
	_, p, _ := net.SplitHostPort(src)
	port, _ := strconv.Atoi(p)

	real, err := ssmtest.NewServer(ssmtest.Config{TLS: true})
	if err != nil {
		b.Fatal(err)
	}
	defer real.Close()
	a := realagent.Start(b, real)
	a.Forward(src)
	emu, err := ssmtest.NewServer(ssmtest.Config{TLS: true, Pacing: ssmtest.Realistic, Targets: map[string]string{realagent.InstanceID: src}})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	cfgReal := ssm.Config{AWS: real.AWSConfig(), RootCAs: real.CertPool(), Target: realagent.InstanceID, PortNumber: port}
	cfgEmu := ssm.Config{AWS: emu.AWSConfig(), RootCAs: emu.CertPool(), Target: realagent.InstanceID, PortNumber: port}

	var tReal, tEmu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tReal += downloadOnce(b, cfgReal, payload)
		tEmu += downloadOnce(b, cfgEmu, payload)
	}
	b.StopTimer()
	size := float64(len(payload)*b.N) / (1 << 20)
	rReal, rEmu := size/tReal.Seconds(), size/tEmu.Seconds()
	b.ReportMetric(rReal, "MiB/s-real-agent")
	b.ReportMetric(rEmu, "MiB/s-emulator")
	b.ReportMetric(rEmu/rReal, "emulator/real")
	b.Logf("%d MiB × %d: real agent %s %.3f MiB/s, emulator Realistic %.3f MiB/s, ratio emulator/real %.3f",
		mib, b.N, a.Version, rReal, rEmu, rEmu/rReal)
}
