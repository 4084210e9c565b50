package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// Steps of opening a tunnel, in order; a diagnosis names the one that
// failed.
const (
	stepConfig      = "configuration"
	stepCredentials = "AWS credentials"
	stepStart       = "StartSession"
	stepAgent       = "agent handshake"
	stepHostKey     = "SSH host key"
	stepAuth        = "SSH authentication"
	stepDial        = "database address"
)

// diagnosis explains a failure: which step, what happened, the likely cause
// and what to change.
type diagnosis struct {
	step    string
	problem string // what happened, one line
	cause   string // the likely cause ("" when the problem says it all)
	advice  string // what to change
	usage   bool   // a configuration mistake (exit 2) rather than a connection failure
	// offered is the host key the instance offered, for host key failures.
	offered string
	// knownHostsLine trusts the offered key, for host key failures.
	knownHostsLine string
}

// line is the diagnosis as one line: "problem (likely cause: ...); fix: ...".
func (d diagnosis) line() string {
	s := d.problem
	if d.cause != "" {
		s += " (likely cause: " + d.cause + ")"
	}
	if d.advice != "" {
		s += "; fix: " + d.advice
	}
	return s
}

// diagnose maps an error from tunnel.Open, ssm.Dial, sshx.NewClient or a
// dial through the tunnel to the failed step and advice.
func diagnose(err error, o *tunnelOpts) diagnosis {
	msg := sanitize(oneLine(err.Error()))
	region := o.region
	if region == "" {
		region = "the configured region"
	}
	var (
		apiErr  smithy.APIError
		tnc     *types.TargetNotConnected
		invDoc  *types.InvalidDocument
		hkErr   *sshx.HostKeyError
		authErr *sshx.AuthError
		ccErr   *ssm.ChannelClosedError
		dcErr   *ssm.DataChannelError
		ocErr   *gossh.OpenChannelError
	)
	switch {
	case errors.As(err, &tnc):
		return diagnosis{step: stepStart, problem: fmt.Sprintf("%s is not connected to Session Manager in %s (TargetNotConnected)", o.target, region),
			cause:  "wrong instance id or region, the instance is stopped, or its SSM agent is not running or cannot reach Session Manager",
			advice: "check the instance id and --region; on the instance, check that amazon-ssm-agent runs and reaches the ssm/ssmmessages endpoints (VPC endpoints or NAT) and that its instance profile allows SSM (AmazonSSMManagedInstanceCore)"}
	case errors.As(err, &invDoc):
		return diagnosis{step: stepStart, problem: "Session Manager does not know the document: " + msg,
			advice: "leave --document-name empty for AWS-StartSSHSession, or check its name and region", usage: true}
	case errors.As(err, &apiErr):
		code := apiErr.ErrorCode()
		switch code {
		case "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature", "UnrecognizedClientException", "InvalidClientTokenId":
			return diagnosis{step: stepCredentials, problem: "AWS rejected the request signature (" + code + ")",
				cause:  "the secret key does not belong to the access key id, the key is unknown or disabled, or the clock is off",
				advice: "check the keys (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the credentials of --profile), that they belong to this account, and the system clock"}
		case "ExpiredTokenException", "ExpiredToken", "RequestExpired":
			return diagnosis{step: stepCredentials, problem: "the AWS credentials have expired (" + code + ")",
				advice: "refresh them: 'aws sso login --profile NAME', or get a new session token"}
		case "AccessDeniedException", "AccessDenied":
			doc := o.documentName
			if doc == "" {
				doc = ssm.DefaultDocumentName
			}
			return diagnosis{step: stepStart, problem: "IAM does not allow ssm:StartSession (" + apiErr.ErrorMessage() + ")",
				advice: fmt.Sprintf("ask for ssm:StartSession on the instance %s and on document %s, and ssm:TerminateSession on your sessions", o.target, doc)}
		case "ThrottlingException":
			return diagnosis{step: stepStart, problem: "SSM API throttled the request", advice: "retry later or lower --sessions"}
		}
		return diagnosis{step: stepStart, problem: "SSM API error: " + msg, advice: "check --region, --endpoint-url and the credentials"}
	case errors.Is(err, sshx.ErrHostKeyMismatch):
		d := diagnosis{step: stepHostKey, problem: fmt.Sprintf("the host key of %s does not match", hostKeyName(o))}
		if errors.As(err, &hkErr) {
			d.offered, d.knownHostsLine = hkErr.Fingerprint, hkErr.KnownHostsLine()
		}
		d.problem += fmt.Sprintf(": the instance offers %s", orUnknown(d.offered))
		d.cause = "the instance was replaced or its host key regenerated, or someone is intercepting the connection"
		d.advice = fmt.Sprintf("verify %s out of band (EC2 console → Get system log), then replace the entry for %s in %s with: %s", orUnknown(d.offered), hostKeyName(o), hostKeySource(o), orUnknown(d.knownHostsLine))
		if o.hostKey != "" {
			d.advice = fmt.Sprintf("verify %s out of band (EC2 console → Get system log), then pass --host-key %s", orUnknown(d.offered), orUnknown(d.offered))
		}
		return d
	case errors.Is(err, sshx.ErrUnknownHost):
		d := diagnosis{step: stepHostKey, problem: fmt.Sprintf("%s has no host key entry for %s", hostKeySource(o), hostKeyName(o))}
		if errors.As(err, &hkErr) {
			d.offered, d.knownHostsLine = hkErr.Fingerprint, hkErr.KnownHostsLine()
		}
		d.problem += fmt.Sprintf(": the instance offers %s", orUnknown(d.offered))
		d.cause = "a new instance, or its entry is stored under another name (entries are looked up under the instance id, or --host-key-alias)"
		d.advice = fmt.Sprintf("verify %s out of band (EC2 console → Get system log), then add to the known_hosts file: %s (or pass --host-key %s)", orUnknown(d.offered), orUnknown(d.knownHostsLine), orUnknown(d.offered))
		return d
	case errors.Is(err, sshx.ErrPassphraseMissing):
		return diagnosis{step: stepAuth, problem: "the SSH key " + o.sshKey + " is encrypted", advice: "put its passphrase in $" + passphraseEnv + ", or load it into ssh-agent and use --ssh-agent", usage: true}
	case errors.Is(err, sshx.ErrPassphraseWrong):
		return diagnosis{step: stepAuth, problem: "the passphrase in $" + passphraseEnv + " does not decrypt " + o.sshKey, advice: "check the passphrase", usage: true}
	case errors.Is(err, sshx.ErrKeyUnreadable):
		return diagnosis{step: stepConfig, problem: "cannot use the SSH key: " + msg, advice: "check --ssh-key (an OpenSSH or PEM private key file readable by you)", usage: true}
	case errors.Is(err, sshx.ErrAuthFailed):
		d := diagnosis{step: stepAuth, problem: fmt.Sprintf("the instance refused SSH login as %q", o.sshUser)}
		methods := ""
		if errors.As(err, &authErr) && len(authErr.Methods) > 0 {
			methods = " (server accepts: " + strings.Join(authErr.Methods, ", ") + ")"
		}
		d.problem += methods
		d.cause = "wrong user name, or the key is not authorized for that user"
		d.advice = "check --ssh-user (ec2-user on Amazon Linux, ubuntu on Ubuntu, admin on Debian) and that the public half of " + keyName(o) + " is in ~" + o.sshUser + "/.ssh/authorized_keys on the instance"
		return d
	case errors.As(err, &ccErr):
		if strings.Contains(strings.ToLower(ccErr.Output), "unable to connect") {
			return diagnosis{step: stepAgent, problem: "the agent could not connect to sshd on the instance: " + oneLine(ccErr.Output),
				advice: fmt.Sprintf("check that sshd runs on the instance and listens on port %d (--bastion-port)", o.bastionPort)}
		}
		return diagnosis{step: stepAgent, problem: "the service closed the session: " + msg, advice: "check the agent's log on the instance (/var/log/amazon/ssm/amazon-ssm-agent.log)"}
	case errors.As(err, &dcErr):
		return diagnosis{step: stepAgent, problem: "cannot open the Session Manager data channel: " + msg,
			advice: "check network access to ssmmessages." + regionOr(o, "REGION") + ".amazonaws.com (proxy, firewall) and, for a private CA or the emulator, --ca-bundle"}
	case errors.Is(err, ssm.ErrHandshakeTimeout):
		return diagnosis{step: stepAgent, problem: "the SSM agent did not complete the handshake in time",
			advice: "the agent may be overloaded, hung or too old: restart amazon-ssm-agent on the instance or update it"}
	case errors.Is(err, ssm.ErrHandshake):
		return diagnosis{step: stepAgent, problem: "agent handshake failed: " + msg, advice: "update amazon-ssm-agent on the instance"}
	case errors.As(err, &ocErr):
		return diagnosis{step: stepDial, problem: "the instance cannot connect to the address: " + oneLine(ocErr.Message),
			cause:  dialCause,
			advice: "check the host name and port, that the instance can resolve it, and that the database's security group / NACLs allow the instance"}
	case errors.Is(err, tunnel.ErrInvalidConfig), errors.Is(err, ssm.ErrInvalidConfig):
		return diagnosis{step: stepConfig, problem: msg, usage: true}
	case errors.Is(err, context.DeadlineExceeded):
		return diagnosis{step: stepStart, problem: "timed out: " + msg, advice: "check network access to the SSM endpoints, or raise --connect-timeout"}
	}
	return diagnosis{step: stepStart, problem: msg}
}

// dialCause is the likely cause of a database address the instance cannot
// reach.
const dialCause = "wrong host or port, a name the instance cannot resolve, or a security group / network ACL that does not let the instance in"

func orUnknown(s string) string {
	if s == "" {
		return "an unknown key"
	}
	return s
}

func regionOr(o *tunnelOpts, def string) string {
	if o.region != "" {
		return o.region
	}
	return def
}

func hostKeyName(o *tunnelOpts) string {
	if o.hostKeyAlias != "" {
		return o.hostKeyAlias
	}
	return o.target
}

func hostKeySource(o *tunnelOpts) string {
	switch {
	case o.hostKey != "":
		return "--host-key"
	case o.knownHosts != "":
		return "known_hosts file " + o.knownHosts
	}
	return "the host key configuration"
}

func keyName(o *tunnelOpts) string {
	if o.sshKey != "" {
		return o.sshKey
	}
	return "your ssh-agent keys"
}
