package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/jumpless/jumpless/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestQuickstartBrokenOnFreshMachine runs the README's command with its
// default flags: everything in-process, nothing but Go needed.
func TestQuickstartBrokenOnFreshMachine(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-realistic=false"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"2 Osaka     340\n           1 Lisbon    120\n           3 Quito      75",
		"closed:    emulator reports 1 sessions started, 1 terminated, 0 open",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestQuickstartFlagsIgnored points the quickstart at the real sshd,
// MariaDB and PostgreSQL.
func TestQuickstartFlagsIgnored(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	const target = "i-0fedcba9876543210"
	args := []string{
		"-realistic=false",
		"-target", target,
		"-sshd", sshd.Addr, "-ssh-user", sshd.User, "-ssh-key", sshd.ClientKeyPath,
		"-known-hosts", sshd.WriteKnownHosts(false, target),
		"-mysql-dsn", testenv.MySQLDSN(t),
		"-pg-dsn", testenv.PostgresDSN(t),
		"-sessions", "2",
	}
	var out bytes.Buffer
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"ssh:       sshd at " + sshd.Addr,
		"mysql:     connected through the tunnel, server version",
		"postgres:  connected through the tunnel",
		"generate_series counted 1000 rows",
		"closed:    emulator reports 2 sessions started, 2 terminated, 0 open",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestQuickstartAliyunOnFreshMachineSameShapeAsAWS runs "go run
// ./examples/quickstart -cloud aliyun" with its default flags (everything
// in-process) and checks it prints the AWS demo's lines, its tunnel opened
// through package tunnel over the Alibaba transport (Cloud Assistant
// session ids, not bastion addresses).
func TestQuickstartAliyunOnFreshMachineSameShapeAsAWS(t *testing.T) {
	var aws, ali bytes.Buffer
	if err := run(context.Background(), []string{"-realistic=false"}, &aws); err != nil {
		t.Fatalf("run (aws): %v\n%s", err, aws.String())
	}
	if err := run(context.Background(), []string{"-realistic=false", "-cloud", "aliyun"}, &ali); err != nil {
		t.Fatalf("run -cloud aliyun: %v\n%s", err, ali.String())
	}
	shape := func(s string) []string {
		var tags []string
		for _, l := range strings.Split(s, "\n") {
			if tag, _, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, " ") {
				tags = append(tags, tag)
			}
		}
		return tags
	}
	a, b := shape(aws.String()), shape(ali.String())
	if len(a) != len(b) {
		t.Fatalf("line shapes differ: aws %q, aliyun %q\n%s", a, b, ali.String())
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] == "ssm" && b[i] == "aliyun") {
			t.Errorf("line %d: aws %q, aliyun %q", i, a[i], b[i])
		}
	}
	for _, want := range []string{
		"aliyun:    Cloud Assistant emulator at",
		"tunnel:    open in",
		"sessions [s-",
		"2 Osaka     340\n           1 Lisbon    120\n           3 Quito      75",
		"closed:    emulator reports 1 sessions started, 1 terminated, 0 open",
	} {
		if !strings.Contains(ali.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, ali.String())
		}
	}
}

// TestQuickstartAliyunBroken runs the quickstart through the Alibaba Cloud
// Assistant emulator (-cloud aliyun) against the real sshd, MariaDB and
// PostgreSQL.
func TestQuickstartAliyunBroken(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	const target = "i-bp1quickstart00001"
	args := []string{
		"-cloud", "aliyun", "-realistic=false",
		"-target", target,
		"-sshd", sshd.Addr, "-ssh-user", sshd.User, "-ssh-key", sshd.ClientKeyPath,
		"-known-hosts", sshd.WriteKnownHosts(false, target),
		"-mysql-dsn", testenv.MySQLDSN(t),
		"-pg-dsn", testenv.PostgresDSN(t),
		"-sessions", "2",
	}
	var out bytes.Buffer
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"aliyun:    Cloud Assistant emulator at",
		"mysql:     connected through the tunnel, server version",
		"generate_series counted 1000 rows",
		"closed:    emulator reports 2 sessions started, 2 terminated, 0 open",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
