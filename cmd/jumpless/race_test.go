//go:build race

package main

// raceEnabled makes TestMain build the jumpless binary with -race too, so
// the subprocesses run under the race detector (a race makes them exit 66).
const raceEnabled = true
