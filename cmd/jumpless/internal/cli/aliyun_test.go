package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpShowsTheAlibabaFlags guards that forward, run, check and
// emulator document --cloud and the Alibaba flags with their variables.
func TestHelpShowsTheAlibabaFlags(t *testing.T) {
	want := map[string][]string{
		"forward":  {"--cloud NAME", "[$JUMPLESS_CLOUD]", "--instance-id ID", "[$JUMPLESS_INSTANCE_ID]", "--aliyun-profile NAME", "--connection-type TYPE", "--cloud aliyun --region cn-hangzhou"},
		"run":      {"--cloud NAME", "--instance-id ID", "--aliyun-profile NAME"},
		"check":    {"--cloud NAME", "--instance-id ID", "StartTerminalSession"},
		"emulator": {"--cloud NAME", "--authorized-keys FILE"},
	}
	for cmd, ws := range want {
		var out bytes.Buffer
		code := Main(context.Background(), Env{Args: []string{cmd, "--help"}, Stdout: &out, Getenv: func(string) string { return "" }})
		if code != ExitOK {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, w := range ws {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s --help lacks %q", cmd, w)
			}
		}
	}
}

// TestAliyunUsageErrorsComeBeforeAnyNetworkCall guards the in-process
// validation of --cloud aliyun: each mistake is a usage error (exit 2)
// naming the flag, with no endpoint to call (none is running).
func TestAliyunUsageErrorsComeBeforeAnyNetworkCall(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/known_hosts of the machine
	base := []string{"run", "--cloud", "aliyun", "--region", "cn-hangzhou", "--instance-id", "i-bp67acfmxazb4ph6ayrq", "--endpoint-url", "http://127.0.0.1:1", "--to", "db:5432"}
	cases := []struct {
		extra []string
		env   map[string]string
		want  string
	}{
		{[]string{"--cloud", "gcp"}, nil, `--cloud "gcp": want aws or aliyun`},
		{[]string{"--region", "Hangzhou"}, nil, `--region: "Hangzhou" is not a region id`},
		{[]string{"--connection-type", "vpc"}, nil, `--connection-type "vpc": want Internet or Intranet`},
		{[]string{"--target", "i-bp1other000000001"}, nil, "name different instances"},
		{[]string{"--document-name", "X", "--reason", "r"}, nil, "--document-name, --reason are for AWS only"},
		{[]string{"--mode", "direct", "--ssh-key", "k"}, nil, "--mode direct uses no SSH"},
		{[]string{"--mode", "ssh"}, nil, "no way to verify the SSH host key"},
		{nil, map[string]string{"JUMPLESS_START_STOPPED": "true"}, "--start-stopped is for AWS only"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		args := append(append(append([]string{}, base...), c.extra...), "--", "true")
		code := Main(context.Background(), Env{Args: args, Stderr: &stderr, Getenv: func(k string) string { return c.env[k] }})
		if code != ExitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", c.extra, code, stderr.String(), c.want)
		}
	}
}
