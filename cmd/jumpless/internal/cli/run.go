package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

const runAbout = `Opens the tunnel, forwards the -L specs (or --to HOST:PORT on a free local
port), runs COMMAND with the forwarded address in its environment, and
closes the tunnel when COMMAND ends. jumpless then exits with COMMAND's exit
status (128+N if it was killed by signal N; 127 if it cannot be found, 126
if it cannot be run).

COMMAND's environment gets, for the first forward:
  JUMPLESS_ADDR=127.0.0.1:PORT  JUMPLESS_HOST=127.0.0.1  JUMPLESS_PORT=PORT
  JUMPLESS_ADDRS=ADDR1,ADDR2,... (every forward, in order)
and with --env pg: PGHOST and PGPORT; with --env mysql: MYSQL_HOST and
MYSQL_TCP_PORT. $JUMPLESS_SSH_KEY_PASSPHRASE is removed from it.

Your shell expands $VARS before jumpless runs, so to use them in COMMAND's
arguments run it through a shell: -- sh -c 'psql -h "$PGHOST" -p "$PGPORT"'.

SIGTERM, SIGHUP and SIGQUIT are passed on to COMMAND; SIGINT too, unless
stdin is a terminal (then Ctrl-C already reaches COMMAND from the terminal).`

const runExamples = `  jumpless run --target i-0123456789abcdef0 --ssh-key ~/.ssh/id_ed25519 \
      --to db.internal:5432 --env pg -- psql -U etl -d warehouse -c 'select 1'

  jumpless run --target i-0123456789abcdef0 --to mysql.internal:3306 --env mysql -- \
      sh -c 'mysqldump -h "$MYSQL_HOST" -P "$MYSQL_TCP_PORT" -u etl app > app.sql'

  jumpless run --target i-0123456789abcdef0 -L 15432:db.internal:5432 -- ./etl-job --dsn "host=127.0.0.1 port=15432"

  jumpless run --cloud aliyun --region cn-hangzhou --instance-id i-bp67acfmxazb4ph6ayrq \
      --aliyun-profile prod --to db.internal:5432 --env pg -- psql -U etl -d warehouse`

func runRun(ctx context.Context, env *Env, args []string) error {
	var (
		o      tunnelOpts
		locals []string
		to     string
		envKnd string
		dbc    dbCredOpts
	)
	s := newFlagSet("run", "jumpless run [TUNNEL] [--target ID] [flags] (--to HOST:PORT | -L SPEC ...) -- COMMAND [ARGS...]", runAbout, runExamples)
	s.group("Forwarding")
	s.stringVar(&to, "to", "HOST:PORT", "", "forward a free port on 127.0.0.1 to HOST:PORT as seen from the instance")
	s.listVar(&locals, "local-forward", "L", "[BIND:]PORT:HOST:HOSTPORT", "forward like 'jumpless forward -L'; repeatable")
	s.stringVar(&envKnd, "env", "KIND", "", "also set client variables for the first forward: pg (PGHOST, PGPORT) or mysql (MYSQL_HOST, MYSQL_TCP_PORT)")
	o.register(s)
	dbc.register(s)
	if err := s.parse(env, args); err != nil {
		return err
	}
	if err := dbc.validate(); err != nil {
		return err
	}
	argv := s.fs.Args()
	if len(argv) == 0 {
		return usagef("no command to run: put it after --, e.g. jumpless run --to db.internal:5432 -- psql -c 'select 1'")
	}
	if err := o.validate("run", env); err != nil {
		return err
	}
	if len(locals) == 0 && to == "" {
		return usagef("nothing to forward: pass --to HOST:PORT (e.g. --to db.internal:5432) or -L [BIND:]PORT:HOST:HOSTPORT")
	}
	switch envKnd {
	case "", "pg", "mysql":
	case "postgres", "postgresql":
		envKnd = "pg"
	case "mariadb":
		envKnd = "mysql"
	default:
		return usagef("--env %q: want pg or mysql", envKnd)
	}
	// --to is the primary forward when given.
	var specs []forwardSpec
	if to != "" {
		sp, err := parseSpecs(nil, to)
		if err != nil {
			return err
		}
		specs = append(specs, sp...)
	}
	sp, err := parseSpecs(locals, "")
	if err != nil {
		return err
	}
	specs = append(specs, sp...)
	o.setDestinations(specs)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "jumpless: run: %s\n", lookPathMessage(argv[0], err))
		if errors.Is(err, exec.ErrNotFound) {
			return &exitStatus{code: 127}
		}
		return &exitStatus{code: 126}
	}

	// Until COMMAND starts, a signal aborts the open.
	sigCtx, stop := signalContext(ctx, env)
	lns, err := listen(specs)
	if err != nil {
		stop()
		return err
	}
	t, err := o.open(sigCtx, env)
	interrupted := sigCtx.Err() != nil && ctx.Err() == nil
	stop()
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		if interrupted {
			fmt.Fprintf(env.Stderr, "jumpless: run: interrupted while opening the tunnel; %s not started\n", argv[0])
			return &exitStatus{code: 130}
		}
		return err
	}
	if interrupted { // the signal came just as the tunnel opened
		t.Close()
		for _, ln := range lns {
			ln.Close()
		}
		fmt.Fprintf(env.Stderr, "jumpless: run: interrupted while opening the tunnel; %s not started\n", argv[0])
		return &exitStatus{code: 130}
	}
	fw := newForwarder(t, specs, lns, env.Stderr, "run")
	closeAll := func() {
		fw.close()
		_ = t.Close()
	}

	addrs := fw.addrs()
	host, port := localHostPort(addrs[0])
	childEnv := withoutEnv(os.Environ(), passphraseEnv)
	childEnv = append(childEnv,
		"JUMPLESS_ADDR="+net.JoinHostPort(host, port),
		"JUMPLESS_HOST="+host,
		"JUMPLESS_PORT="+port,
		"JUMPLESS_ADDRS="+strings.Join(addrs, ","),
	)
	if dbc.enabled() {
		l, what, err := o.dbLogin(ctx, env, &dbc, specs[0].Remote)
		if err != nil {
			closeAll()
			return connectErr(fmt.Errorf("database login: %s", sanitize(oneLine(err.Error()))))
		}
		if o.verbose {
			fmt.Fprintf(env.Stderr, "jumpless: run: database login: %s\n", what)
		}
		childEnv = append(childEnv, dbLoginEnv(envKnd, l)...)
	}
	switch envKnd {
	case "pg":
		childEnv = append(childEnv, "PGHOST="+host, "PGPORT="+port)
	case "mysql":
		childEnv = append(childEnv, "MYSQL_HOST="+host, "MYSQL_TCP_PORT="+port)
	}
	if o.verbose {
		var fwd []string
		for i, a := range addrs {
			fwd = append(fwd, a+" → "+specs[i].Remote)
		}
		fmt.Fprintf(env.Stderr, "jumpless: run: tunnel open (%s); running %s\n", strings.Join(fwd, ", "), argv[0])
	}

	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = childEnv
	cmd.Stdin, cmd.Stdout, cmd.Stderr = env.Stdin, env.Stdout, env.Stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		closeAll()
		fmt.Fprintf(env.Stderr, "jumpless: run: %s: %v\n", argv[0], err)
		return &exitStatus{code: 126}
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()

	forwardInt := !isTerminal(env.Stdin)
	var werr error
	tunnelLost := t.Done()
wait:
	for {
		select {
		case werr = <-waitErr:
			break wait
		case sig := <-env.Signals:
			if sig == os.Interrupt && !forwardInt {
				continue
			}
			_ = cmd.Process.Signal(sig)
		case <-tunnelLost:
			tunnelLost = nil
			fmt.Fprintf(env.Stderr, "jumpless: run: tunnel lost while %s runs: %s\n", argv[0], oneLine(errString(t.Err())))
		}
	}
	closeAll()
	return childStatus(werr)
}

// childStatus maps cmd.Wait's error to jumpless's exit.
func childStatus(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitStatus{code: 128 + int(ws.Signal())}
		}
		return &exitStatus{code: ee.ExitCode()}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}

func lookPathMessage(name string, err error) string {
	if errors.Is(err, exec.ErrNotFound) {
		if strings.Contains(name, "/") {
			return fmt.Sprintf("command %q not found", name)
		}
		return fmt.Sprintf("command %q not found in $PATH", name)
	}
	return fmt.Sprintf("cannot run %q: %v", name, errors.Unwrap(err))
}

// localHostPort splits a listener address; a wildcard host becomes
// 127.0.0.1 so clients can connect to it.
func localHostPort(addr string) (host, port string) {
	host, port, _ = net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return host, port
}

// withoutEnv returns env without the variables named in drop.
func withoutEnv(env []string, drop ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "unknown cause"
	}
	return err.Error()
}
