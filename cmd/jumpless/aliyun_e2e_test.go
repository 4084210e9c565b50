package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/internal/testenv"
)

// aliyunInstance is the ECS instance the Alibaba emulator serves.
const aliyunInstance = "i-bp1jumplesscli0001"

// aliyunFixture is the Alibaba Cloud Assistant emulator (package
// aliyuntest, in this process, real websockets) whose instance reaches this
// machine's ports: the real databases, and, with sshd, a real sshd whose
// authorized_keys receives temporary keys. env has the emulator's access
// keys in Alibaba's variables and nothing else of the machine.
type aliyunFixture struct {
	emu   *aliyuntest.Server
	sshd  *testenv.SSHD
	env   []string
	flags []string // --cloud aliyun, --region, --instance-id, --endpoint-url
}

func newAliyunFixture(t *testing.T, withSSHD bool) *aliyunFixture {
	t.Helper()
	f := &aliyunFixture{}
	cfg := aliyuntest.Config{
		Instances: map[string]string{aliyunInstance: "127.0.0.1"},
		Hosts:     map[string]string{"db.internal": "127.0.0.1"},
		FlowLimit: aliyuntest.UnpacedRate,
		DialDelay: -1,
	}
	if withSSHD {
		f.sshd = testenv.StartSSHD(t)
		cfg.AuthorizedKeys = filepath.Join(f.sshd.Dir, "authorized_keys")
	}
	emu, err := aliyuntest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	f.emu = emu
	f.env = append(aliyunBaseEnv(t),
		"ALIBABA_CLOUD_ACCESS_KEY_ID="+emu.AccessKeyID(),
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET="+emu.AccessKeySecret(),
	)
	f.flags = []string{"--cloud", "aliyun", "--region", emu.Region(), "--instance-id", aliyunInstance, "--endpoint-url", emu.Endpoint()}
	return f
}

// aliyunBaseEnv is baseEnv plus what keeps Alibaba's credentials library
// off the machine: no profile file (HOME is empty), no instance metadata.
func aliyunBaseEnv(t *testing.T) []string {
	dir := t.TempDir()
	return append(baseEnv(t),
		"ALIBABA_CLOUD_CREDENTIALS_FILE="+filepath.Join(dir, "no-credentials"),
		"ALIBABA_CLOUD_CONFIG_FILE="+filepath.Join(dir, "no-config.json"),
		"ALIBABA_CLOUD_ECS_METADATA_DISABLED=true",
	)
}

// sshFlags are the flags of SSH mode to the fixture's sshd: its port as
// --bastion-port and its host key filed under the instance id; no key (a
// temporary key is registered through the emulator) unless withKey.
func (f *aliyunFixture) sshFlags(t *testing.T, withKey bool) []string {
	t.Helper()
	_, port, _ := net.SplitHostPort(f.sshd.Addr)
	fl := []string{"--mode", "ssh", "--bastion-port", port, "--ssh-user", f.sshd.User,
		"--known-hosts", f.sshd.WriteKnownHosts(false, aliyunInstance)}
	if withKey {
		fl = append(fl, "--ssh-key", f.sshd.ClientKeyPath)
	}
	return fl
}

func (f *aliyunFixture) args(cmd string, extra ...string) []string {
	return append(append([]string{cmd}, f.flags...), extra...)
}

// waitNoSessions fails unless the emulator has no session and no websocket
// open within 10 s.
func (f *aliyunFixture) waitNoSessions(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n := f.emu.WaitNoSessions(ctx); n != 0 {
		t.Fatalf("the emulator still has %d sessions open: %v", n, f.emu.SessionIDs())
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.emu.Stats().ConnsOpen != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the emulator still has %d websockets open", f.emu.Stats().ConnsOpen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noSecret fails if an output holds the emulator's AccessKey secret.
func (f *aliyunFixture) noSecret(t *testing.T, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, f.emu.AccessKeySecret()) {
			t.Errorf("output contains the AccessKey secret:\n%s", o)
		}
	}
}

// TestAliyunRunPsqlDirectMode: jumpless run --cloud aliyun without SSH
// flags is direct mode: the real psql reaches the real PostgreSQL through
// one Cloud Assistant session per connection (db.internal resolved on the
// instance's side); nothing stays open at the emulator.
func TestAliyunRunPsqlDirectMode(t *testing.T) {
	psqlPath(t)
	pg := testenv.PostgresAddr(t)
	_, port, _ := net.SplitHostPort(pg)
	f := newAliyunFixture(t, false)
	r := runJumpless(t, f.env, f.args("run", "--to", "db.internal:"+port, "--env", "pg", "--",
		"psql", "-U", "postgres", "-d", "test", "-tA", "-c", "select 40 + 2, current_database()")...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "42|test" {
		t.Errorf("psql output %q, want 42|test", r.stdout)
	}
	f.waitNoSessions(t)
	st := f.emu.Stats()
	if st.SessionsStarted < 2 || st.APICalls["InvokeCommand"] != 0 {
		t.Errorf("emulator stats %+v: want the destination's session at open plus psql's, no temporary key", st)
	}
	f.noSecret(t, r.stdout, r.stderr)
}

// TestAliyunRunMySQLSSHModeWithTemporaryKey: --mode ssh without a key file
// registers a temporary key through Cloud Assistant (the emulator installs
// it in the real sshd's authorized_keys) and the real mysql client reaches
// the real MariaDB over SSH, on --sessions 2 Cloud Assistant sessions.
func TestAliyunRunMySQLSSHModeWithTemporaryKey(t *testing.T) {
	mysql, err := exec.LookPath("mysql")
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("mysql client not installed; %s", testenv.Hint)
		}
		t.Skipf("mysql client not installed; %s", testenv.Hint)
	}
	my := testenv.MySQLAddr(t)
	f := newAliyunFixture(t, true)
	args := append(f.args("run", f.sshFlags(t, false)...), "--sessions", "2", "--to", my, "--env", "mysql", "--",
		mysql, "-u", "root", "-N", "-B", "-e", "select 40 + 2")
	r := runJumpless(t, f.env, args...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "42" {
		t.Errorf("mysql output %q, want 42", r.stdout)
	}
	f.waitNoSessions(t)
	st := f.emu.Stats()
	if st.APICalls["InvokeCommand"] != 1 || st.SessionsStarted != 2 {
		t.Errorf("emulator stats %+v: want one temporary key (InvokeCommand) and the 2 SSH sessions", st)
	}
	f.noSecret(t, r.stdout, r.stderr)
}

// TestAliyunForwardBothModesCarryConnectionsAndCloseEverything runs
// jumpless forward --cloud aliyun in direct mode and in SSH mode (key
// file), moves data through the forwarded port both ways, stops it with
// SIGTERM (exit 0) and checks the emulator has nothing open.
func TestAliyunForwardBothModesCarryConnectionsAndCloseEverything(t *testing.T) {
	echo := testenv.EchoServer(t)
	for _, mode := range []string{"direct", "ssh"} {
		t.Run(mode, func(t *testing.T) {
			f := newAliyunFixture(t, mode == "ssh")
			args := f.args("forward", "-L", "127.0.0.1:0:"+echo)
			if mode == "ssh" {
				args = append(args, f.sshFlags(t, true)...)
			} else {
				args = append(args, "--mode", "direct")
			}
			p, local := forwardAddr(t, f.env, args)
			echoThrough(t, local, 64<<10)
			echoThrough(t, local, 3)
			if code := p.stop(syscall.SIGTERM, 20*time.Second); code != 0 {
				t.Fatalf("exit %d after SIGTERM\nstderr: %s", code, p.errOut())
			}
			if !strings.Contains(p.errOut(), "tunnel closed:") {
				t.Errorf("no closing summary on stderr: %s", p.errOut())
			}
			f.waitNoSessions(t)
			f.noSecret(t, p.out(), p.errOut())
		})
	}
}

// TestAliyunCheckSSHModeWithTemporaryKey: check --cloud aliyun walks the
// steps to a real sshd with a temporary key and to the real PostgreSQL.
func TestAliyunCheckSSHModeWithTemporaryKey(t *testing.T) {
	pg := testenv.PostgresAddr(t)
	f := newAliyunFixture(t, true)
	r := runJumpless(t, f.env, append(f.args("check", f.sshFlags(t, false)...), "--to", pg)...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"[ OK ] Alibaba credentials",
		"[ OK ] StartTerminalSession session s-",
		"[ OK ] temporary key        SHA256:",
		"[ OK ] SSH host key         verified",
		"[ OK ] SSH authentication   logged in as " + f.sshd.User + " with a temporary key registered through Cloud Assistant",
		"[ OK ] database address " + pg,
		"All 8 checks passed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	f.waitNoSessions(t)
}

// TestAliyunBadInputSaysWhatToFixAndLeavesNothingOpen guards the messages
// and exit codes of --cloud aliyun mistakes: usage errors (2) before any
// call, refusals of the service (3) that name what to fix; the emulator has
// no session or websocket open afterwards and the secret is never printed.
func TestAliyunBadInputSaysWhatToFixAndLeavesNothingOpen(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newAliyunFixture(t, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String() // nothing listens there
	ln.Close()
	// run is "run" with the fixture's flags but drop (and its value),
	// then extra, then "-- true".
	run := func(drop string, extra ...string) []string {
		var args []string
		fl := f.args("run")
		for i := 0; i < len(fl); i++ {
			if fl[i] == drop {
				i++
				continue
			}
			args = append(args, fl[i])
		}
		return append(append(args, extra...), "--", "true")
	}
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"missing region", f.env, run("--region", "--to", echo), 2,
			"no Alibaba Cloud region: pass --region (e.g. --region cn-hangzhou) or set ALIBABA_CLOUD_REGION_ID"},
		{"missing instance id", f.env, run("--instance-id", "--to", echo), 2,
			"--instance-id is required with --cloud aliyun"},
		{"malformed instance id", f.env, run("--instance-id", "--to", echo, "--instance-id", "web-1"), 2,
			`--instance-id "web-1" is not an ECS instance id`},
		{"AWS-only flag", f.env, run("", "--to", echo, "--profile", "prod"), 2,
			"--profile is for AWS only"},
		{"Alibaba flag without --cloud aliyun", f.env, []string{"run", "--target", "i-0123456789abcdef0", "--instance-id", aliyunInstance, "--to", echo, "--", "true"}, 2,
			"--instance-id is for --cloud aliyun"},
		{"too many sessions", f.env, run("", "--to", echo, "--sessions", "21"), 2,
			"Alibaba Cloud allows 20 connected sessions per instance"},
		{"unknown instance", f.env, run("--instance-id", "--to", echo, "--instance-id", "i-bp1nosuchinstance01"), 3,
			"Alibaba Cloud does not know instance i-bp1nosuchinstance01 in region " + f.emu.Region()},
		{"refused keys", append(aliyunBaseEnv(t), "ALIBABA_CLOUD_ACCESS_KEY_ID="+f.emu.AccessKeyID(), "ALIBABA_CLOUD_ACCESS_KEY_SECRET=not-the-secret"), run("", "--to", echo), 3,
			"Alibaba Cloud refused the credentials"},
		{"no credentials", aliyunBaseEnv(t), run("", "--to", echo), 3,
			"no Alibaba Cloud credentials found"},
		{"destination port closed (direct mode)", f.env, run("", "--to", closedPort), 3,
			"the instance cannot connect to " + closedPort + ": Cloud Assistant answered OpenPortFailed"},
		{"sshd port closed", f.env, run("", "--mode", "ssh", "--bastion-port", "9", "--ssh-key", f.sshd.ClientKeyPath, "--insecure-ignore-host-key", "--to", echo), 3,
			"could not connect to sshd on the instance's port 9"},
		{"temporary key, login refused (unknown user)", f.env, run("", append(f.sshFlags(t, false), "--to", echo, "--ssh-user", "nobody-here")...), 3,
			"fix: check --ssh-user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runJumpless(t, c.env, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, c.code, c.want)
			}
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
				t.Errorf("want one line on stderr, got %d:\n%s", n+1, r.stderr)
			}
			f.waitNoSessions(t)
			f.noSecret(t, r.stdout, r.stderr)
		})
	}
}

// TestAliyunProfileSelectsTheCloudAndItsFields: a tunnel profile with
// cloud = "aliyun" and the Alibaba keys is all "jumpless run NAME" needs.
func TestAliyunProfileSelectsTheCloudAndItsFields(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newAliyunFixture(t, false)
	conf := filepath.Join(t.TempDir(), "config.toml")
	text := `[tunnel.hz]
cloud        = "aliyun"
instance-id  = "` + aliyunInstance + `"
region       = "` + f.emu.Region() + `"
endpoint-url = "` + f.emu.Endpoint() + `"
mode         = "direct"
to           = "` + echo + `"
`
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runJumpless(t, f.env, "run", "hz", "--config", conf, "--", "sh", "-c", `echo "addr=$JUMPLESS_ADDR"`)
	if r.code != 0 || !strings.HasPrefix(strings.TrimSpace(r.stdout), "addr=127.0.0.1:") {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	f.waitNoSessions(t)
	if st := f.emu.Stats(); st.SessionsStarted == 0 {
		t.Errorf("no session started at the emulator: %+v", st)
	}
}

// TestAliyunEmulatorCommandServesTheCLI runs "jumpless emulator --cloud
// aliyun" as a process and "jumpless run" configured only by its
// --env-file, to the real PostgreSQL, then stops the emulator.
func TestAliyunEmulatorCommandServesTheCLI(t *testing.T) {
	psqlPath(t)
	pg := testenv.PostgresAddr(t)
	envFile := filepath.Join(t.TempDir(), "emu.env")
	emu := startJumpless(t, aliyunBaseEnv(t), "emulator", "--cloud", "aliyun", "--pacing", "unpaced",
		"--target-id", aliyunInstance, "--env-file", envFile)
	emu.line("Stop with Ctrl-C.", 30*time.Second)
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("--env-file: %v\nemulator stderr: %s", err, emu.errOut())
	}
	env := append(aliyunBaseEnv(t), strings.Fields(string(b))...)
	r := runJumpless(t, env, "run", "--to", pg, "--env", "pg", "--",
		"psql", "-U", "postgres", "-d", "test", "-tA", "-c", "select 40 + 2")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "42" {
		t.Fatalf("exit %d, stdout %q\nstderr: %s\nenv file:\n%s", r.code, r.stdout, r.stderr, b)
	}
	if code := emu.stop(syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("emulator exit %d: %s", code, emu.errOut())
	}
	out := emu.out()
	i := strings.Index(out, "emulator stopped: ")
	if i < 0 {
		t.Fatalf("no closing line from the emulator:\n%s", out)
	}
	var started, ended int
	if _, err := fmt.Sscanf(out[i:], "emulator stopped: %d sessions started, %d ended", &started, &ended); err != nil || started < 2 || started != ended {
		t.Errorf("emulator closing line %q (%v): want every session (at least the destination's and psql's) ended", strings.TrimSpace(out[i:]), err)
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Errorf("the emulator left its --env-file behind: %v", err)
	}
}

// TestAliyunTemporaryKeyCommandFailureSaysWhatToFix: an instance whose
// Cloud Assistant cannot install the key (no config_ecs_instance_connect
// plug-in: the emulator without an authorized_keys file) fails SSH mode
// with exit 3 and the ways out, and leaves no session open.
func TestAliyunTemporaryKeyCommandFailureSaysWhatToFix(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newAliyunFixture(t, false)
	r := runJumpless(t, f.env, f.args("run", "--mode", "ssh", "--insecure-ignore-host-key", "--to", echo, "--", "true")...)
	if r.code != 3 || !strings.Contains(r.stderr, "registering the temporary SSH key failed") || !strings.Contains(r.stderr, "pass --ssh-key FILE") {
		t.Errorf("exit %d, stderr %q; want exit 3 naming the failed key command and the fixes", r.code, r.stderr)
	}
	f.waitNoSessions(t)
	if n := f.emu.Stats().APICalls["InvokeCommand"]; n != 1 {
		t.Errorf("InvokeCommand called %d times, want 1", n)
	}
}

// TestAliyunProfileCredentialsFromBothFiles: --aliyun-profile NAME takes
// the keys from the Alibaba Cloud CLI's config.json or, failing that, from
// the credentials file, with no ALIBABA_CLOUD_ACCESS_KEY_* in the
// environment; the emulator verifies the signatures made with them.
func TestAliyunProfileCredentialsFromBothFiles(t *testing.T) {
	echo := testenv.EchoServer(t)
	f := newAliyunFixture(t, false)
	ak, sk := f.emu.AccessKeyID(), f.emu.AccessKeySecret()
	files := map[string]struct{ name, text string }{
		"ALIBABA_CLOUD_CONFIG_FILE": {"config.json",
			`{"current":"other","profiles":[{"name":"other","mode":"AK","access_key_id":"LTAIwrong","access_key_secret":"wrong"},` +
				`{"name":"etl","mode":"AK","access_key_id":"` + ak + `","access_key_secret":"` + sk + `"}]}`},
		"ALIBABA_CLOUD_CREDENTIALS_FILE": {"credentials",
			"[default]\ntype = access_key\naccess_key_id = LTAIwrong\naccess_key_secret = wrong\n\n[etl]\ntype = access_key\naccess_key_id = " + ak + "\naccess_key_secret = " + sk + "\n"},
	}
	for envName, file := range files {
		t.Run(file.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), file.name)
			if err := os.WriteFile(path, []byte(file.text), 0o600); err != nil {
				t.Fatal(err)
			}
			var env []string
			for _, kv := range aliyunBaseEnv(t) {
				if !strings.HasPrefix(kv, envName+"=") {
					env = append(env, kv)
				}
			}
			env = append(env, envName+"="+path)
			before := f.emu.Stats().SessionsStarted
			r := runJumpless(t, env, f.args("run", "--aliyun-profile", "etl", "--to", echo, "--", "true")...)
			if r.code != 0 {
				t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
			}
			if f.emu.Stats().SessionsStarted == before {
				t.Errorf("no session was started with the profile's keys")
			}
			r = runJumpless(t, env, f.args("run", "--aliyun-profile", "nosuch", "--to", echo, "--", "true")...)
			if r.code != 3 || !strings.Contains(r.stderr, `profile "nosuch" not found or unusable`) {
				t.Errorf("unknown profile: exit %d, stderr %q; want exit 3 naming the profile", r.code, r.stderr)
			}
			f.waitNoSessions(t)
		})
	}
}
