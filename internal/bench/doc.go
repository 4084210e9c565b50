// Package bench holds the comparison benchmark behind BENCHMARKS.md and the
// chart in README.md: `make bench-report` runs BenchmarkReport, which
// measures every row in one process run (variants alternated, medians of
// rounds) and rewrites docs/bench/report.md and docs/bench/throughput.svg.
//
// The Session Manager emulator, the byte source and the byte sink run in a
// child process (the test binary re-executed), and sshd and the databases
// are separate processes too, so the CPU time and allocations measured in
// the benchmark process are the client's own.
package bench
