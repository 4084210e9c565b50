// Package cli implements the jumpless command line: the forward, run, check
// and emulator commands, their flags (each also settable through a
// JUMPLESS_* environment variable), help texts, error messages and exit
// codes. Package main only wires the process (arguments, standard streams,
// environment, signals) into Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes of the jumpless command. "run" exits with its command's status
// instead (128+N when the command was killed by signal N) once the command
// has started.
const (
	// ExitOK is success (also after Ctrl-C/SIGTERM ended forward or emulator).
	ExitOK = 0
	// ExitFailure is any other failure: a local file that cannot be read,
	// a local port that cannot be listened on, a failed check, ...
	ExitFailure = 1
	// ExitUsage is a bad invocation: unknown command or flag, missing or
	// malformed flag value.
	ExitUsage = 2
	// ExitConnect is a connection or tunnel failure: AWS credentials or
	// API errors, the Session Manager session, the SSH handshake, host key
	// or authentication, or the tunnel dying while in use.
	ExitConnect = 3
)

// Env is the process context Main runs in. Tests build their own.
type Env struct {
	// Args are the command-line arguments without the program name.
	Args []string
	// Stdin, Stdout and Stderr are the standard streams; nil means
	// empty input / discarded output. "run" hands *os.File streams to
	// its child as they are.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv looks up environment variables (JUMPLESS_*); nil: os.Getenv.
	// The AWS SDK reads its own variables (AWS_PROFILE, AWS_REGION, ...)
	// from the process environment.
	Getenv func(string) string
	// Signals delivers the signals the process received (main subscribes to
	// SIGINT, SIGTERM, SIGHUP and SIGQUIT). nil: no signals.
	Signals <-chan os.Signal

	// locate adds a tunnel profile's file and line to a usage error about
	// a value that came from it (set when a command applies a profile).
	locate func(error) error
}

func (e *Env) getenv(k string) string {
	if e.Getenv == nil {
		return os.Getenv(k)
	}
	return e.Getenv(k)
}

// usageError is a bad invocation (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// connectError is a connection/tunnel failure (exit 3).
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func connectErr(err error) error {
	if err == nil {
		return nil
	}
	return &connectError{err: err}
}

// exitStatus makes Main exit with code without printing anything more
// (the command has reported already, or it is a child's status).
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// errHelp asks Main to exit 0 after help was printed.
var errHelp = errors.New("help requested")

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

func commands() []command {
	return []command{
		{"forward", "forward local ports through the tunnel (like ssh -L)", runForward},
		{"run", "open the tunnel, run a command with the forwarded address in its environment, close the tunnel", runRun},
		{"check", "diagnose a configuration step by step (credentials, session, agent, SSH, database address)", runCheck},
		{"emulator", "run the local Session Manager emulator for tests", runEmulator},
	}
}

// Main runs the jumpless command line and returns the process exit code.
// Errors are printed to env.Stderr as one line,
// "jumpless: COMMAND: message".
func Main(ctx context.Context, env Env) int {
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	args := env.Args
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, mainUsage())
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && name == "help" && !isHelpFlag(args[1]) && args[1] != "help" {
			for _, c := range commands() {
				if c.name == args[1] {
					return report(env.Stderr, c.name, c.run(ctx, &env, []string{"--help"}))
				}
			}
			fmt.Fprintf(env.Stderr, "jumpless: help: unknown command %q (commands: %s)\n", args[1], commandNames())
			return ExitUsage
		}
		fmt.Fprint(env.Stdout, mainUsage())
		return ExitOK
	case "version", "--version", "-version":
		fmt.Fprintf(env.Stdout, "jumpless %s\n", version())
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, &env, args[1:])
			if env.locate != nil {
				err = env.locate(err)
			}
			return report(env.Stderr, c.name, err)
		}
	}
	if strings.HasPrefix(name, "-") {
		fmt.Fprintf(env.Stderr, "jumpless: a command must come first, before flags like %s (commands: %s)\n", name, commandNames())
	} else {
		fmt.Fprintf(env.Stderr, "jumpless: unknown command %q (commands: %s)\n", name, commandNames())
	}
	return ExitUsage
}

// isHelpFlag reports whether arg asks for help ("help --help" is the
// general usage, like "help" alone).
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// report prints err (if any) and maps it to an exit code.
func report(stderr io.Writer, cmd string, err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return ExitOK
	}
	var st *exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	fmt.Fprintf(stderr, "jumpless: %s: %s\n", cmd, oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var ce *connectError
	if errors.As(err, &ce) {
		return ExitConnect
	}
	return ExitFailure
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	return strings.Join(fields, "; ")
}

// version is the module version stamped by the go tool, or "devel".
func version() string {
	if v := buildVersion(); v != "" {
		return v
	}
	return "devel"
}
