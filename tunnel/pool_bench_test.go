package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// BenchmarkAutoSessions measures a parallel extraction through the
// emulator with the real agent's pacing (~0.7 MiB/s per session): 8
// workers each download 4 chunks of 256 KiB, one connection per chunk (as
// a partitioned read does), through a tunnel with Sessions 1, Sessions 8
// and Sessions: AutoSessions, in ModeSSH and ModeDirect (port sessions,
// per destination) (Scale.Max 8; "auto-nowait" with
// Scale.DialWait < 0, where a dial never waits for an opening session).
// All run in the same op, so the ratios compare like with like. Figures belong in BENCHMARKS.md:
//
//	go test -run '^$' -bench AutoSessions -benchtime 1x ./tunnel
func BenchmarkAutoSessions(b *testing.B) {
	const chunk = 256 << 10
	source := startSource(b, chunk)
	sshd := testenv.StartSSHD(b)
	for _, mode := range []tunnel.Mode{tunnel.ModeSSH, tunnel.ModeDirect} {
		b.Run(mode.String(), func(b *testing.B) { benchAutoSessions(b, mode, source, sshd) })
	}
}

func benchAutoSessions(b *testing.B, mode tunnel.Mode, source string, sshd *testenv.SSHD) {
	const workers, chunks, chunk = 8, 4, 256 << 10
	variants := []struct {
		name     string
		sessions int
		dialWait time.Duration
	}{{"sessions=1", 1, 0}, {"sessions=8", 8, 0}, {"auto", tunnel.AutoSessions, 0}, {"auto-nowait", tunnel.AutoSessions, -1}}
	rates := make([]float64, len(variants))
	for range b.N {
		for i, v := range variants {
			addr := sshd.Addr
			if mode == tunnel.ModeDirect {
				addr = "127.0.0.1"
			}
			srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{target: addr}, Pacing: ssmtest.Realistic})
			if err != nil {
				b.Fatal(err)
			}
			cfg := ssmConfig(srv, sshd)
			if mode == tunnel.ModeDirect {
				cfg = directTunnelConfig(srv)
				cfg.Direct.Destinations = []string{source}
			}
			cfg.Sessions = v.sessions
			cfg.Scale.DialWait = v.dialWait
			tun, err := tunnel.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range chunks {
						c, err := tun.DialContext(context.Background(), "tcp", source)
						if err != nil {
							b.Error(err)
							return
						}
						n, err := io.Copy(io.Discard, c)
						c.Close()
						if err != nil || n != chunk {
							b.Errorf("read %d bytes, %v", n, err)
							return
						}
					}
				})
			}
			wg.Wait()
			d := time.Since(start)
			rates[i] += workers * chunks * chunk / d.Seconds() / 1e6
			b.Logf("%s: %v, %.2f MB/s, sessions opened %d", v.name, d.Round(time.Millisecond),
				workers*chunks*chunk/d.Seconds()/1e6, tun.Stats().SessionsOpened)
			tun.Close()
			srv.Close()
		}
	}
	for i, v := range variants {
		b.ReportMetric(rates[i]/float64(b.N), fmt.Sprintf("MB/s(%s)", v.name))
	}
	b.ReportMetric(rates[2]/rates[0], "auto/sessions=1")
	b.ReportMetric(rates[2]/rates[1], "auto/sessions=8")
	b.ReportMetric(rates[3]/rates[1], "auto-nowait/sessions=8")
}
