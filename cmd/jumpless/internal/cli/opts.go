package cli

import (
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
)

// passphraseEnv holds the private key's passphrase. There is deliberately
// no flag for it: command lines are visible to every local user (ps).
const passphraseEnv = "JUMPLESS_SSH_KEY_PASSPHRASE"

// tunnelOpts are the flags shared by forward, run and check.
type tunnelOpts struct {
	target       string
	profile      string
	region       string
	endpointURL  string
	caBundle     string
	documentName string
	reason       string
	bastionPort  int
	startStopped bool

	sshUser               string
	sshKey                string
	instanceConnect       bool
	sshAgent              bool
	knownHosts            string
	hostKey               string
	hostKeyAlias          string
	insecureIgnoreHostKey bool

	sessions       int
	connectTimeout time.Duration
	verbose        bool

	// mode is --mode: "auto", "ssh" or "direct"; validate resolves auto.
	mode string
	// direct: the tunnel needs no SSH (tunnel.ModeDirect).
	direct bool
	// destinations are opened with the tunnel in direct mode (the -L/--to
	// targets), so that a refused address fails at once.
	destinations []string
	fs           *flagSet

	// cloud is --cloud: "aws" (the default) or "aliyun" (Alibaba Cloud
	// Assistant Session Manager; see aliyun.go).
	cloud string
	// instanceID is --instance-id, the Alibaba name for the instance;
	// validate copies it to target.
	instanceID string
	// aliyunProfile is --aliyun-profile: the Alibaba credentials profile.
	aliyunProfile string
	// connectionType is --connection-type: Internet or Intranet (Alibaba).
	connectionType string
	// tempKey: log in with a temporary key registered through Cloud
	// Assistant (Alibaba, SSH mode, no --ssh-key or --ssh-agent).
	tempKey bool

	// passphrase comes from $JUMPLESS_SSH_KEY_PASSPHRASE; never printed.
	passphrase []byte
	// sshAuthSock is $SSH_AUTH_SOCK, used when --ssh-agent is given.
	sshAuthSock string
}

func (o *tunnelOpts) register(s *flagSet) {
	o.fs = s
	s.group("Tunnel profile (a named tunnel in a config file; see 'jumpless help')")
	s.profiles = true
	s.stringVar(&s.tunnelName, "tunnel", "NAME", "", "take the flags of [tunnel.NAME] from the config file, like 'jumpless "+s.cmd+" NAME'; flags given here win")
	s.stringVar(&s.configPath, "config", "FILE", "", "config file with [tunnel.NAME] tables (default $"+configEnv+", else ~/.config/jumpless/config.toml)")
	s.setEnvName("config", configEnv)
	s.group("Cloud")
	s.stringVar(&o.cloud, "cloud", "NAME", "aws", "whose session manager carries the tunnel: aws (Systems Manager Session Manager) or aliyun (Alibaba Cloud Assistant Session Manager; see the Alibaba Cloud flags)")
	s.group("Session Manager (AWS)")
	s.stringVar(&o.target, "target", "ID", "", "EC2 instance (i-...), managed node (mi-...) or tag selector (tag:Name=etl-bastion: the one instance with that tag whose agent is online) running the SSM agent and sshd; required")
	s.stringVar(&o.profile, "profile", "NAME", "", "AWS shared config profile, as with the AWS CLI (default: $AWS_PROFILE or \"default\")")
	s.stringVar(&o.region, "region", "REGION", "", "AWS region (default: $AWS_REGION or the profile's region)")
	s.stringVar(&o.endpointURL, "endpoint-url", "URL", "", "SSM API endpoint, e.g. a VPC endpoint or the jumpless emulator (default: $AWS_ENDPOINT_URL_SSM, $AWS_ENDPOINT_URL or the region's)")
	s.stringVar(&o.caBundle, "ca-bundle", "FILE", "", "PEM file of extra CA certificates to trust for the SSM API and data channel, e.g. the emulator's CA (default: $AWS_CA_BUNDLE)")
	s.stringVar(&o.documentName, "document-name", "NAME", "", "Session Manager document (default AWS-StartSSHSession)")
	s.intVar(&o.bastionPort, "bastion-port", "PORT", 22, "port of sshd on the instance")
	s.stringVar(&o.reason, "reason", "TEXT", "", "reason recorded with the session in CloudTrail")
	s.boolVar(&o.startStopped, "start-stopped", "start the bastion if it is stopped (AWS-StartEC2Instance runbook) and wait up to 5 min for its agent; jumpless never stops it")

	s.group("Alibaba Cloud (--cloud aliyun; also --region, --endpoint-url, --ca-bundle, --bastion-port)")
	s.stringVar(&o.instanceID, "instance-id", "ID", "", "ECS instance (i-...) running the Cloud Assistant agent (≥ 2.2.3.256); required with --cloud aliyun (--target works too). --region is its region id (default $ALIBABA_CLOUD_REGION_ID), e.g. cn-hangzhou")
	s.stringVar(&o.aliyunProfile, "aliyun-profile", "NAME", "", "credentials profile of the Alibaba Cloud CLI (~/.aliyun/config.json) or of ~/.alibabacloud/credentials (default: $ALIBABA_CLOUD_PROFILE; without either, Alibaba's default chain: ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET and ALIBABA_CLOUD_SECURITY_TOKEN, OIDC RAM role, profile, ECS RAM role)")
	s.stringVar(&o.connectionType, "connection-type", "TYPE", "", "network of the session's websocket: Internet or Intranet (default: the API's, Internet)")

	s.group("SSH (on the instance)")
	s.stringVar(&o.sshUser, "ssh-user", "USER", "", "login name on the instance (default "+sshx.DefaultUser+", the Amazon Linux user; your local user name when the SSM endpoint is on this machine, i.e. the jumpless emulator in front of a local sshd)")
	s.stringVar(&o.sshKey, "ssh-key", "FILE", "", "private key file (OpenSSH or PEM); if it is encrypted put the passphrase in $"+passphraseEnv)
	s.boolVar(&o.instanceConnect, "instance-connect", "log in with a throwaway key pushed through EC2 Instance Connect (no key file; EC2 instances only)")
	s.boolVar(&o.sshAgent, "ssh-agent", "authenticate with the keys of ssh-agent ($SSH_AUTH_SOCK); the default when --ssh-key is not given and $SSH_AUTH_SOCK is set")
	s.stringVar(&o.knownHosts, "known-hosts", "FILE", "", "known_hosts file holding the instance's host key (default ~/.ssh/known_hosts when it exists)")
	s.stringVar(&o.hostKey, "host-key", "SHA256:...", "", "expected host key fingerprint, instead of --known-hosts ('jumpless check' shows it)")
	s.stringVar(&o.hostKeyAlias, "host-key-alias", "NAME", "", "name to look up in known_hosts (default: the target id)")
	s.boolVar(&o.insecureIgnoreHostKey, "insecure-ignore-host-key", "do not verify the host key (anyone on the path can read the data); for throw-away tests only")

	s.group("Tunnel")
	s.stringVar(&o.mode, "mode", "MODE", "auto", "ssh: SSH to the instance's sshd, connections as SSH channels (needs a key; host key verified; half-close); direct: the SSM agent forwards each connection itself (no sshd, no key; AWS-StartPortForwardingSessionToRemoteHost); auto: ssh when an SSH flag (--ssh-key, --ssh-agent, --known-hosts, --host-key, ...) is given, else direct")
	s.intVar(&o.sessions, "sessions", "N", 1, "parallel Session Manager sessions to spread connections over")
	s.durationVar(&o.connectTimeout, "connect-timeout", "DURATION", 60*time.Second, "limit for opening the tunnel (session + SSH handshake)")
	s.boolVar(&o.verbose, "verbose", "log protocol events to stderr")
}

var targetRE = regexp.MustCompile(`^(i|mi)-[0-9a-f]{8,17}$`)

// validate checks the flags and fills in defaults from the environment.
// Every error is a usage error.
func (o *tunnelOpts) validate(cmd string, env *Env) error {
	switch o.cloud {
	case "", "aws":
		o.cloud = cloudAWS
		if given := o.flagsGiven(env, aliyunOnlyFlags); len(given) > 0 {
			return usagef("%s %s for --cloud aliyun: add --cloud aliyun, or drop it (AWS takes --target, --profile)", strings.Join(given, ", "), isAre(given))
		}
	case "aliyun", "alibaba", "alibabacloud":
		o.cloud = cloudAliyun
		return o.validateAliyun(cmd, env)
	default:
		return usagef("--cloud %q: want aws or aliyun", o.cloud)
	}
	if o.target == "" {
		return usagef("--target is required (an EC2 instance id like i-0123456789abcdef0)")
	}
	if ssm.IsSelector(o.target) {
		if _, _, err := ssm.ParseSelector(o.target); err != nil {
			return usagef("--target %q: want tag:KEY=VALUE, like tag:Name=etl-bastion", o.target)
		}
	} else if !targetRE.MatchString(o.target) {
		return usagef("--target %q is not an instance id (want i- or mi- and 8 or 17 hex digits, like i-0123456789abcdef0) or a tag selector (tag:Name=etl-bastion)", o.target)
	}
	if o.instanceConnect && strings.HasPrefix(o.target, "mi-") {
		return usagef("--instance-connect works with EC2 instances (i-...) only, not managed node %s: pass --ssh-key instead", o.target)
	}
	if o.bastionPort < 1 || o.bastionPort > 65535 {
		return usagef("--bastion-port %d: want a number 1-65535", o.bastionPort)
	}
	if o.sessions < 1 || o.sessions > 64 {
		return usagef("--sessions %d: want a number 1-64", o.sessions)
	}
	if o.connectTimeout <= 0 {
		return usagef("--connect-timeout %v: want a positive duration like 60s", o.connectTimeout)
	}
	sshFlags := o.sshFlagsGiven(env)
	switch o.mode {
	case "auto":
		o.direct = len(sshFlags) == 0
	case "ssh":
	case "direct":
		if len(sshFlags) > 0 {
			return usagef("--mode direct uses no SSH, but %s given: drop it, or use --mode ssh", strings.Join(sshFlags, ", "))
		}
		o.direct = true
	default:
		return usagef("--mode %q: want ssh, direct or auto", o.mode)
	}
	if o.direct {
		o.caBundle = expandHome(o.caBundle)
		return nil
	}
	if o.endpointURL != "" && !strings.HasPrefix(o.endpointURL, "https://") && !strings.HasPrefix(o.endpointURL, "http://") {
		return usagef("--endpoint-url %q: want an http:// or https:// URL", o.endpointURL)
	}
	if o.sshUser == "" {
		o.sshUser = defaultSSHUser(o.endpointURL, env)
	}
	return o.validateSSH(cmd, env)
}

// validateSSH checks the SSH flags (ModeSSH) of either cloud and fills in
// their defaults; o.sshUser is set by then.
func (o *tunnelOpts) validateSSH(cmd string, env *Env) error {
	if o.hostKey != "" && !strings.HasPrefix(o.hostKey, "SHA256:") {
		return usagef("--host-key %q: want a SHA256 fingerprint like SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", o.hostKey)
	}
	o.sshKey = expandHome(o.sshKey)
	o.knownHosts = expandHome(o.knownHosts)
	o.caBundle = expandHome(o.caBundle)
	o.sshAuthSock = env.getenv("SSH_AUTH_SOCK")
	switch {
	case o.cloud == cloudAliyun && o.sshKey == "" && !o.sshAgent:
		// Alibaba's way: a key made in memory and registered through
		// Cloud Assistant for 60 s (no key file, nothing on disk).
		o.tempKey = true
	case o.sshKey == "" && !o.sshAgent && !o.instanceConnect:
		if o.sshAuthSock == "" {
			return usagef("no SSH credentials: pass --ssh-key FILE (e.g. ~/.ssh/id_ed25519), --instance-connect, or --ssh-agent with $SSH_AUTH_SOCK set")
		}
		o.sshAgent = true
	}
	if o.sshAgent && o.sshKey == "" && o.sshAuthSock == "" {
		return usagef("--ssh-agent: $SSH_AUTH_SOCK is not set (start ssh-agent, or pass --ssh-key FILE)")
	}
	if p := env.getenv(passphraseEnv); p != "" {
		// sshx ignores it for an unencrypted key (the variable may be
		// set for other keys), as OpenSSH does.
		o.passphrase = []byte(p)
	}
	if o.knownHosts == "" && o.hostKey == "" && !o.insecureIgnoreHostKey {
		if def := expandHome("~/.ssh/known_hosts"); def != "" {
			if _, err := os.Stat(def); err == nil {
				o.knownHosts = def
			}
		}
		if o.knownHosts == "" && cmd != "check" {
			return usagef("no way to verify the SSH host key: pass --known-hosts FILE or --host-key SHA256:... (run 'jumpless check' to see the instance's fingerprint)")
		}
	}
	if o.insecureIgnoreHostKey && (o.knownHosts != "" || o.hostKey != "") {
		return usagef("--insecure-ignore-host-key cannot be combined with --known-hosts or --host-key")
	}
	return nil
}

// sshFlagsGiven lists the SSH-only flags given on the command line or in
// the environment.
func (o *tunnelOpts) sshFlagsGiven(env *Env) []string {
	return o.flagsGiven(env, []string{"ssh-key", "ssh-agent", "ssh-user", "known-hosts", "host-key", "host-key-alias", "insecure-ignore-host-key", "bastion-port", "document-name", "instance-connect"})
}

// flagsGiven lists those of names given on the command line, in the
// environment or in a tunnel profile, as "--name".
func (o *tunnelOpts) flagsGiven(env *Env, names []string) []string {
	if o.fs == nil {
		return nil
	}
	var given []string
	for _, name := range names {
		if o.fs.isSet(env, name) {
			given = append(given, "--"+name)
		}
	}
	return given
}

// isAre is "is" for one flag, "are" for more.
func isAre(list []string) string {
	if len(list) == 1 {
		return "is"
	}
	return "are"
}

// defaultSSHUser is the login name when --ssh-user is not given: ec2-user
// (sshx.DefaultUser) for AWS, the local user name when the SSM endpoint
// (--endpoint-url, $AWS_ENDPOINT_URL_SSM or $AWS_ENDPOINT_URL) is on
// loopback: the emulator, whose targets are normally this machine's sshd,
// where ssh's own default (the local user) is the one that works.
func defaultSSHUser(endpointURL string, env *Env) string {
	for _, e := range []string{endpointURL, env.getenv("AWS_ENDPOINT_URL_SSM"), env.getenv("AWS_ENDPOINT_URL")} {
		if e == "" {
			continue
		}
		if isLoopbackURL(e) {
			if u, err := user.Current(); err == nil && u.Username != "" {
				return u.Username
			}
		}
		break // the first endpoint set is the one the SDK uses
	}
	return sshx.DefaultUser
}

// isLoopbackURL reports whether rawURL's host is localhost or a loopback IP.
func isLoopbackURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// expandHome replaces a leading "~/" with the home directory.
func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return p
		}
		return filepath.Join(home, p[1:])
	}
	return p
}

// parseSpecs parses -L specs and --to (at most one of --to).
func parseSpecs(locals []string, to string) ([]forwardSpec, error) {
	var specs []forwardSpec
	for _, l := range locals {
		f, err := parseForwardSpec(l)
		if err != nil {
			return nil, usagef("%v", err)
		}
		specs = append(specs, f)
	}
	if to != "" {
		f, err := parseRemote(to)
		if err != nil {
			return nil, usagef("%v", err)
		}
		specs = append(specs, f)
	}
	return specs, nil
}

// setDestinations records the forwards' remote addresses (opened with the
// tunnel in direct mode).
func (o *tunnelOpts) setDestinations(specs []forwardSpec) {
	o.destinations = o.destinations[:0]
	for _, sp := range specs {
		if !slices.Contains(o.destinations, sp.Remote) {
			o.destinations = append(o.destinations, sp.Remote)
		}
	}
}
