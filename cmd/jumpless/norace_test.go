//go:build !race

package main

// raceEnabled is false without -race: the binary is built normally.
const raceEnabled = false
