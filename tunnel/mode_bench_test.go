package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// benchTunnel opens a tunnel in mode through an emulator with pacing.
func benchTunnel(b *testing.B, mode tunnel.Mode, pacing ssmtest.Pacing) *tunnel.Tunnel {
	b.Helper()
	cfg := ssmtest.Config{Pacing: pacing}
	var tcfg tunnel.Config
	if mode == tunnel.ModeSSH {
		sshd := testenv.StartSSHD(b)
		cfg.Targets = map[string]string{target: sshd.Addr}
		srv, err := ssmtest.NewServer(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Close() })
		tcfg = ssmConfig(srv, sshd)
	} else {
		cfg.Targets = map[string]string{target: "127.0.0.1"}
		srv, err := ssmtest.NewServer(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Close() })
		tcfg = tunnel.Config{Mode: tunnel.ModeDirect, SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target}}
	}
	tun, err := tunnel.Open(context.Background(), tcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tun.Close() })
	return tun
}

// startSink reads n bytes from every connection, then answers one byte.
func startSink(b *testing.B, n int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := io.CopyN(io.Discard, c, int64(n)); err == nil {
					c.Write([]byte{'k'})
				}
			})
		}
	})
	return ln.Addr().String()
}

// BenchmarkModes compares direct mode with SSH mode on one connection:
// download and upload, with the agent's realistic pacing and unpaced.
// Figures belong in BENCHMARKS.md:
//
//	go test -run '^$' -bench Modes -benchtime 2x ./tunnel
func BenchmarkModes(b *testing.B) {
	for _, pacing := range []ssmtest.Pacing{ssmtest.Realistic, ssmtest.Unpaced} {
		size := 16 << 20
		if pacing == ssmtest.Realistic {
			size = 2 << 20
		}
		for _, mode := range []tunnel.Mode{tunnel.ModeSSH, tunnel.ModeDirect} {
			b.Run(fmt.Sprintf("%v/%v/down", pacing, mode), func(b *testing.B) {
				tun := benchTunnel(b, mode, pacing)
				source := startSource(b, size)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					c, err := tun.DialContext(context.Background(), "tcp", source)
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.CopyN(io.Discard, c, int64(size))
					c.Close()
					if err != nil || n != int64(size) {
						b.Fatalf("read %d bytes, %v", n, err)
					}
				}
			})
			b.Run(fmt.Sprintf("%v/%v/up", pacing, mode), func(b *testing.B) {
				upSize := 16 << 20
				tun := benchTunnel(b, mode, pacing)
				sink := startSink(b, upSize)
				buf := make([]byte, upSize)
				b.SetBytes(int64(upSize))
				b.ResetTimer()
				for range b.N {
					c, err := tun.DialContext(context.Background(), "tcp", sink)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
						b.Fatal(err)
					}
					c.Close()
				}
			})
		}
	}
}

// BenchmarkOpenToFirstQuery measures, per mode, the time from tunnel.Open
// to the first PostgreSQL query result (Open, pgx connect and
// authentication, SELECT 1), with realistic pacing:
//
//	go test -run '^$' -bench OpenToFirstQuery -benchtime 5x ./tunnel
func BenchmarkOpenToFirstQuery(b *testing.B) {
	dsn := testenv.PostgresDSN(b)
	for _, mode := range []tunnel.Mode{tunnel.ModeSSH, tunnel.ModeDirect} {
		b.Run(mode.String(), func(b *testing.B) {
			cfg := ssmtest.Config{Pacing: ssmtest.Realistic}
			var tcfg tunnel.Config
			if mode == tunnel.ModeSSH {
				sshd := testenv.StartSSHD(b)
				cfg.Targets = map[string]string{target: sshd.Addr}
				srv, err := ssmtest.NewServer(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				tcfg = ssmConfig(srv, sshd)
			} else {
				cfg.Targets = map[string]string{target: "127.0.0.1"}
				srv, err := ssmtest.NewServer(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				tcfg = tunnel.Config{Mode: tunnel.ModeDirect, SSM: ssm.Config{AWS: srv.AWSConfig(), Target: target}}
			}
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				tun, err := tunnel.Open(ctx, tcfg)
				if err != nil {
					b.Fatal(err)
				}
				conn, err := dialer.ConnectPgx(ctx, tun, dsn)
				if err != nil {
					b.Fatal(err)
				}
				var one int
				if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					b.Fatal(one, err)
				}
				b.StopTimer()
				conn.Close(ctx)
				tun.Close()
				b.StartTimer()
			}
		})
	}
}
