package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func (rep *report) write(tb testing.TB, dir string) {
	tb.Helper()
	var w strings.Builder
	fmt.Fprintf(&w, "<!-- written by `make bench-report` (internal/bench BenchmarkReport); do not edit -->\n")
	fmt.Fprintf(&w, "Run of %s, load average before the run: %s (2 shared vCPUs).\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), rep.load)
	fmt.Fprintf(&w, "### Unpaced throughput (medians of 3 alternated rounds)\n\n")
	fmt.Fprintf(&w, "The emulator process (the child: emulator, byte source and sink; sshd is not counted) is shown beside the client, to tell which one bounds a row.\n\n")
	fmt.Fprintf(&w, "| path | MiB/s | × SSH direct-tcpip (same direction) | client CPU-s/GiB | client allocs per KiB | emulator process CPU-s/GiB | cores busy: client / emulator process |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rep.unpaced {
		fmt.Fprintf(&w, "| %s | %.1f | %.2f× | %.2f | %.3f | %.2f | %.2f / %.2f |\n", r.name, r.res.mibps, r.vsSSH, r.res.cpuPerGiB, r.res.allocsPerMsg, r.res.childPerGiB, r.res.cores, r.res.childCores)
	}
	fmt.Fprintf(&w, "\n### Realistic pacing (1 KiB + ≈1 ms per agent message), k sessions carrying k connections\n\n")
	fmt.Fprintf(&w, "| sessions | MiB/s | × one session | client CPU-s/GiB | client allocs per KiB |\n|---|---|---|---|---|\n")
	one := rep.realistic[0].res.mibps
	for _, r := range rep.realistic {
		fmt.Fprintf(&w, "| %d | %.2f | %.2f× | %.1f | %.3f |\n", r.sessions, r.res.mibps, r.res.mibps/one, r.res.cpuPerGiB, r.res.allocsPerMsg)
	}
	fmt.Fprintf(&w, "\nFloor, same pacing, without Session Manager, websocket or SSH (one TLS connection, one goroutine reading 1 KiB records and writing a 100-byte reply to each): **%.1f client CPU-s/GiB** (%.3f allocs per KiB, %.2f MiB/s).\n", rep.floor.cpuPerGiB, rep.floor.allocsPerMsg, rep.floor.mibps)
	fmt.Fprintf(&w, "\n### Databases through one realistic session (%d rows; session cap measured in the same run: %.3f MiB/s)\n\n", benchRows, rep.sessionCap)
	fmt.Fprintf(&w, "| what | seconds | rows/s | MiB on the wire | wire rate / session cap |\n|---|---|---|---|---|\n")
	for _, d := range rep.db {
		fmt.Fprintf(&w, "| %s | %.2f | %.0f | %.2f | %.0f %% |\n", d.name, d.seconds, d.rowsPS, d.wireMiB, 100*d.wireBPS/mib/rep.sessionCap)
	}
	if len(rep.db) >= 2 {
		fmt.Fprintf(&w, "\nCompressed vs uncompressed MySQL: **%.2f×** the rows/s.\n", rep.db[1].rowsPS/rep.db[0].rowsPS)
	}
	fmt.Fprintf(&w, "\n### Memory (heap after GC, benchmark process)\n\n| what | heap | goroutines |\n|---|---|---|\n")
	fmt.Fprintf(&w, "| idle tunnel (1 session, no connection) | %.0f KiB | %d |\n", rep.idleTunnelKiB, rep.idleTunnelGoroutines)
	fmt.Fprintf(&w, "| per idle pgx connection through the tunnel (16 open) | %.1f KiB | %.1f |\n", rep.connKiB, rep.connGoroutines)
	fmt.Fprintf(&w, "| per idle pgx connection, direct TCP (16 open) | %.1f KiB | %.1f |\n", rep.directKiB, rep.directGoroutines)
	fmt.Fprintf(&w, "\n### Open → first query (tunnel.Open, pgx connect, SELECT 1; medians of %d alternated rounds)\n\n", rep.openRounds)
	d := 30
	if len(rep.open) > 0 {
		d = rep.open[0].delayMS
	}
	fmt.Fprintf(&w, "Round trips to the service: (time at %d ms − time at 0 ms) / %d ms.\n\n", d, 2*d)
	fmt.Fprintf(&w, "| mode, pgx DSN | 0 ms one-way delay | %d ms | round trips |\n|---|---|---|---|\n", d)
	for _, o := range rep.open {
		fmt.Fprintf(&w, "| %s | %.0f ms | %.0f ms | **%.1f** |\n", o.name, 1000*o.t0, 1000*o.t30, o.roundTrips())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(w.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "throughput.svg"), rep.svg(), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Log("\n" + w.String())
}
