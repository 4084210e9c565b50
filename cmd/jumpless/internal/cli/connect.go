package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// logger returns the logger for --verbose, or nil.
func (o *tunnelOpts) logger(env *Env) *slog.Logger {
	if !o.verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// caPEM returns the PEM of --ca-bundle, or of $AWS_CA_BUNDLE when the flag
// is not given (the AWS CLI uses it for every connection too). nil: none.
func (o *tunnelOpts) caPEM(env *Env) ([]byte, string, error) {
	path, what := o.caBundle, "--ca-bundle"
	if path == "" {
		path, what = env.getenv("AWS_CA_BUNDLE"), "$AWS_CA_BUNDLE"
	}
	if path == "" {
		return nil, "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, what, fmt.Errorf("%s: %w", what, err)
	}
	return b, what, nil
}

// rootCAs is the system pool plus pem.
func rootCAs(pem []byte, what string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found in the file", what)
	}
	return pool, nil
}

// awsConfig loads the AWS configuration the SDK's way (environment, shared
// config and credentials files, --profile, --region). Errors are usage
// errors for a missing region, connect errors otherwise.
func (o *tunnelOpts) awsConfig(ctx context.Context, env *Env) (aws.Config, *x509.CertPool, error) {
	pem, what, err := o.caPEM(env)
	if err != nil {
		return aws.Config{}, nil, err
	}
	var pool *x509.CertPool
	var opts []func(*config.LoadOptions) error
	if o.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.profile))
	}
	if o.region != "" {
		opts = append(opts, config.WithRegion(o.region))
	}
	if pem != nil {
		if pool, err = rootCAs(pem, what); err != nil {
			return aws.Config{}, nil, err
		}
		opts = append(opts, config.WithCustomCABundle(bytes.NewReader(pem)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, nil, connectErr(fmt.Errorf("loading the AWS configuration: %s%s", sanitize(err.Error()), profileHint(o.profile)))
	}
	if cfg.Region == "" {
		return aws.Config{}, nil, usagef("no AWS region: pass --region (e.g. --region eu-west-1), set AWS_REGION, or set region in the profile")
	}
	return cfg, pool, nil
}

func profileHint(profile string) string {
	if profile == "" {
		return ""
	}
	return fmt.Sprintf(" (is profile %q in ~/.aws/config? 'aws configure list-profiles' lists them)", profile)
}

// credentials checks that credentials can be found, so that a missing key
// is reported as such instead of as a StartSession failure. It returns the
// source's name (never a secret).
func credentials(ctx context.Context, cfg aws.Config) (string, error) {
	if cfg.Credentials == nil {
		return "", errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use --profile, or run 'aws sso login'")
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("no AWS credentials found (%s): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use --profile, or run 'aws sso login'", sanitize(err.Error()))
	}
	return c.Source, nil
}

// tunnelConfig builds the tunnel configuration.
func (o *tunnelOpts) tunnelConfig(ctx context.Context, env *Env) (tunnel.Config, error) {
	awsCfg, pool, err := o.awsConfig(ctx, env)
	if err != nil {
		return tunnel.Config{}, err
	}
	log := o.logger(env)
	if o.direct {
		return tunnel.Config{
			Mode: tunnel.ModeDirect,
			SSM: ssm.Config{
				AWS: awsCfg, Endpoint: o.endpointURL, RootCAs: pool, Target: o.target, Reason: o.reason,
				StartStopped: o.startStopped,
			},
			Direct:   tunnel.DirectConfig{Destinations: o.destinations},
			Sessions: o.sessions,
			Logger:   log,
		}, nil
	}
	return tunnel.Config{
		SSM: ssm.Config{
			AWS:          awsCfg,
			Endpoint:     o.endpointURL,
			RootCAs:      pool,
			Target:       o.target,
			DocumentName: o.documentName,
			PortNumber:   o.bastionPort,
			Reason:       o.reason,
			StartStopped: o.startStopped,
		},
		SSH:             o.sshConfig(),
		Sessions:        o.sessions,
		InstanceConnect: o.instanceConnectConfig(),
		Logger:          log,
	}, nil
}

// instanceConnectConfig is the tunnel's EC2 Instance Connect config for
// --instance-connect, or nil.
func (o *tunnelOpts) instanceConnectConfig() *instanceconnect.Config {
	if !o.instanceConnect {
		return nil
	}
	return &instanceconnect.Config{}
}

func (o *tunnelOpts) sshConfig() sshx.Config {
	c := sshx.Config{
		User:                  o.sshUser,
		PrivateKeyFile:        o.sshKey,
		Passphrase:            o.passphrase,
		Agent:                 o.sshAgent,
		KnownHostsFile:        o.knownHosts,
		HostKeyFingerprint:    o.hostKey,
		HostKeyAlias:          o.hostKeyAlias,
		InsecureIgnoreHostKey: o.insecureIgnoreHostKey,
	}
	if o.sshAgent {
		c.AgentSocket = o.sshAuthSock
	}
	return c
}

// open opens the tunnel within --connect-timeout. Failures are connect
// errors (exit 3) with advice, except configuration problems (exit 2).
func (o *tunnelOpts) open(ctx context.Context, env *Env) (*tunnel.Tunnel, error) {
	ctx, cancel := context.WithTimeout(ctx, o.connectTimeout)
	defer cancel()
	if o.cloud == cloudAliyun {
		t, err := o.openAliyun(ctx, env)
		if err != nil {
			var ue *usageError
			var ce *connectError
			if errors.As(err, &ue) || errors.As(err, &ce) {
				return nil, err
			}
			d := diagnoseAliyun(err, o)
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				return nil, connectErr(fmt.Errorf("opening the tunnel to %s took longer than --connect-timeout %v (%s); fix: check network access to the ECS API and the session's websocket, and that the instance answers, or raise --connect-timeout", o.target, o.connectTimeout, d.problem))
			}
			if d.usage {
				return nil, usagef("%s", d.line())
			}
			return nil, connectErr(errors.New(d.line()))
		}
		return t, nil
	}
	cfg, err := o.tunnelConfig(ctx, env)
	if err != nil {
		return nil, err
	}
	if _, err := credentials(ctx, cfg.SSM.AWS); err != nil {
		return nil, connectErr(err)
	}
	t, err := tunnel.Open(ctx, cfg)
	if err != nil {
		d := diagnose(err, o)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, connectErr(fmt.Errorf("opening the tunnel to %s took longer than --connect-timeout %v (%s); fix: check network access to the SSM endpoints and that the instance answers, or raise --connect-timeout", o.target, o.connectTimeout, d.problem))
		}
		if d.usage {
			return nil, usagef("%s", d.line())
		}
		return nil, connectErr(errors.New(d.line()))
	}
	return t, nil
}

func sessionList(t *tunnel.Tunnel) string {
	ids := t.Stats().SessionIDs
	if len(ids) == 0 {
		return "?"
	}
	return strings.Join(ids, ", ")
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, tunnel.ErrClosed)
}
