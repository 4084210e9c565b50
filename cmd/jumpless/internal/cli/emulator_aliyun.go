package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/jumpless/jumpless/aliyun/aliyuntest"
)

// runAliyunEmulator is "jumpless emulator --cloud aliyun": the Alibaba
// Cloud Assistant Session Manager emulator (package aliyuntest) in the
// foreground. Its instances reach their own ports on the host of
// --target-addr (the port is the client's: --bastion-port in SSH mode, the
// -L/--to port in direct mode).
func runAliyunEmulator(ctx context.Context, env *Env, o *emulatorOpts, s *flagSet) error {
	for _, f := range []string{"listen", "tls", "ca-file", "agent-version"} {
		if s.isSet(env, f) {
			return usagef("--%s is for the AWS emulator only: the Alibaba emulator serves http:// and ws:// on a free port of 127.0.0.1", f)
		}
	}
	if (o.accessKeyID == "") != (o.secretKey == "") {
		return usagef("--access-key-id and --secret-access-key go together: give both or neither")
	}
	cfg := aliyuntest.Config{
		Instances:       map[string]string{},
		AccessKeyID:     o.accessKeyID,
		AccessKeySecret: o.secretKey,
		AuthorizedKeys:  expandHome(o.authorizedKeys),
	}
	if s.isSet(env, "region") {
		cfg.Region = o.region
	}
	switch strings.ToLower(o.pacing) {
	case "realistic": // the measured agent: 1 s dial delay, 24.3 KB/s per connection
	case "unpaced":
		cfg.FlowLimit, cfg.DialDelay = aliyuntest.UnpacedRate, -1
	default:
		return usagef("--pacing %q: want realistic or unpaced", o.pacing)
	}
	for _, h := range o.hosts {
		name, addr, ok := strings.Cut(h, "=")
		if !ok || name == "" || addr == "" {
			return usagef("--host %q: want NAME=ADDR, e.g. db.internal=127.0.0.1", h)
		}
		if cfg.Hosts == nil {
			cfg.Hosts = map[string]string{}
		}
		cfg.Hosts[name] = addr
	}
	targets := o.targets
	if len(targets) == 0 {
		targets = []string{o.targetID + "=" + o.targetAddr}
	} else if s.isSet(env, "target-id") || s.isSet(env, "target-addr") {
		return usagef("--target ID=HOST:PORT cannot be combined with --target-id or --target-addr")
	}
	var ids []string
	ports := map[string]string{}
	for _, t := range targets {
		id, addr, ok := strings.Cut(t, "=")
		host, port, err := net.SplitHostPort(addr)
		if !ok || err != nil || host == "" {
			return usagef("--target %q: want ID=HOST:PORT, e.g. i-bp67acfmxazb4ph6ayrq=127.0.0.1:22", t)
		}
		if !aliyunInstanceRE.MatchString(id) {
			return usagef("instance id %q is not an ECS instance id (want i- and lower-case letters and digits, like i-bp67acfmxazb4ph6ayrq)", id)
		}
		if _, dup := cfg.Instances[id]; dup {
			return usagef("--target %q: %s given twice", t, id)
		}
		cfg.Instances[id], ports[id] = host, port
		ids = append(ids, id)
	}
	if o.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := aliyuntest.NewServer(cfg)
	if err != nil {
		return fmt.Errorf("cannot start the emulator: %w", err)
	}
	defer srv.Close()
	lines := []string{
		"ALIBABA_CLOUD_ACCESS_KEY_ID=" + srv.AccessKeyID(),
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET=" + srv.AccessKeySecret(),
		"ALIBABA_CLOUD_REGION_ID=" + srv.Region(),
		"JUMPLESS_CLOUD=aliyun",
		"JUMPLESS_ENDPOINT_URL=" + srv.Endpoint(),
		"JUMPLESS_INSTANCE_ID=" + ids[0],
	}
	banner, removeEnv, err := o.publishEnv(env, strings.Join(lines, "\n")+"\n")
	if err != nil {
		return err
	}
	defer removeEnv()
	fmt.Fprintf(banner, "jumpless emulator (Alibaba Cloud Assistant) listening\n")
	fmt.Fprintf(banner, "  endpoint:          %s   (--endpoint-url)\n", srv.Endpoint())
	fmt.Fprintf(banner, "  region:            %s   (--region, or ALIBABA_CLOUD_REGION_ID)\n", srv.Region())
	fmt.Fprintf(banner, "  access key id:     %s\n", srv.AccessKeyID())
	fmt.Fprintf(banner, "  access key secret: %s   (emulator test credential)\n", srv.AccessKeySecret())
	for _, id := range ids {
		hint := ""
		if ports[id] != "22" {
			hint = "   (sshd: --bastion-port " + ports[id] + ")"
		}
		fmt.Fprintf(banner, "  instance:          %s → ports of %s%s\n", id, cfg.Instances[id], hint)
	}
	fmt.Fprintf(banner, "  pacing:            %s\n", strings.ToLower(o.pacing))
	if cfg.AuthorizedKeys != "" {
		abs, _ := filepath.Abs(cfg.AuthorizedKeys)
		fmt.Fprintf(banner, "  temporary keys:    installed in %s for 60 s\n", abs)
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
	fmt.Fprintf(banner, "emulator stopped: %d sessions started, %d ended\n", st.SessionsStarted, st.SessionsEnded)
	return nil
}
