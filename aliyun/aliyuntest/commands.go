package aliyuntest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"golang.org/x/crypto/ssh"
	"net/url"
	"os"
	"strings"
	"time"
)

// SendPublicKeyCommand is the public Cloud Assistant command that
// registers a temporary SSH public key (protocol §5.1).
const SendPublicKeyCommand = "ACS-ECS-SendSshPublicKey-linux.sh"

type invocation struct {
	id, instance, status, output string
}

// OnSendPublicKey sets what InvokeCommand of SendPublicKeyCommand does on
// the instance: install key for user (for 60 s). An error makes the
// invocation Failed. Nil (the default): the command fails, as on an
// instance without the config_ecs_instance_connect plug-in.
func (s *Server) OnSendPublicKey(f func(instance, user, publicKey string) error) {
	s.mu.Lock()
	s.keyHook = f
	s.mu.Unlock()
}

func (s *Server) commandAction(action string, p url.Values) (any, *apiError) {
	switch action {
	case "RunCommand", "InvokeCommand":
		inst := p.Get("InstanceId.1")
		if _, ok := s.host(inst); !ok {
			return nil, &apiError{404, "InvalidInstance.NotFound", "The specified instance does not exist."}
		}
		inv := &invocation{id: "t-emu" + randHex(8), instance: inst, status: "Success"}
		if action == "InvokeCommand" {
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
			s.mu.Lock()
			hook := s.keyHook
			s.mu.Unlock()
			switch {
			case hook == nil && s.cfg.AuthorizedKeys != "":
				if err := s.installKey(params["sshPublicKey"]); err != nil {
					inv.status, inv.output = "Failed", err.Error()
				}
			case hook == nil:
				inv.status, inv.output = "Failed", "config_ecs_instance_connect is not installed"
			default:
				if err := hook(inst, user, params["sshPublicKey"]); err != nil {
					inv.status, inv.output = "Failed", err.Error()
				}
			}
		}
		s.mu.Lock()
		s.invocations[inv.id] = inv
		s.mu.Unlock()
		return map[string]any{"InvokeId": inv.id, "CommandId": "c-emu" + randHex(6)}, nil
	case "DescribeInvocationResults":
		s.mu.Lock()
		inv, ok := s.invocations[p.Get("InvokeId")]
		s.mu.Unlock()
		if !ok {
			return nil, &apiError{404, "InvalidInvokeId.NotFound", "The specified InvokeId does not exist."}
		}
		output := base64.StdEncoding.EncodeToString([]byte(inv.output))
		if p.Get("ContentEncoding") == "PlainText" {
			output = inv.output
		}
		return map[string]any{"Invocation": map[string]any{"InvocationResults": map[string]any{"InvocationResult": []map[string]any{{
			"InvokeId": inv.id, "InstanceId": inv.instance, "InvocationStatus": inv.status, "InvokeRecordStatus": "Finished",
			"Output": output, "ExitCode": map[bool]int{true: 0, false: 1}[inv.status == "Success"],
			"FinishedTime": time.Now().UTC().Format(time.RFC3339),
		}}}}}, nil
	}
	return nil, &apiError{404, "InvalidAction.NotFound", fmt.Sprintf("%s is not served", action)}
}

// installKey appends key to Config.AuthorizedKeys and removes it again
// after KeyWindow, as the instance's plug-in keeps a key for 60 s.
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
	s.mu.Lock()
	defer s.mu.Unlock()
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
