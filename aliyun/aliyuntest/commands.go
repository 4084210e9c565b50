package aliyuntest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// SendPublicKeyCommand is the id of the public Cloud Assistant command that
// registers a temporary SSH public key (ali-instance-cli's send_public_key,
// agent/session/plugin/sendpublickey/sendpublickey.go in
// aliyun/aliyun_assist_client). InvokeCommand of any other CommandId fails
// with InvalidCommandId.NotFound.
const SendPublicKeyCommand = "cmd-ACS-ECS-SendSshPublicKey-linux.sh"

// InstallPluginCommand is the shell command ali-instance-cli runs with
// RunCommand (Base64, RunShellScript, timeout 5 s) before
// SendPublicKeyCommand: it installs the config_ecs_instance_connect plug-in
// that stores the key. It is the only RunCommand script the emulated
// instance runs; the key command fails on an instance where it has not run.
const InstallPluginCommand = "acs-plugin-manager -e -P config_ecs_instance_connect --params --install"

// Agent states for Config.AgentState: the ErrorCode values of an
// InvocationResult that Alibaba documents for DescribeInvocationResults
// (InvocationResult.ErrorCode in the ECS API reference and the SDKs'
// model comments).
const (
	AgentNeedUpgrade = "ClientNeedUpgrade" // the agent is too old for the command
	AgentNotRunning  = "ClientNotRunning"  // the agent is not running
	AgentNotResponse = "ClientNotResponse" // the agent does not answer
	AgentUpgrading   = "ClientIsUpgrading" // the agent is being upgraded
)

// DefaultCommandDelay is how long an emulated command invocation stays
// Running before it finishes when Config.CommandDelay is zero. Assumption:
// the real service reports Pending/Running for at least the round trip to
// the agent (not measured).
const DefaultCommandDelay = 300 * time.Millisecond

type invocation struct {
	id, instance string
	done         time.Time // when the invocation finishes

	// Set when it finishes (under Server.mu).
	finished                 bool
	status, errCode, errInfo string
	exitCode                 int
	output                   string
}

// OnSendPublicKey sets what InvokeCommand of SendPublicKeyCommand does on
// the instance when it finishes: install key for user (for KeyWindow). An
// error makes the invocation Failed with the error as its output (a failed
// command). Nil (the default): install the key in Config.AuthorizedKeys, or
// fail when that is "", as on an instance without the plug-in.
func (s *Server) OnSendPublicKey(f func(instance, user, publicKey string) error) {
	s.mu.Lock()
	s.keyHook = f
	s.mu.Unlock()
}

// SetAgentState makes every command invocation from now on end as
// DescribeInvocationResults reports an agent in that state (AgentNeedUpgrade,
// AgentNotRunning, AgentNotResponse, AgentUpgrading); "" is a healthy,
// current agent (the default, or Config.AgentState).
func (s *Server) SetAgentState(state string) {
	s.mu.Lock()
	s.agentState = state
	s.mu.Unlock()
}

// SetCommandDelay sets how long each command invocation started from now
// on stays Running (see Config.CommandDelay).
func (s *Server) SetCommandDelay(d time.Duration) { s.cmdDelay.Store(int64(d)) }

func (s *Server) commandDelay() time.Duration {
	d := time.Duration(s.cmdDelay.Load())
	switch {
	case d == 0:
		return DefaultCommandDelay
	case d < 0:
		return 0
	}
	return d
}

// commandAction serves RunCommand, InvokeCommand and
// DescribeInvocationResults. The invocation's outcome is decided when it
// finishes (CommandDelay after the call): the key is installed then, so its
// window starts then, as on an instance.
func (s *Server) commandAction(action string, p url.Values) (any, *apiError) {
	if action == "DescribeInvocationResults" {
		return s.describeInvocation(p)
	}
	inst := p.Get("InstanceId.1")
	if inst == "" {
		return nil, &apiError{400, "MissingInstanceId", "InstanceId is mandatory for this action."}
	}
	if _, ok := s.host(inst); !ok {
		return nil, &apiError{404, "InvalidInstance.NotFound", "The specified instance does not exist."}
	}
	var finish func(inv *invocation)
	switch action {
	case "RunCommand":
		if p.Get("Type") != "RunShellScript" {
			return nil, &apiError{400, "InvalidCommandType.NotSupported", "The emulated instance runs Linux: Type must be RunShellScript."}
		}
		content := p.Get("CommandContent")
		if p.Get("ContentEncoding") == "Base64" {
			b, err := base64.StdEncoding.DecodeString(content)
			if err != nil {
				return nil, &apiError{400, "InvalidCommandContent.Malformed", "The specified parameter CommandContent is not valid Base64."}
			}
			content = string(b)
		}
		timeout := 60 * time.Second // the API's default
		if v := p.Get("Timeout"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, &apiError{400, "InvalidParameter.Timeout", "The specified parameter Timeout is not valid."}
			}
			timeout = time.Duration(n) * time.Second
		}
		slow := s.commandDelay() > timeout
		finish = func(inv *invocation) {
			switch {
			case slow:
				inv.status, inv.errCode, inv.errInfo, inv.exitCode = "Timeout", "ExecutionTimeout", "the command execution has timed out", -1
			case strings.TrimSpace(content) != InstallPluginCommand:
				inv.status, inv.errCode, inv.errInfo, inv.exitCode = "Failed", "ExitCodeNonzero", "the command exited with a nonzero code", 127
				inv.output = "emulator: only the config_ecs_instance_connect install command is emulated\n"
			default:
				s.plugin[inst] = true
				inv.status = "Success"
			}
		}
	case "InvokeCommand":
		if p.Get("CommandId") != SendPublicKeyCommand {
			return nil, &apiError{404, "InvalidCommandId.NotFound", "The specified command does not exist."}
		}
		var params map[string]string
		if err := json.Unmarshal([]byte(p.Get("Parameters")), &params); err != nil || params["sshPublicKey"] == "" {
			return nil, &apiError{400, "InvalidParameter.Parameters", "Parameters must be a JSON object with sshPublicKey."}
		}
		user := params["username"]
		if user == "" {
			user = "root"
		}
		key := params["sshPublicKey"]
		finish = func(inv *invocation) {
			fail := func(out string) {
				inv.status, inv.errCode, inv.errInfo, inv.exitCode, inv.output = "Failed", "ExitCodeNonzero", "the command exited with a nonzero code", 1, out
			}
			if !s.plugin[inst] {
				fail("config_ecs_instance_connect is not installed\n")
				return
			}
			inv.status = "Success"
			hook := s.keyHook
			var err error
			switch {
			case hook != nil:
				s.mu.Unlock()
				err = hook(inst, user, key)
				s.mu.Lock()
			case s.cfg.AuthorizedKeys != "":
				err = s.installKey(key)
			default:
				err = fmt.Errorf("no sshd configuration to install the key in")
			}
			if err != nil {
				fail(err.Error() + "\n")
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &apiError{503, "ServiceUnavailable", "The emulator is closing."}
	}
	inv := &invocation{id: "t-emu" + randHex(8), instance: inst, done: time.Now().Add(s.commandDelay())}
	if st := s.agentState; st != "" {
		// Assumption: which InvocationStatus comes with these ErrorCodes is
		// not documented; Aborted ("could not be sent") for an absent agent,
		// Invalid for one that cannot run the command.
		finish = func(inv *invocation) {
			inv.status, inv.errCode, inv.exitCode = "Aborted", st, -1
			inv.errInfo = map[string]string{
				AgentNeedUpgrade: "the Cloud Assistant client needs to be upgraded",
				AgentNotRunning:  "the Cloud Assistant client is not running",
				AgentNotResponse: "the Cloud Assistant client does not respond",
				AgentUpgrading:   "the Cloud Assistant client is being upgraded",
			}[st]
			if st == AgentNeedUpgrade {
				inv.status = "Invalid"
			}
		}
	}
	s.invocations[inv.id] = inv
	s.keyTimers = append(s.keyTimers, time.AfterFunc(time.Until(inv.done), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !inv.finished && !s.closed {
			finish(inv)
			inv.finished = true
		}
	}))
	return map[string]any{"InvokeId": inv.id, "CommandId": "c-emu" + randHex(6)}, nil
}

func (s *Server) describeInvocation(p url.Values) (any, *apiError) {
	s.mu.Lock()
	inv, ok := s.invocations[p.Get("InvokeId")]
	var r map[string]any
	if ok {
		if want := p.Get("InstanceId"); want != "" && want != inv.instance {
			s.mu.Unlock()
			return map[string]any{"Invocation": map[string]any{"InvocationResults": map[string]any{"InvocationResult": []any{}}, "TotalCount": 0}}, nil
		}
		r = map[string]any{"InvokeId": inv.id, "InstanceId": inv.instance, "Dropped": 0}
		if !inv.finished {
			r["InvocationStatus"], r["InvokeRecordStatus"] = "Running", "Running"
		} else {
			out := inv.output
			if p.Get("ContentEncoding") != "PlainText" {
				out = base64.StdEncoding.EncodeToString([]byte(out))
			}
			r["InvocationStatus"], r["InvokeRecordStatus"] = inv.status, "Finished"
			r["ErrorCode"], r["ErrorInfo"], r["ExitCode"], r["Output"] = inv.errCode, inv.errInfo, inv.exitCode, out
			r["FinishedTime"] = inv.done.UTC().Format("2006-01-02T15:04:05Z")
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil, &apiError{404, "InvalidInvokeId.NotFound", "The specified InvokeId does not exist."}
	}
	return map[string]any{"Invocation": map[string]any{"InvocationResults": map[string]any{"InvocationResult": []map[string]any{r}}, "TotalCount": 1}}, nil
}

// installKey appends key to Config.AuthorizedKeys and removes it again
// after KeyWindow, as the instance's plug-in keeps a key for 60 s. It runs
// with s.mu held.
func (s *Server) installKey(key string) error {
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil || len(strings.TrimSpace(string(rest))) != 0 {
		return fmt.Errorf("sshPublicKey is not one OpenSSH public key")
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " jumpless-emulated-temporary-key-" + randHex(4) + "\n"
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	f, err := os.OpenFile(s.cfg.AuthorizedKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	f.Close()
	if err != nil {
		return err
	}
	s.keyTimers = append(s.keyTimers, time.AfterFunc(s.cfg.KeyWindow, func() { s.removeKey(line) }))
	return nil
}

func (s *Server) removeKey(line string) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	b, err := os.ReadFile(s.cfg.AuthorizedKeys)
	if err != nil {
		return
	}
	os.WriteFile(s.cfg.AuthorizedKeys, []byte(strings.Replace(string(b), line, "", 1)), 0o600)
}
