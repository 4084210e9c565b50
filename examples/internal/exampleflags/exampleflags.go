// Package exampleflags holds the command-line flags the examples share:
// which instance to reach through SSM, the AWS region and profile, and the
// SSH user, key and known_hosts file. Each example still calls tunnel.Open
// itself with the Config built here, so that the wiring stays visible.
package exampleflags

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// ErrNoTarget is returned by Config when -target is empty.
var ErrNoTarget = errors.New("-target is required: the managed instance id (i-... or mi-...)")

// Tunnel holds the values of the shared flags. Register sets the defaults.
type Tunnel struct {
	Target     string // -target: managed instance id; required
	Region     string // -region: "" means from the environment/profile
	Profile    string // -profile: "" means the default profile
	User       string // -user: SSH user on the instance
	Key        string // -key: SSH private key file
	KnownHosts string // -known-hosts: known_hosts with an entry for the instance id
	Direct     bool   // -direct: no SSH; the SSM agent forwards each connection (tunnel.ModeDirect)
}

// Register defines the shared flags on fs, storing their values in t.
func (t *Tunnel) Register(fs *flag.FlagSet) {
	home, _ := os.UserHomeDir()
	fs.StringVar(&t.Target, "target", "", "managed instance id (i-... or mi-...)")
	fs.StringVar(&t.Region, "region", "", "AWS region (default: from the environment/profile)")
	fs.StringVar(&t.Profile, "profile", "", "AWS shared config profile (default: the default profile)")
	fs.StringVar(&t.User, "user", "ec2-user", "SSH user on the instance")
	fs.StringVar(&t.Key, "key", filepath.Join(home, ".ssh", "id_ed25519"), "SSH private key file")
	fs.StringVar(&t.KnownHosts, "known-hosts", filepath.Join(home, ".ssh", "known_hosts"), "known_hosts file with an entry for the instance id")
	fs.BoolVar(&t.Direct, "direct", false, "no SSH: the instance's SSM agent forwards each connection itself (-user, -key, -known-hosts are ignored)")
}

// Config loads the AWS configuration the SDK's way
// (config.LoadDefaultConfig: environment, shared config and credentials
// files, SSO, instance roles, with -region and -profile applied) and
// returns the tunnel configuration for the flags. It does not open
// anything.
func (t *Tunnel) Config(ctx context.Context) (tunnel.Config, error) {
	if t.Target == "" {
		return tunnel.Config{}, ErrNoTarget
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(t.Region), config.WithSharedConfigProfile(t.Profile))
	if err != nil {
		return tunnel.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	if t.Direct {
		return tunnel.Config{Mode: tunnel.ModeDirect, SSM: ssm.Config{AWS: awsCfg, Target: t.Target}}, nil
	}
	return tunnel.Config{
		SSM: ssm.Config{AWS: awsCfg, Target: t.Target},
		SSH: sshx.Config{User: t.User, PrivateKeyFile: t.Key, KnownHostsFile: t.KnownHosts},
	}, nil
}

// Main runs an example's run function with the process's arguments and
// standard output, cancelled by Ctrl-C; -h exits 0, any other error is
// printed as "NAME: ERROR" and exits 1.
func Main(name string, run func(ctx context.Context, args []string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
