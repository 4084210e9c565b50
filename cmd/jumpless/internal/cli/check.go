package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
)

const checkAbout = `Diagnoses a configuration step by step, the way opening a tunnel goes, and
prints OK or FAIL for each step; for a failing step it says the likely cause
and what to change:

  target               a tag:KEY=VALUE --target matches one instance whose
                       SSM agent is online (instances and last ping shown
                       otherwise)
  SSH private key      the --ssh-key file can be read and decrypted
  known_hosts          the file has an entry for the instance
  AWS configuration    region, profile and endpoint
  AWS credentials      credentials are found
  StartSession         IAM allows ssm:StartSession, the instance is connected
  agent handshake      data channel and SSM agent handshake
  Instance Connect     with --instance-connect: a throwaway key is pushed
                       (IAM allows ec2-instance-connect:SendSSHPublicKey)
  SSH host key         the instance's host key matches (its fingerprint is
                       shown when it does not)
  SSH authentication   the user and key are accepted
  database address     each --to HOST:PORT (and -L target) is reachable
                       from the instance
  database login       with --rds-iam: a token is made for --db-user at the
                       first --to; with --db-secret: the secret is read and
                       holds a username and password

Steps after a failure are skipped. The session is terminated at the end.
This replaces trying "aws ssm start-session --document-name
AWS-StartSSHSession" by hand. The flags are those of forward; without
--known-hosts or --host-key the SSH host key step fails and shows the
instance's fingerprint.`

const checkExamples = `  jumpless check --target i-0123456789abcdef0 --ssh-key ~/.ssh/id_ed25519 \
      --known-hosts ~/.ssh/known_hosts --to db.internal:5432

  # learn the host key fingerprint of a new instance
  jumpless check --target i-0123456789abcdef0 --ssh-key ~/.ssh/id_ed25519

  # Alibaba Cloud (steps: Alibaba config, Alibaba credentials, StartTerminalSession,
  # temporary key, SSH host key, SSH authentication, database address)
  jumpless check --cloud aliyun --region cn-hangzhou --instance-id i-bp67acfmxazb4ph6ayrq \
      --mode ssh --known-hosts ~/.ssh/known_hosts --to db.internal:5432`

// checker prints the steps of a check.
type checker struct {
	out    io.Writer
	failed int
	passed int
	broken bool // a step failed: later dependent steps are skipped
}

func (c *checker) ok(step, detail string) {
	c.passed++
	fmt.Fprintf(c.out, "[ OK ] %-20s %s\n", step, detail)
}

func (c *checker) fail(step, problem, advice string) {
	c.failCause(step, problem, "", advice)
}

func (c *checker) failCause(step, problem, cause, advice string) {
	c.failed++
	c.broken = true
	fmt.Fprintf(c.out, "[FAIL] %-20s %s\n", step, problem)
	if cause != "" {
		fmt.Fprintf(c.out, "       %-20s likely cause: %s\n", "", cause)
	}
	if advice != "" {
		fmt.Fprintf(c.out, "       %-20s fix: %s\n", "", advice)
	}
}

func (c *checker) skip(step string) {
	fmt.Fprintf(c.out, "[SKIP] %-20s (needs the failed step above)\n", step)
}

func (c *checker) diag(d diagnosis) {
	c.failCause(d.step, d.problem, d.cause, d.advice)
}

func runCheck(ctx context.Context, env *Env, args []string) error {
	var (
		o      tunnelOpts
		tos    []string
		locals []string
		dbc    dbCredOpts
	)
	s := newFlagSet("check", "jumpless check [TUNNEL] [--target ID] [flags] [--to HOST:PORT ...]", checkAbout, checkExamples)
	s.group("What to check")
	s.listVar(&tos, "to", "", "HOST:PORT", "database address to try from the instance; repeatable")
	s.listVar(&locals, "local-forward", "L", "[BIND:]PORT:HOST:HOSTPORT", "as for forward; only HOST:HOSTPORT is tried")
	o.register(s)
	dbc.register(s)
	if err := s.parse(env, args); err != nil {
		return err
	}
	if err := dbc.validate(); err != nil {
		return err
	}
	if s.fs.NArg() > 0 {
		return usagef("unexpected argument %q (check takes only flags)", s.fs.Arg(0))
	}
	if err := o.validate("check", env); err != nil {
		return err
	}
	var remotes []string
	for _, t := range tos {
		sp, err := parseSpecs(nil, t)
		if err != nil {
			return err
		}
		remotes = append(remotes, sp[0].Remote)
	}
	sp, err := parseSpecs(locals, "")
	if err != nil {
		return err
	}
	for _, f := range sp {
		remotes = append(remotes, f.Remote)
	}

	ctx, stop := signalContext(ctx, env)
	defer stop()
	c := &checker{out: env.Stdout}
	if s.profileName != "" {
		fmt.Fprintf(c.out, "Checking the tunnel to %s ([tunnel.%s] in %s)\n", o.target, s.profileName, s.profilePath)
	} else {
		fmt.Fprintf(c.out, "Checking the tunnel to %s\n", o.target)
	}
	c.checkLocal(&o)
	ok := c.checkRemote(ctx, env, &o, &dbc, remotes)
	if ctx.Err() != nil {
		return &exitStatus{code: 130}
	}
	if !ok || c.failed > 0 {
		fmt.Fprintf(c.out, "%d of %d checks failed\n", c.failed, c.failed+c.passed)
		return &exitStatus{code: ExitFailure}
	}
	fmt.Fprintf(c.out, "All %d checks passed\n", c.passed)
	return nil
}

// checkLocal checks the key file and known_hosts without the network.
// Failures here are reported but do not stop the remote steps (they give
// their own, usually the same, verdict).
func (c *checker) checkLocal(o *tunnelOpts) {
	if o.sshKey != "" {
		const step = "SSH private key"
		b, err := os.ReadFile(o.sshKey)
		switch {
		case err != nil:
			c.fail(step, fmt.Sprintf("cannot read %s: %v", o.sshKey, errors.Unwrap(err)), "check the --ssh-key path and its permissions")
		default:
			signer, err := gossh.ParsePrivateKey(b)
			var pme *gossh.PassphraseMissingError
			switch {
			case errors.As(err, &pme) && len(o.passphrase) == 0:
				c.fail(step, o.sshKey+" is encrypted", "put its passphrase in $"+passphraseEnv+", or load it into ssh-agent and use --ssh-agent")
			case errors.As(err, &pme):
				signer, err = gossh.ParsePrivateKeyWithPassphrase(b, o.passphrase)
				if err != nil {
					c.fail(step, "the passphrase in $"+passphraseEnv+" does not decrypt "+o.sshKey, "check the passphrase")
				} else {
					c.ok(step, fmt.Sprintf("%s (%s, %s, decrypted)", o.sshKey, signer.PublicKey().Type(), gossh.FingerprintSHA256(signer.PublicKey())))
				}
			case err != nil:
				c.fail(step, fmt.Sprintf("%s is not a private key: %v", o.sshKey, err), "pass the private key file (e.g. ~/.ssh/id_ed25519), not the .pub")
			default:
				c.ok(step, fmt.Sprintf("%s (%s, %s)", o.sshKey, signer.PublicKey().Type(), gossh.FingerprintSHA256(signer.PublicKey())))
			}
		}
		c.broken = false
	} else if o.sshAgent {
		c.ok("SSH private key", "using ssh-agent at "+o.sshAuthSock)
	}
	if o.knownHosts != "" && (!ssm.IsSelector(o.target) || o.hostKeyAlias != "") {
		// (For a tag target the entry is looked up under the instance id
		// once it is known: the SSH host key step.)
		const step = "known_hosts"
		name := hostKeyName(o)
		cb, err := knownhosts.New(o.knownHosts)
		if err != nil {
			c.fail(step, fmt.Sprintf("cannot read %s: %v", o.knownHosts, err), "check the --known-hosts path and the file's format")
		} else {
			// A key that is in no file: the answer tells whether the host has entries.
			_, probe, _ := ed25519Probe()
			err := cb(knownhostsAddr(name), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, probe)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) && len(ke.Want) == 0 {
				c.fail(step, fmt.Sprintf("%s has no entry for %s", o.knownHosts, name), "the SSH host key step below shows the instance's key fingerprint to add")
			} else {
				c.ok(step, fmt.Sprintf("%s has an entry for %s", o.knownHosts, name))
			}
		}
		c.broken = false
	}
}

// knownhostsAddr is the host argument knownhosts expects for name (it
// needs a port; 22 is written without brackets).
func knownhostsAddr(name string) string {
	if _, _, err := net.SplitHostPort(name); err == nil {
		return name
	}
	return net.JoinHostPort(name, "22")
}

// checkRemote runs the network steps. It returns false if a step failed.
func (c *checker) checkRemote(ctx context.Context, env *Env, o *tunnelOpts, dbc *dbCredOpts, remotes []string) bool {
	var steps []string
	if ssm.IsSelector(o.target) || o.startStopped {
		steps = append(steps, stepTarget)
	}
	steps = append(steps, stepStart, stepAgent)
	if o.instanceConnect {
		steps = append(steps, stepIC)
	}
	steps = append(steps, stepHostKey, stepAuth)
	for _, r := range remotes {
		steps = append(steps, stepDial+" "+r)
	}
	if dbc.enabled() {
		steps = append(steps, stepDBCreds)
	}
	skipFrom := func(step string) {
		after := false
		for _, s := range steps {
			if after {
				c.skip(s)
			}
			if s == step {
				after = true
			}
		}
	}

	if o.cloud == cloudAliyun {
		return c.checkAliyun(ctx, env, o, remotes)
	}
	awsCfg, pool, err := o.awsConfig(ctx, env)
	if err != nil {
		c.fail("AWS configuration", oneLine(err.Error()), "")
		c.skip(stepCredentials)
		for _, s := range steps {
			c.skip(s)
		}
		return false
	}
	endpoint := o.endpointURL
	if endpoint == "" {
		endpoint = env.getenv("AWS_ENDPOINT_URL_SSM")
	}
	if endpoint == "" && awsCfg.BaseEndpoint != nil {
		endpoint = *awsCfg.BaseEndpoint
	}
	if endpoint == "" {
		endpoint = "default for the region"
	}
	profile := o.profile
	if profile == "" {
		profile = "default"
		if p := env.getenv("AWS_PROFILE"); p != "" {
			profile = p
		}
	}
	c.ok("AWS configuration", fmt.Sprintf("region %s, profile %s, endpoint %s", awsCfg.Region, profile, endpoint))

	src, err := credentials(ctx, awsCfg)
	if err != nil {
		c.fail(stepCredentials, oneLine(err.Error()), "")
		for _, s := range steps {
			c.skip(s)
		}
		return false
	}
	c.ok(stepCredentials, "found ("+src+")")

	tctx, cancel := context.WithTimeout(ctx, o.connectTimeout)
	defer cancel()
	if o.direct {
		return c.checkDirect(tctx, env, o, awsCfg, pool, remotes)
	}
	scfg := ssm.Config{
		AWS: awsCfg, Endpoint: o.endpointURL, RootCAs: pool, Target: o.target,
		DocumentName: o.documentName, PortNumber: o.bastionPort, Reason: o.reason, Logger: o.logger(env),
	}
	if ssm.IsSelector(o.target) || o.startStopped {
		scfg.StartStopped = o.startStopped
		inst, err := ssm.ResolveTarget(tctx, scfg)
		if err != nil {
			d := diagnose(err, o)
			if d.step != stepTarget {
				d.step = stepTarget
			}
			c.diag(d)
			skipFrom(stepTarget)
			return false
		}
		started := ""
		if inst.StartedIn > 0 {
			started = fmt.Sprintf(", started in %v", inst.StartedIn.Round(time.Second))
		}
		c.ok(stepTarget, fmt.Sprintf("%s is %s (%s%s)", o.target, inst.ID, inst.PingStatus, started))
		scfg.Target, scfg.StartStopped = inst.ID, false
	}
	sess, err := ssm.Dial(tctx, scfg)
	if err != nil {
		d := diagnose(err, o)
		if d.step == stepAgent {
			c.ok(stepStart, "allowed")
		}
		if d.step == stepCredentials {
			d.step = stepStart
		}
		c.diag(d)
		skipFrom(d.step)
		return false
	}
	defer sess.Close()
	c.ok(stepStart, "session "+sess.ID())
	c.ok(stepAgent, "agent "+sess.AgentVersion())

	sc := o.sshConfig()
	sc.Logger = o.logger(env)
	noHostKey := o.knownHosts == "" && o.hostKey == "" && !o.insecureIgnoreHostKey
	if noHostKey {
		// Nothing to verify against: expect a key that cannot match, so
		// that the failure shows the instance's fingerprint.
		_, sc.HostKey, _ = ed25519Probe()
	}
	var icKey *instanceconnect.Key
	if o.instanceConnect {
		icKey, err = instanceconnect.New(instanceconnect.Config{AWS: awsCfg, InstanceID: scfg.Target, OSUser: o.sshUser, Logger: o.logger(env)})
		if err == nil {
			err = icKey.Push(tctx)
		}
		if err != nil {
			c.diag(diagnose(err, o))
			skipFrom(stepIC)
			return false
		}
		c.ok(stepIC, fmt.Sprintf("throwaway key %s pushed for %s (valid 60 s)", icKey.Fingerprint(), o.sshUser))
		sc.Signers = append(sc.Signers, icKey.Signer())
	}
	client, err := sshx.NewClient(tctx, sess, scfg.Target, sc)
	if err != nil && icKey != nil && errors.Is(err, sshx.ErrAuthFailed) {
		err = icKey.LoginRefused(err)
	}
	if err != nil {
		d := c.loginFailed(diagnose(err, o), noHostKey, "the instance offers %[1]s; verify it (e.g. EC2 console → Get system log) and pass --host-key %[1]s")
		skipFrom(d.step)
		return false
	}
	defer client.Close()
	c.loggedIn(o)

	ok := true
	for _, r := range remotes {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		start := time.Now()
		conn, err := client.DialContext(dctx, "tcp", r)
		dcancel()
		step := stepDial + " " + r
		if err != nil {
			d := diagnoseDial(err, r, o)
			c.failCause(step, d.problem, d.cause, d.advice)
			ok = false
			continue
		}
		conn.Close()
		c.ok(step, fmt.Sprintf("reachable from the instance (%v)", time.Since(start).Round(time.Millisecond)))
	}
	if len(remotes) == 0 {
		fmt.Fprintf(c.out, "       (pass --to HOST:PORT to check a database address too)\n")
	}
	if dbc.enabled() {
		remote := ""
		if len(remotes) > 0 {
			remote = remotes[0]
		}
		if dbc.rdsIAM && remote == "" {
			c.fail(stepDBCreds, "--rds-iam needs the database address", "pass --to HOST:PORT (the RDS endpoint as the instance reaches it)")
			return false
		}
		_, what, err := dbc.login(ctx, awsCfg, remote)
		if err != nil {
			c.fail(stepDBCreds, sanitize(oneLine(err.Error())), "check the secret id and that IAM allows secretsmanager:GetSecretValue (and kms:Decrypt for a customer-managed key); see the README's Credentials section")
			return false
		}
		c.ok(stepDBCreds, what)
	}
	return ok
}

// ed25519Probe returns a fixed throw-away public key that no known_hosts
// file lists.
func ed25519Probe() (string, gossh.PublicKey, error) {
	// 32 bytes of a fixed, non-secret value.
	raw := []byte("jumpless-known-hosts-probe-key!!")
	pub, err := gossh.NewPublicKey(ed25519.PublicKey(raw))
	return "probe", pub, err
}

// loginFailed reports a failed SSH login (d, from diagnose or
// diagnoseAliyun) and returns it as reported. With noHostKey (nothing to
// verify against), a host key failure becomes advice to verify the offered
// key: verifyHint, a format whose %[1]s is the offered key, says how.
func (c *checker) loginFailed(d diagnosis, noHostKey bool, verifyHint string) diagnosis {
	if noHostKey && d.step == stepHostKey {
		offered := orUnknown(d.offered)
		d.problem = "no host key to verify against (no --known-hosts, no --host-key, no ~/.ssh/known_hosts); the instance offers " + offered
		d.cause = ""
		d.advice = fmt.Sprintf(verifyHint, offered) + ", or add this line to a known_hosts file: " + orUnknown(d.knownHostsLine)
	}
	if d.step == stepAuth {
		c.ok(stepHostKey, "verified")
	}
	c.diag(d)
	return d
}

// loggedIn reports the host key and login steps of a successful SSH login.
func (c *checker) loggedIn(o *tunnelOpts) {
	if o.insecureIgnoreHostKey {
		c.ok(stepHostKey, "NOT verified (--insecure-ignore-host-key)")
	} else {
		c.ok(stepHostKey, "verified against "+hostKeySource(o))
	}
	c.ok(stepAuth, fmt.Sprintf("logged in as %s with %s", o.sshUser, keyName(o)))
}
