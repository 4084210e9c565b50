// Command jumpless reaches databases in private subnets through AWS Systems
// Manager Session Manager or Alibaba Cloud Assistant Session Manager
// (--cloud aliyun), with SSH port forwarding or the agent's own forwarding.
//
// Usage:
//
//	jumpless forward  --target i-0123456789abcdef0 -L 15432:db.internal:5432 ...
//	jumpless run      --target i-0123456789abcdef0 --to db.internal:5432 --env pg -- psql -c 'select 1'
//	jumpless check    --target i-0123456789abcdef0 --to db.internal:5432 ...
//	jumpless emulator --listen 127.0.0.1:4566 --target-addr 127.0.0.1:22
//	jumpless run      --cloud aliyun --region cn-hangzhou --instance-id i-bp67acfmxazb4ph6ayrq --to db.internal:5432 -- ...
//	jumpless emulator --cloud aliyun --env-file emu.env
//
// The command is a module of its own (github.com/jumpless/jumpless/cmd/jumpless)
// so that the library's module graph stays free of Alibaba's SDK.
//
// Run "jumpless help" or "jumpless COMMAND --help" for the flags, the
// environment variables and the exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jumpless/jumpless/cmd/jumpless/internal/cli"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	os.Exit(cli.Main(context.Background(), cli.Env{
		Args:    os.Args[1:],
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Getenv:  os.Getenv,
		Signals: sig,
	}))
}
