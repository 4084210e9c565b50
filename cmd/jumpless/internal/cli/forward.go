package cli

import (
	"context"
	"fmt"
	"time"
)

const forwardAbout = `Opens a tunnel to --target (an SSM Session Manager session carrying SSH to
the instance's sshd) and forwards each local port given with -L to a host and
port as seen from the instance, like "ssh -L". Local connections become SSH
direct-tcpip channels; nothing is installed on the instance.

Prints one "listening on LOCAL → REMOTE" line per -L on stdout once the
tunnel is up, and live byte counts on stderr when stderr is a terminal.
Ctrl-C or SIGTERM closes every connection, terminates the session and exits
0. If the tunnel is lost (session terminated, SSH keepalive failed) it exits
3. The key passphrase, if any, is read from $JUMPLESS_SSH_KEY_PASSPHRASE.`

const forwardExamples = `  jumpless forward --target i-0123456789abcdef0 --ssh-user ec2-user \
      --ssh-key ~/.ssh/id_ed25519 --known-hosts ~/.ssh/known_hosts \
      -L 127.0.0.1:15432:db.internal:5432 -L 13306:mysql.internal:3306

  # the same with environment variables and an AWS profile
  export JUMPLESS_TARGET=i-0123456789abcdef0 JUMPLESS_SSH_KEY=~/.ssh/id_ed25519
  jumpless forward --profile prod --region eu-west-1 -L 15432:db.internal:5432

  # known_hosts entries are looked up under the instance id:
  #   i-0123456789abcdef0 ssh-ed25519 AAAAC3Nza...

  # Alibaba Cloud: direct mode (no SSH); keys from ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET
  jumpless forward --cloud aliyun --region cn-hangzhou --instance-id i-bp67acfmxazb4ph6ayrq \
      -L 15432:db.internal:5432

  # Alibaba Cloud over SSH with a temporary key registered through Cloud Assistant
  jumpless forward --cloud aliyun --region cn-hangzhou --instance-id i-bp67acfmxazb4ph6ayrq \
      --mode ssh --known-hosts ~/.ssh/known_hosts -L 15432:db.internal:5432`

func runForward(ctx context.Context, env *Env, args []string) error {
	var (
		o      tunnelOpts
		locals []string
		quiet  bool
	)
	s := newFlagSet("forward", "jumpless forward [TUNNEL] [--target ID] [flags] -L [BIND:]PORT:HOST:HOSTPORT ...", forwardAbout, forwardExamples)
	s.group("Forwarding")
	s.listVar(&locals, "local-forward", "L", "[BIND:]PORT:HOST:HOSTPORT", "listen on BIND:PORT (BIND defaults to 127.0.0.1; * = all interfaces; PORT 0 = any free port) and forward to HOST:HOSTPORT as seen from the instance; repeatable")
	s.boolVar(&quiet, "quiet", "print only errors on stderr (no status line, live byte counts or summary)")
	o.register(s)
	if err := s.parse(env, args); err != nil {
		return err
	}
	if s.fs.NArg() > 0 {
		return usagef("unexpected argument %q (forward takes only flags; to run a command use 'jumpless run ... -- COMMAND')", s.fs.Arg(0))
	}
	if err := o.validate("forward", env); err != nil {
		return err
	}
	if len(locals) == 0 {
		return usagef("at least one -L [BIND:]PORT:HOST:HOSTPORT is required, e.g. -L 15432:db.internal:5432")
	}
	specs, err := parseSpecs(locals, "")
	if err != nil {
		return err
	}
	o.setDestinations(specs)

	sigCtx, stop := signalContext(ctx, env)
	defer stop()
	lns, err := listen(specs)
	if err != nil {
		return err
	}
	t, err := o.open(sigCtx, env)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		if sigCtx.Err() != nil && ctx.Err() == nil {
			return nil // interrupted while connecting: a clean stop
		}
		return err
	}
	fw := newForwarder(t, specs, lns, env.Stderr, "forward")
	for i, a := range fw.addrs() {
		fmt.Fprintf(env.Stdout, "listening on %s → %s\n", a, specs[i].Remote)
	}
	if !quiet {
		fmt.Fprintf(env.Stderr, "tunnel to %s open (session %s); Ctrl-C to stop\n", o.target, sessionList(t))
	}

	progress := !quiet && isTerminal(env.Stderr)
	var tick <-chan time.Time
	if progress {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		tick = tk.C
	}
	start := time.Now()
	var runErr error
loop:
	for {
		select {
		case <-tick:
			fmt.Fprintf(env.Stderr, "\r%s\x1b[K", fw.progressLine(start))
		case <-sigCtx.Done():
			break loop
		case <-t.Done():
			runErr = connectErr(fmt.Errorf("tunnel lost: %w", t.Err()))
			break loop
		}
	}
	if progress {
		fmt.Fprint(env.Stderr, "\r\x1b[K")
	}
	fw.close()
	closeErr := t.Close()
	if !quiet {
		fmt.Fprintf(env.Stderr, "tunnel closed: %s\n", fw.summary())
	}
	if runErr != nil {
		return runErr
	}
	if closeErr != nil && !isClosedErr(closeErr) {
		return connectErr(fmt.Errorf("closing the tunnel: %w", closeErr))
	}
	return nil
}

// signalContext returns a context cancelled by ctx or by the first signal
// on env.Signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT).
func signalContext(ctx context.Context, env *Env) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-env.Signals:
			cancel()
		case <-ctx.Done():
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		<-finished
		cancel()
	}
}
