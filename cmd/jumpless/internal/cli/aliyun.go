package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"regexp"
	"strings"
	"time"

	alicred "github.com/aliyun/credentials-go/credentials"
	"github.com/aliyun/credentials-go/credentials/providers"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/tunnel"
)

// The clouds of --cloud.
const (
	cloudAWS    = "aws"
	cloudAliyun = "aliyun"
)

// aliyunOnlyFlags are the flags that mean nothing to AWS.
var aliyunOnlyFlags = []string{"instance-id", "aliyun-profile", "connection-type"}

// awsOnlyFlags are the flags that mean nothing to Alibaba Cloud.
var awsOnlyFlags = []string{"profile", "document-name", "reason", "start-stopped", "instance-connect"}

// aliyunInstanceRE is what Alibaba's instance ids look like (i- and lower-
// case letters and digits); aliyun.Config.Validate has the final word.
var aliyunInstanceRE = regexp.MustCompile(`^i-[0-9a-z]{6,40}$`)

// aliyunRegionEnv is the region variable of Alibaba's tools.
const aliyunRegionEnv = "ALIBABA_CLOUD_REGION_ID"

// validateAliyun checks the flags for --cloud aliyun (Alibaba Cloud
// Assistant Session Manager) and fills in defaults. Every error is a usage
// error.
func (o *tunnelOpts) validateAliyun(cmd string, env *Env) error {
	if given := o.flagsGiven(env, awsOnlyFlags); len(given) > 0 {
		return usagef("%s %s for AWS only: drop it with --cloud aliyun (Alibaba credentials: --aliyun-profile or ALIBABA_CLOUD_* variables)", strings.Join(given, ", "), isAre(given))
	}
	switch {
	case o.instanceID != "" && o.target != "" && o.instanceID != o.target:
		return usagef("--instance-id %q and --target %q name different instances: give one", o.instanceID, o.target)
	case o.instanceID != "":
		o.target = o.instanceID
	}
	if o.target == "" {
		return usagef("--instance-id is required with --cloud aliyun (an ECS instance id like i-bp67acfmxazb4ph6ayrq)")
	}
	if !aliyunInstanceRE.MatchString(o.target) {
		return usagef("--instance-id %q is not an ECS instance id (want i- and lower-case letters and digits, like i-bp67acfmxazb4ph6ayrq)", o.target)
	}
	if o.region == "" {
		o.region = env.getenv(aliyunRegionEnv)
	}
	if o.region == "" {
		return usagef("no Alibaba Cloud region: pass --region (e.g. --region cn-hangzhou) or set %s", aliyunRegionEnv)
	}
	if o.aliyunProfile == "" {
		o.aliyunProfile = env.getenv("ALIBABA_CLOUD_PROFILE")
	}
	switch strings.ToLower(o.connectionType) {
	case "":
	case "internet":
		o.connectionType = "Internet"
	case "intranet":
		o.connectionType = "Intranet"
	default:
		return usagef("--connection-type %q: want Internet or Intranet", o.connectionType)
	}
	if o.bastionPort < 1 || o.bastionPort > 65535 {
		return usagef("--bastion-port %d: want a number 1-65535", o.bastionPort)
	}
	if o.sessions < 1 || o.sessions > aliyun.InstanceSessionLimit {
		return usagef("--sessions %d: want a number 1-%d (Alibaba Cloud allows %d connected sessions per instance)", o.sessions, aliyun.InstanceSessionLimit, aliyun.InstanceSessionLimit)
	}
	if o.connectTimeout <= 0 {
		return usagef("--connect-timeout %v: want a positive duration like 60s", o.connectTimeout)
	}
	if o.endpointURL != "" && strings.Contains(o.endpointURL, "://") && !strings.HasPrefix(o.endpointURL, "https://") && !strings.HasPrefix(o.endpointURL, "http://") {
		return usagef("--endpoint-url %q: want host[:port], or an http:// or https:// URL", o.endpointURL)
	}
	// The rest of the configuration (region id syntax, endpoint) is the
	// aliyun package's to judge, before any network call.
	acfg := o.aliyunBase()
	if err := acfg.Validate(); err != nil {
		var ce *aliyun.ConfigError
		if errors.As(err, &ce) {
			return usagef("%s", aliyunFlagProblem(ce))
		}
		return usagef("%v", err)
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
	o.caBundle = expandHome(o.caBundle)
	if o.direct {
		return nil
	}
	if o.sshUser == "" {
		o.sshUser = defaultAliyunSSHUser(o.endpointURL)
	}
	return o.validateSSH(cmd, env)
}

// aliyunFlagProblem names the flag behind an aliyun.Config field.
func aliyunFlagProblem(ce *aliyun.ConfigError) string {
	flag := map[string]string{
		"Region": "--region", "InstanceID": "--instance-id", "Endpoint": "--endpoint-url",
		"ConnectionType": "--connection-type", "PortNumber": "--bastion-port",
	}[ce.Field]
	if flag == "" {
		flag = ce.Field
	}
	return flag + ": " + ce.Problem
}

// defaultAliyunSSHUser is the login name when --ssh-user is not given:
// root, the user of Alibaba's public images and of ali-instance-cli; the
// local user name when the API endpoint is on loopback (the emulator in
// front of this machine's sshd), as for AWS.
func defaultAliyunSSHUser(endpoint string) string {
	e := endpoint
	if e != "" && !strings.Contains(e, "://") {
		e = "https://" + e
	}
	if e != "" && isLoopbackURL(e) {
		if u, err := user.Current(); err == nil && u.Username != "" {
			return u.Username
		}
	}
	return "root"
}

// aliyunBase is the aliyun.Config of the flags without credentials and
// CAs (for validation).
func (o *tunnelOpts) aliyunBase() aliyun.Config {
	return aliyun.Config{
		Region:         o.region,
		InstanceID:     o.target,
		ConnectionType: o.connectionType,
		Endpoint:       o.endpointURL,
	}
}

// aliyunConfig is the aliyun.Config of the flags: credentials from
// --aliyun-profile or Alibaba's default chain, --ca-bundle, the logger.
func (o *tunnelOpts) aliyunConfig(env *Env) (aliyun.Config, error) {
	c := o.aliyunBase()
	c.Logger = o.logger(env)
	if o.caBundle != "" {
		pem, err := os.ReadFile(o.caBundle)
		if err != nil {
			return c, fmt.Errorf("--ca-bundle: %w", err)
		}
		pool, err := rootCAs(pem, "--ca-bundle")
		if err != nil {
			return c, err
		}
		c.RootCAs = pool
	}
	cred, err := o.aliyunCredential()
	if err != nil {
		return c, connectErr(err)
	}
	c.Credential = cred
	return c, nil
}

// aliyunCredential is the credential of --aliyun-profile (the Alibaba Cloud
// CLI's profile, else the credentials file's), or the credentials
// library's default chain (environment, OIDC RAM role, profile, ECS RAM
// role).
func (o *tunnelOpts) aliyunCredential() (alicred.Credential, error) {
	if o.aliyunProfile == "" {
		return alicred.NewCredential(nil)
	}
	var chain []providers.CredentialsProvider
	if p, err := providers.NewCLIProfileCredentialsProviderBuilder().WithProfileName(o.aliyunProfile).Build(); err == nil {
		chain = append(chain, p)
	}
	if p, err := providers.NewProfileCredentialsProviderBuilder().WithProfileName(o.aliyunProfile).Build(); err == nil {
		chain = append(chain, p)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("--aliyun-profile %s: no Alibaba Cloud profile file to read", o.aliyunProfile)
	}
	return alicred.FromCredentialsProvider("profile", &profileChain{name: o.aliyunProfile, chain: chain}), nil
}

// profileChain tries the Alibaba CLI's profile, then the credentials file's.
type profileChain struct {
	name  string
	chain []providers.CredentialsProvider
}

func (p *profileChain) GetCredentials() (*providers.Credentials, error) {
	var errs []string
	for _, c := range p.chain {
		cc, err := c.GetCredentials()
		if err == nil {
			return cc, nil
		}
		errs = append(errs, c.GetProviderName()+": "+err.Error())
	}
	return nil, fmt.Errorf("profile %q not found or unusable (%s)", p.name, strings.Join(errs, "; "))
}

func (p *profileChain) GetProviderName() string { return "profile " + p.name }

// aliyunCredentialSource checks that credentials can be found, so that a
// missing key is reported as such instead of as a refused API call. It
// returns the provider's name (never a secret).
func aliyunCredentialSource(c alicred.Credential) (string, error) {
	m, err := c.GetCredential()
	if err != nil {
		return "", fmt.Errorf("no Alibaba Cloud credentials found (%s): set ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), pass --aliyun-profile, or run on ECS with a RAM role", sanitize(oneLine(err.Error())))
	}
	if m == nil || m.AccessKeyId == nil || *m.AccessKeyId == "" {
		return "", errors.New("no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, pass --aliyun-profile, or run on ECS with a RAM role")
	}
	src := "default chain"
	if m.ProviderName != nil && *m.ProviderName != "" {
		src = *m.ProviderName
	}
	return src, nil
}

// aliyunTunnelConfig is the tunnel configuration over tr (the Alibaba
// transport): ModeDirect, or ModeSSH to --bastion-port on the instance.
func (o *tunnelOpts) aliyunTunnelConfig(env *Env, tr *aliyun.Transport) tunnel.Config {
	cfg := tunnel.Config{Transport: tr.Link(), Sessions: o.sessions, Logger: o.logger(env)}
	if o.direct {
		cfg.Mode = tunnel.ModeDirect
		// tunnel.Open starts (and ends) one session per destination, so
		// that wrong keys, instance, region, a full session quota or a
		// closed port fail here, not at the first client connection.
		cfg.Direct = tunnel.DirectConfig{Destinations: o.destinations}
		return cfg
	}
	cfg.SSHPort = o.bastionPort
	cfg.SSH = o.sshConfig()
	if cfg.SSH.HostKeyAlias == "" {
		cfg.SSH.HostKeyAlias = o.target // known_hosts entries under the instance id, as for AWS
	}
	return cfg
}

// openAliyun opens the tunnel through Alibaba Cloud Assistant (ctx carries
// --connect-timeout). In SSH mode without --ssh-key or --ssh-agent it logs
// in with a temporary key registered through Cloud Assistant (retried once
// with a new key when the login missed the key's 60 s window).
func (o *tunnelOpts) openAliyun(ctx context.Context, env *Env) (*tunnel.Tunnel, error) {
	acfg, err := o.aliyunConfig(env)
	if err != nil {
		return nil, err
	}
	if _, err := aliyunCredentialSource(acfg.Credential); err != nil {
		return nil, connectErr(err)
	}
	tr, err := aliyun.NewTransport(acfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	cfg := o.aliyunTunnelConfig(env, tr)
	if !o.tempKey {
		return tunnel.Open(ctx, cfg)
	}
	var t *tunnel.Tunnel
	err = aliyun.WithTempKey(ctx, acfg, o.sshUser, func(k *aliyun.TempKey) error {
		c := cfg
		c.SSH.PrivateKey = k.PrivatePEM
		// Sessions opened later (more --sessions, replacements) register
		// the key again before their login when its window has passed.
		c.Transport = k.Transport(c.Transport)
		var err error
		t, err = tunnel.Open(ctx, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// diagnoseAliyun maps an error of opening an Alibaba tunnel to the failed
// step and advice; SSH and database-address failures are diagnose's.
func diagnoseAliyun(err error, o *tunnelOpts) diagnosis {
	msg := sanitize(oneLine(err.Error()))
	var (
		apiErr *aliyun.APIError
		stErr  *aliyun.StatusError
		wsErr  *aliyun.WebsocketError
	)
	switch {
	case errors.Is(err, aliyun.ErrInstanceNotFound):
		return diagnosis{step: stepAliyunStart, problem: fmt.Sprintf("Alibaba Cloud does not know instance %s in region %s: %s", o.target, o.region, msg),
			advice: "check --instance-id and --region (the instance's region id, e.g. cn-hangzhou)"}
	case errors.Is(err, aliyun.ErrAuth):
		return diagnosis{step: stepAliyunCredentials, problem: "Alibaba Cloud refused the credentials: " + msg,
			cause:  "the AccessKey secret does not belong to the AccessKey id, the key is disabled, the STS token expired, or the clock is off",
			advice: "check ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (ALIBABA_CLOUD_SECURITY_TOKEN for STS) or --aliyun-profile, and that RAM allows ecs:StartTerminalSession"}
	case errors.Is(err, aliyun.ErrSessionLimit):
		return diagnosis{step: stepAliyunStart, problem: "Session Manager's session limit is reached: " + msg,
			cause:  fmt.Sprintf("at most %d connected sessions per instance (and 1 000 per region); other jobs hold sessions", aliyun.InstanceSessionLimit),
			advice: "lower --sessions (in direct mode each connection is a session), or wait for other sessions to end"}
	case errors.Is(err, aliyun.ErrAgentTooOld):
		return diagnosis{step: stepTempKey, problem: msg,
			advice: "update the Cloud Assistant agent on the instance (Linux ≥ 2.2.3.256), or pass --ssh-key FILE"}
	case errors.Is(err, aliyun.ErrKeyCommandFailed):
		return diagnosis{step: stepTempKey, problem: "registering the temporary SSH key failed: " + msg,
			cause:  "the instance lacks Cloud Assistant's config_ecs_instance_connect plug-in, or --ssh-user does not exist there",
			advice: "check --ssh-user, install the plug-in (what the Alibaba Cloud CLI's ecs-instance-connect does), or pass --ssh-key FILE with a key authorized on the instance"}
	case errors.Is(err, aliyun.ErrKeyWindowMissed):
		return diagnosis{step: stepTempKey, problem: msg, advice: "the SSH login came after the key's 60 s window twice: check that sshd answers promptly, or pass --ssh-key FILE"}
	case errors.Is(err, link.ErrConnect) && errors.As(err, &stErr) && !o.direct:
		return diagnosis{step: stepAliyunStart, problem: fmt.Sprintf("the Cloud Assistant agent could not connect to sshd on the instance's port %d: %s", o.bastionPort, stErr.Reason),
			advice: fmt.Sprintf("check that sshd runs on the instance and listens on port %d (--bastion-port), or use --mode direct", o.bastionPort)}
	case errors.Is(err, link.ErrConnect) && errors.As(err, &stErr):
		where := "the address"
		var ce *link.ConnectError
		if errors.As(err, &ce) && ce.Addr != "" {
			where = sanitize(ce.Addr)
		}
		return diagnosis{step: stepDial, problem: "the instance cannot connect to " + where + ": Cloud Assistant answered " + stErr.Reason,
			cause: dialCause, advice: dialAdvice}
	case errors.Is(err, link.ErrConnect):
		return diagnose(err, o)
	case errors.As(err, &stErr):
		return diagnosis{step: stepAliyunStart, problem: "the session was closed by Alibaba Cloud: " + msg,
			advice: fmt.Sprintf("check that the Cloud Assistant agent runs on the instance and, in SSH mode, that sshd listens on port %d (--bastion-port)", o.bastionPort)}
	case errors.As(err, &wsErr), errors.Is(err, aliyun.ErrSessionLost):
		return diagnosis{step: stepAliyunStart, problem: "cannot open the session's websocket: " + msg,
			advice: "check network access to the session's WebSocketUrl (proxy, firewall; --connection-type Intranet inside the VPC) and, for a private CA, --ca-bundle"}
	case errors.Is(err, aliyun.ErrInvalidConfig):
		return diagnosis{step: stepConfig, problem: msg, usage: true}
	case errors.As(err, &apiErr):
		return diagnosis{step: stepAliyunStart, problem: "ECS API error: " + msg, advice: "check --region, --endpoint-url and the credentials"}
	}
	d := diagnose(err, o)
	if d.step == stepAuth {
		d.advice = "check --ssh-user (root on Alibaba's public images) and that the public half of " + keyName(o) + " is in ~" + o.sshUser + "/.ssh/authorized_keys on the instance"
	}
	if d.step == stepHostKey {
		d.advice = strings.ReplaceAll(d.advice, "EC2 console → Get system log", "ECS console → instance screenshot or system log")
	}
	if d.step == stepStart {
		d.step = stepAliyunStart
	}
	return d
}

// Steps of an Alibaba tunnel that differ from AWS's.
const (
	stepAliyunConfig      = "Alibaba config"
	stepAliyunCredentials = "Alibaba credentials"
	stepAliyunStart       = "StartTerminalSession"
	stepTempKey           = "temporary key"
)

// aliyunEndpointName describes --endpoint-url for check.
func aliyunEndpointName(o *tunnelOpts) string {
	if o.endpointURL == "" {
		return "default for the region"
	}
	return o.endpointURL
}

// checkAliyun runs the network steps of check for --cloud aliyun:
// credentials, then, in SSH mode, a session to sshd, the temporary key,
// host key, login and each database address through SSH; in direct mode a
// session per database address.
func (c *checker) checkAliyun(ctx context.Context, env *Env, o *tunnelOpts, remotes []string) bool {
	skipAll := func(steps ...string) {
		for _, s := range steps {
			c.skip(s)
		}
	}
	acfg, err := o.aliyunConfig(env)
	if err != nil {
		c.fail(stepAliyunConfig, oneLine(err.Error()), "")
		return false
	}
	profile := o.aliyunProfile
	if profile == "" {
		profile = "default chain"
	}
	c.ok(stepAliyunConfig, fmt.Sprintf("region %s, credentials %s, endpoint %s", o.region, profile, aliyunEndpointName(o)))
	src, err := aliyunCredentialSource(acfg.Credential)
	if err != nil {
		c.fail(stepAliyunCredentials, oneLine(err.Error()), "")
		skipAll(stepAliyunStart)
		return false
	}
	c.ok(stepAliyunCredentials, "found ("+src+")")
	tr, err := aliyun.NewTransport(acfg)
	if err != nil {
		c.fail(stepAliyunConfig, oneLine(err.Error()), "")
		return false
	}
	tctx, cancel := context.WithTimeout(ctx, o.connectTimeout)
	defer cancel()
	if o.direct {
		if len(remotes) == 0 {
			fmt.Fprintf(c.out, "       (direct mode: pass --to HOST:PORT to start a session and try the address)\n")
			return true
		}
		ok := true
		for _, r := range remotes {
			if !c.checkAliyunDirect(tctx, tr, o, r) {
				ok = false
			}
		}
		return ok
	}

	// SSH mode: one session to sshd, as the tunnel would.
	conn, err := tr.Dial(tctx, net.JoinHostPort("localhost", fmt.Sprint(o.bastionPort)))
	if err != nil {
		c.diag(diagnoseAliyun(err, o))
		skipAll(stepHostKey, stepAuth)
		return false
	}
	defer conn.Close()
	c.ok(stepAliyunStart, "session "+conn.ID())
	sc := o.sshConfig()
	sc.Logger = o.logger(env)
	if sc.HostKeyAlias == "" {
		sc.HostKeyAlias = o.target
	}
	noHostKey := o.knownHosts == "" && o.hostKey == "" && !o.insecureIgnoreHostKey
	if noHostKey {
		_, sc.HostKey, _ = ed25519Probe()
	}
	if o.tempKey {
		k, err := aliyun.NewTempKey(tctx, acfg, o.sshUser)
		if err != nil {
			c.diag(diagnoseAliyun(err, o))
			skipAll(stepHostKey, stepAuth)
			return false
		}
		c.ok(stepTempKey, fmt.Sprintf("%s registered for %s through Cloud Assistant (valid %v)", sshFingerprint(k), o.sshUser, k.Window))
		sc.PrivateKey = k.PrivatePEM
	}
	client, err := sshx.NewClient(tctx, conn, o.target, sc)
	if err != nil {
		if d := c.loginFailed(diagnoseAliyun(err, o), noHostKey, "verify %[1]s out of band and pass --host-key %[1]s"); d.step == stepHostKey {
			c.skip(stepAuth)
		}
		return false
	}
	defer client.Close()
	c.loggedIn(o)
	ok := true
	for _, r := range remotes {
		dctx, dcancel := context.WithTimeout(ctx, o.connectTimeout)
		cn, err := client.DialContext(dctx, "tcp", r)
		dcancel()
		step := stepDial + " " + r
		if err != nil {
			d := diagnoseDial(err, r, o)
			c.failCause(step, d.problem, d.cause, d.advice)
			ok = false
			continue
		}
		cn.Close()
		c.ok(step, "reachable from the instance")
	}
	if len(remotes) == 0 {
		fmt.Fprintf(c.out, "       (pass --to HOST:PORT to check a database address too)\n")
	}
	return ok
}

// checkAliyunDirect starts a session to r and waits briefly for a refusal
// (the agent reports a failed connect only as a Status after the session
// started) or for the server to speak first.
func (c *checker) checkAliyunDirect(ctx context.Context, tr *aliyun.Transport, o *tunnelOpts, r string) bool {
	step := stepDial + " " + r
	conn, err := tr.Dial(ctx, r)
	if err != nil {
		c.diag(diagnoseAliyun(err, o))
		return false
	}
	defer conn.Close()
	c.ok(stepAliyunStart, "session "+conn.ID()+" for "+r)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(directProbeWait))
	_, err = conn.Read(make([]byte, 1))
	switch {
	case err == nil:
		c.ok(step, fmt.Sprintf("reachable from the instance: the server answered (%v)", time.Since(start).Round(time.Millisecond)))
		return true
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.ok(step, fmt.Sprintf("no refusal within %v (the agent does not confirm connects; a server that waits for the client, such as PostgreSQL, stays silent)", directProbeWait))
		return true
	default:
		d := diagnoseAliyun(err, o)
		c.failCause(step, d.problem, d.cause, d.advice)
		return false
	}
}

// sshFingerprint is the SHA256 fingerprint of a temporary key.
func sshFingerprint(k *aliyun.TempKey) string {
	return gossh.FingerprintSHA256(k.Signer.PublicKey())
}
