package main

import (
	"strings"
	"testing"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// credFixture is the emulator with a tagged bastion, EC2 Instance Connect
// into the real sshd, and a database secret; the jumpless subprocess
// reaches every API through AWS_ENDPOINT_URL.
func credFixture(t *testing.T) (*ssmtest.Server, *testenv.SSHD, []string, string) {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	const password = "s3cr3t-db-password-xyz"
	emu, err := ssmtest.NewServer(ssmtest.Config{
		Targets:         map[string]string{testTarget: sshd.Addr},
		Instances:       map[string]ssmtest.Instance{testTarget: {Tags: map[string]string{"Name": "etl-bastion"}}},
		InstanceConnect: map[string]string{testTarget: sshd.InstanceConnectKeysPath},
		Secrets:         map[string]string{"prod/etl": `{"username":"etl","password":"` + password + `","engine":"postgres","host":"db.internal","port":5432,"dbname":"dw"}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	ak, sk := emu.Credentials()
	env := append(baseEnv(t), "AWS_ACCESS_KEY_ID="+ak, "AWS_SECRET_ACCESS_KEY="+sk, "AWS_REGION="+emu.Region(), "AWS_ENDPOINT_URL="+emu.URL())
	return emu, sshd, env, password
}

// TestCheckShowsTagTargetInstanceConnectAndSecretSteps: check with no key
// file, a tag target and a database secret prints a step for each, and
// neither its output nor its debug log holds the secret, the AWS key or a
// private key.
func TestCheckShowsTagTargetInstanceConnectAndSecretSteps(t *testing.T) {
	emu, sshd, env, password := credFixture(t)
	echo := testenv.EchoServer(t)
	r := runJumpless(t, env, "check", "--target", "tag:Name=etl-bastion", "--instance-connect", "--ssh-user", sshd.User,
		"--known-hosts", sshd.WriteKnownHosts(false, testTarget), "--to", echo, "--db-secret", "prod/etl", "--verbose")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"[ OK ] target               tag:Name=etl-bastion is " + testTarget + " (Online)",
		"[ OK ] Instance Connect     throwaway key SHA256:",
		"[ OK ] SSH authentication   logged in as " + sshd.User + " with an EC2 Instance Connect key",
		"[ OK ] database login       secret prod/etl: user etl",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	_, sk := emu.Credentials()
	for _, secret := range []string{password, sk, "PRIVATE KEY"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("output or debug log contains a secret (%.6s...)", secret)
		}
	}
	if emu.Stats().KeysPushed != 1 {
		t.Errorf("keys pushed %d", emu.Stats().KeysPushed)
	}
}

func TestCheckTagTargetOfflineSaysLastPing(t *testing.T) {
	emu, sshd, env, _ := credFixture(t)
	emu.SetInstance(testTarget, ssmtest.Instance{Tags: map[string]string{"Name": "etl-bastion"}, PingStatus: ssmtest.PingConnectionLost})
	r := runJumpless(t, env, "check", "--target", "tag:Name=etl-bastion", "--instance-connect", "--ssh-user", sshd.User,
		"--known-hosts", sshd.WriteKnownHosts(false, testTarget))
	if r.code == 0 || !strings.Contains(r.stdout, "[FAIL] target") || !strings.Contains(r.stdout, "ConnectionLost, last ping") || !strings.Contains(r.stdout, "[SKIP] StartSession") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestRunPassesSecretLoginToCommand: run --db-secret hands the secret's
// login to the command in PGUSER/PGPASSWORD, never on its own output.
func TestRunPassesSecretLoginToCommand(t *testing.T) {
	_, sshd, env, password := credFixture(t)
	echo := testenv.EchoServer(t)
	env = append(env, "WANT_PASSWORD="+password)
	r := runJumpless(t, env, "run", "--target", "tag:Name=etl-bastion", "--instance-connect", "--ssh-user", sshd.User,
		"--known-hosts", sshd.WriteKnownHosts(false, testTarget), "--to", echo, "--env", "pg", "--db-secret", "prod/etl", "--verbose",
		"--", "sh", "-c", `[ "$PGPASSWORD" = "$WANT_PASSWORD" ] && echo "user=$PGUSER port=$PGPORT"`)
	if r.code != 0 || !strings.Contains(r.stdout, "user=etl port=") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, password) {
		t.Fatal("jumpless's log contains the database password")
	}
}

// TestCheckStartsStoppedBastion: --start-stopped starts the stopped
// bastion and the target step says how long it took.
func TestCheckStartsStoppedBastion(t *testing.T) {
	emu, sshd, env, _ := credFixture(t)
	emu.SetInstance(testTarget, ssmtest.Instance{Tags: map[string]string{"Name": "etl-bastion"}, Stopped: true})
	r := runJumpless(t, env, "check", "--target", "tag:Name=etl-bastion", "--start-stopped", "--instance-connect", "--ssh-user", sshd.User,
		"--known-hosts", sshd.WriteKnownHosts(false, testTarget))
	if r.code != 0 || !strings.Contains(r.stdout, "is "+testTarget+" (Online, started in") || emu.Stats().InstancesStarted != 1 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
