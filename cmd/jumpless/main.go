// Command jumpless reaches databases in private subnets through AWS Systems
// Manager Session Manager (AWS-StartSSHSession) and SSH port forwarding.
//
// Usage:
//
//	jumpless forward  --target i-0123456789abcdef0 -L 15432:db.internal:5432 ...
//	jumpless run      --target i-0123456789abcdef0 --to db.internal:5432 --env pg -- psql -c 'select 1'
//	jumpless check    --target i-0123456789abcdef0 --to db.internal:5432 ...
//	jumpless emulator --listen 127.0.0.1:4566 --target-addr 127.0.0.1:22
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
