// Package leanmod holds no code: its tests keep the module graph a program
// importing jumpless gets lean: free of the examples' heavy dependencies
// (the embedded MySQL engine of the quickstart and what it pulls in) and of
// Alibaba Cloud's SDK (only github.com/jumpless/jumpless/aliyun and the
// command, github.com/jumpless/jumpless/cmd/jumpless, need it). The
// examples, the Alibaba transport and the command live in modules of their
// own (examples/go.mod, aliyun/go.mod, cmd/jumpless/go.mod) for this reason.
package leanmod
