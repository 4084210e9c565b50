package aliyuntest

import (
	"encoding/json"
	"fmt"
	"net/url"
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
		return map[string]any{"Invocation": map[string]any{"InvocationResults": map[string]any{"InvocationResult": []map[string]any{{
			"InvokeId": inv.id, "InstanceId": inv.instance, "InvocationStatus": inv.status, "InvokeRecordStatus": "Finished",
			"Output": inv.output, "ExitCode": map[bool]int{true: 0, false: 1}[inv.status == "Success"],
			"FinishedTime": time.Now().UTC().Format(time.RFC3339),
		}}}}}, nil
	}
	return nil, &apiError{404, "InvalidAction.NotFound", fmt.Sprintf("%s is not served", action)}
}
