package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// defaultEmulatorTarget is the instance id the emulator serves when only
// --target-addr is given.
const defaultEmulatorTarget = "i-0123456789abcdef0"

const emulatorAbout = `Runs the local Session Manager emulator (the SSM API, the data-channel
gateway and the agent side of AWS-StartSSHSession) in the foreground, for
trying jumpless and for your own tests without an AWS account. The emulated
agent connects each session to the TCP address configured for its target,
normally an sshd. It prints its endpoint, the (test) credentials it accepts
and the target ids it serves, and runs until Ctrl-C or SIGTERM.

It listens on 127.0.0.1 on a free port unless --listen gives an address:
pass e.g. --listen 127.0.0.1:4566 for an endpoint that stays the same
between runs (for config files). Listening on other interfaces than
loopback exposes the emulator, and the sshd behind it, to the network.

The credentials are generated for this emulator (or set with flags) and are
accepted only by it. With --print-env the settings are printed as KEY=VALUE
lines on stdout (the banner then goes to stderr); --env-file writes the same
lines to a file once the emulator is ready.`

const emulatorExamples = `  # serve i-0123456789abcdef0 → the local sshd
  jumpless emulator --target-addr 127.0.0.1:22

  # a fixed endpoint, http://127.0.0.1:4566
  jumpless emulator --listen 127.0.0.1:4566 --target-addr 127.0.0.1:22

  # two targets, TLS, settings for other shells in emu.env
  jumpless emulator --target i-0aaaaaaaaaaaaaaaa=10.0.0.5:22 \
      --target i-0bbbbbbbbbbbbbbbb=127.0.0.1:2222 --tls --ca-file emu-ca.pem --env-file emu.env

  # in another shell:
  set -a; . ./emu.env; set +a
  jumpless forward --target i-0aaaaaaaaaaaaaaaa --ca-bundle emu-ca.pem \
      --ssh-key ~/.ssh/id_ed25519 --known-hosts ~/.ssh/known_hosts -L 15432:db:5432`

type emulatorOpts struct {
	listen       string
	targetAddr   string
	targetID     string
	targets      []string
	hosts        []string
	pacing       string
	tls          bool
	caFile       string
	accessKeyID  string
	secretKey    string
	region       string
	agentVersion string
	printEnv     bool
	envFile      string
	verbose      bool
	// cloud is --cloud: aws (the SSM emulator) or aliyun (aliyuntest).
	cloud string
	// authorizedKeys is --authorized-keys (aliyun): where temporary keys go.
	authorizedKeys string
}

func runEmulator(ctx context.Context, env *Env, args []string) error {
	var o emulatorOpts
	s := newFlagSet("emulator", "jumpless emulator [flags]", emulatorAbout, emulatorExamples)
	s.group("Cloud")
	s.stringVar(&o.cloud, "cloud", "NAME", "aws", "which session manager to emulate: aws (SSM API, data channel, agent) or aliyun (Alibaba Cloud Assistant: ECS OpenAPI with signatures, websocket client leg, emulated agent; see below)")
	s.stringVar(&o.authorizedKeys, "authorized-keys", "FILE", "", "aliyun: the sshd authorized_keys file where Cloud Assistant's temporary-key command installs a key for 60 s (default: the command fails, as on an instance without the plug-in)")
	s.group("Targets")
	s.stringVar(&o.targetAddr, "target-addr", "HOST:PORT", "127.0.0.1:22", "TCP address the agent connects sessions to (for --target-id)")
	s.stringVar(&o.targetID, "target-id", "ID", defaultEmulatorTarget, "instance id served, connected to --target-addr")
	s.listVar(&o.targets, "target", "", "ID=HOST:PORT", "serve instance ID, connected to HOST:PORT; repeatable; replaces --target-id/--target-addr")
	s.listVar(&o.hosts, "host", "", "NAME=ADDR", "the emulated instance resolves NAME to ADDR in port sessions (direct mode), e.g. db.internal=127.0.0.1; repeatable")
	s.setEnvName("target", "JUMPLESS_EMULATOR_TARGETS")
	s.group("Emulation")
	s.stringVar(&o.listen, "listen", "ADDR", "127.0.0.1:0", "HOST:PORT to serve the SSM API and data channel on (PORT 0: a free port; the endpoint is printed)")
	s.setEnvName("listen", "JUMPLESS_EMULATOR_LISTEN")
	s.stringVar(&o.pacing, "pacing", "MODE", "realistic", "agent data pacing: realistic (like AWS, about 1 KiB per message and ms) or unpaced (as fast as possible)")
	s.stringVar(&o.agentVersion, "agent-version", "VERSION", "", "agent version announced in the handshake (default "+ssmtest.DefaultAgentVersion+")")
	s.boolVar(&o.tls, "tls", "serve https:// and wss:// with a generated CA (see --ca-file)")
	s.stringVar(&o.caFile, "ca-file", "FILE", "", "write the generated CA certificate (PEM) here, for 'jumpless --ca-bundle FILE'; implies --tls")
	s.group("Credentials (accepted only by this emulator)")
	s.stringVar(&o.accessKeyID, "access-key-id", "ID", "", "access key id to accept (default: generated)")
	s.stringVar(&o.secretKey, "secret-access-key", "KEY", "", "secret access key to accept (default: generated)")
	s.stringVar(&o.region, "region", "REGION", ssmtest.DefaultRegion, "region requests must be signed for")
	s.group("Output")
	s.boolVar(&o.printEnv, "print-env", "print KEY=VALUE lines (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_SSM, JUMPLESS_TARGET, JUMPLESS_CA_BUNDLE) on stdout")
	s.stringVar(&o.envFile, "env-file", "FILE", "", "write the KEY=VALUE lines of --print-env to FILE once ready (removed on exit)")
	s.boolVar(&o.verbose, "verbose", "log sessions and protocol events to stderr")
	if err := s.parse(env, args); err != nil {
		return err
	}
	if s.fs.NArg() > 0 {
		return usagef("unexpected argument %q (emulator takes only flags)", s.fs.Arg(0))
	}
	switch o.cloud {
	case "", "aws":
		if s.isSet(env, "authorized-keys") {
			return usagef("--authorized-keys is for --cloud aliyun (the AWS emulator has EC2 Instance Connect's keys in memory)")
		}
	case "aliyun", "alibaba", "alibabacloud":
		return runAliyunEmulator(ctx, env, &o, s)
	default:
		return usagef("--cloud %q: want aws or aliyun", o.cloud)
	}
	cfg, err := o.config(s, env)
	if err != nil {
		return err
	}
	if o.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := ssmtest.NewServer(cfg)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "listen" {
			return fmt.Errorf("--listen %s: cannot listen: %w (pick another port, or 0 for a free one)", o.listen, errors.Unwrap(oe))
		}
		return fmt.Errorf("cannot start the emulator: %w", err)
	}
	defer srv.Close()

	if cfg.TLS && o.caFile != "" {
		if err := writeFileAtomic(o.caFile, srv.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
	}
	ak, sk := srv.Credentials()
	ids := make([]string, 0, len(cfg.Targets))
	for id := range cfg.Targets {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	caPath := ""
	if o.caFile != "" {
		caPath, _ = filepath.Abs(o.caFile)
	}
	lines := []string{
		"AWS_ACCESS_KEY_ID=" + ak,
		"AWS_SECRET_ACCESS_KEY=" + sk,
		"AWS_REGION=" + srv.Region(),
		"AWS_ENDPOINT_URL_SSM=" + srv.URL(),
		"JUMPLESS_TARGET=" + ids[0],
	}
	if caPath != "" {
		lines = append(lines, "JUMPLESS_CA_BUNDLE="+caPath)
	}
	banner, removeEnv, err := o.publishEnv(env, strings.Join(lines, "\n")+"\n")
	if err != nil {
		return err
	}
	defer removeEnv()
	fmt.Fprintf(banner, "jumpless emulator listening\n")
	fmt.Fprintf(banner, "  endpoint:          %s   (--endpoint-url, or AWS_ENDPOINT_URL_SSM)\n", srv.URL())
	fmt.Fprintf(banner, "  region:            %s\n", srv.Region())
	fmt.Fprintf(banner, "  access key id:     %s\n", ak)
	fmt.Fprintf(banner, "  secret access key: %s   (emulator test credential)\n", sk)
	for _, id := range ids {
		fmt.Fprintf(banner, "  target:            %s → %s\n", id, cfg.Targets[id])
	}
	fmt.Fprintf(banner, "  pacing:            %s\n", strings.ToLower(cfg.Pacing.String()))
	if cfg.TLS {
		if caPath != "" {
			fmt.Fprintf(banner, "  CA certificate:    %s   (--ca-bundle)\n", caPath)
		} else {
			fmt.Fprintf(banner, "  TLS:               on (pass --ca-file FILE to save the CA for --ca-bundle)\n")
		}
	}
	fmt.Fprintf(banner, "Stop with Ctrl-C.\n")

	select {
	case <-ctx.Done():
	case sig := <-env.Signals:
		fmt.Fprintf(banner, "received %v, stopping\n", sig)
	}
	st := srv.Stats()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("closing the emulator: %w", err)
	}
	fmt.Fprintf(banner, "emulator stopped: %d sessions started, %d terminated\n", st.SessionsStarted, st.SessionsTerminated)
	return nil
}

// config turns the flags into an ssmtest.Config.
func (o *emulatorOpts) config(s *flagSet, env *Env) (ssmtest.Config, error) {
	cfg := ssmtest.Config{
		Addr:            o.listen,
		AccessKeyID:     o.accessKeyID,
		SecretAccessKey: o.secretKey,
		Region:          o.region,
		AgentVersion:    o.agentVersion,
		TLS:             o.tls || o.caFile != "",
		Targets:         map[string]string{},
	}
	if (o.accessKeyID == "") != (o.secretKey == "") {
		return cfg, usagef("--access-key-id and --secret-access-key go together: give both or neither")
	}
	if host, port, err := net.SplitHostPort(o.listen); err != nil {
		return cfg, usagef("--listen %q: want HOST:PORT, e.g. 127.0.0.1:4566 (port 0: a free port)", o.listen)
	} else if _, err := parsePort(port, true); err != nil {
		return cfg, usagef("--listen %q: port: %v", o.listen, err)
	} else if host == "" {
		return cfg, usagef("--listen %q: give the host too, e.g. 127.0.0.1%s (0.0.0.0 for every interface)", o.listen, o.listen)
	}
	for _, h := range o.hosts {
		name, addr, ok := strings.Cut(h, "=")
		if !ok || name == "" || addr == "" {
			return cfg, usagef("--host %q: want NAME=ADDR, e.g. db.internal=127.0.0.1", h)
		}
		if cfg.Hosts == nil {
			cfg.Hosts = map[string]string{}
		}
		cfg.Hosts[name] = addr
	}
	switch strings.ToLower(o.pacing) {
	case "realistic":
		cfg.Pacing = ssmtest.Realistic
	case "unpaced":
		cfg.Pacing = ssmtest.Unpaced
	default:
		return cfg, usagef("--pacing %q: want realistic or unpaced", o.pacing)
	}
	if len(o.targets) > 0 {
		if s.isSet(env, "target-id") || s.isSet(env, "target-addr") {
			return cfg, usagef("--target ID=HOST:PORT cannot be combined with --target-id or --target-addr")
		}
		for _, t := range o.targets {
			id, addr, ok := strings.Cut(t, "=")
			if !ok {
				return cfg, usagef("--target %q: want ID=HOST:PORT, e.g. i-0123456789abcdef0=127.0.0.1:22", t)
			}
			if err := checkEmulatorTarget(id, addr); err != nil {
				return cfg, usagef("--target %q: %v", t, err)
			}
			if _, dup := cfg.Targets[id]; dup {
				return cfg, usagef("--target %q: %s given twice", t, id)
			}
			cfg.Targets[id] = addr
		}
		return cfg, nil
	}
	if err := checkEmulatorTarget(o.targetID, o.targetAddr); err != nil {
		return cfg, usagef("%v", err)
	}
	cfg.Targets[o.targetID] = o.targetAddr
	return cfg, nil
}

func checkEmulatorTarget(id, addr string) error {
	if !targetRE.MatchString(id) {
		return fmt.Errorf("target id %q is not an instance id (want i- or mi- and 8 or 17 hex digits, like i-0123456789abcdef0)", id)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("target address %q: want HOST:PORT, e.g. 127.0.0.1:22", addr)
	}
	if _, err := parsePort(port, false); err != nil {
		return fmt.Errorf("target address %q: port: %v", addr, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file and rename,
// so a reader never sees a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// publishEnv writes envText (the emulator's environment) to --env-file,
// which the returned remove deletes when the emulator stops, and with
// --print-env to stdout. It returns where the banner goes: stdout, or
// stderr when stdout carries the environment.
func (o *emulatorOpts) publishEnv(env *Env, envText string) (banner io.Writer, remove func(), err error) {
	remove = func() {}
	if o.envFile != "" {
		if err := writeFileAtomic(o.envFile, []byte(envText), 0o600); err != nil {
			return nil, nil, fmt.Errorf("--env-file: %w", err)
		}
		remove = func() { os.Remove(o.envFile) }
	}
	banner = env.Stdout
	if o.printEnv {
		banner = env.Stderr
		if _, err := io.WriteString(env.Stdout, envText); err != nil {
			remove()
			return nil, nil, err
		}
	}
	return banner, remove, nil
}
