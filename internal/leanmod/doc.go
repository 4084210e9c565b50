// Package leanmod holds no code: its test keeps the module graph a program
// importing jumpless gets free of the examples' heavy dependencies (the
// embedded MySQL engine of the quickstart and what it pulls in). The
// examples live in a module of their own (examples/go.mod) for this reason.
package leanmod
