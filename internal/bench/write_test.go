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
	fmt.Fprintf(&w, "| path | MiB/s | × SSH direct-tcpip (same direction) | client CPU-s/GiB | client allocs per KiB |\n|---|---|---|---|---|\n")
	for _, r := range rep.unpaced {
		fmt.Fprintf(&w, "| %s | %.1f | %.2f× | %.2f | %.3f |\n", r.name, r.res.mibps, r.vsSSH, r.res.cpuPerGiB, r.res.allocsPerMsg)
	}
	fmt.Fprintf(&w, "\n### Realistic pacing (1 KiB + ≈1 ms per agent message), k sessions carrying k connections\n\n")
	fmt.Fprintf(&w, "| sessions | MiB/s | × one session | client CPU-s/GiB | client allocs per KiB |\n|---|---|---|---|---|\n")
	one := rep.realistic[0].res.mibps
	for _, r := range rep.realistic {
		fmt.Fprintf(&w, "| %d | %.2f | %.2f× | %.1f | %.3f |\n", r.sessions, r.res.mibps, r.res.mibps/one, r.res.cpuPerGiB, r.res.allocsPerMsg)
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
