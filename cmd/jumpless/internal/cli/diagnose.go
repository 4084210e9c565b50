package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/instanceconnect"
	"github.com/jumpless/jumpless/link"
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
	stepTarget      = "target"
	stepIC          = "Instance Connect"
	stepDBCreds     = "database login"
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
	var (
		linkFE *link.ForbiddenError
		linkCE *link.ConnectError
		tgtErr *ssm.TargetError
		icErr  *instanceconnect.Error
	)
	switch {
	case errors.As(err, &linkFE):
		return diagnosis{step: stepDial, problem: fmt.Sprintf("the SSM agent refuses to forward to %s: %s", linkFE.Addr, sanitize(linkFE.Reason)),
			cause:  "the agent never forwards to the instance metadata, DNS and time addresses (169.254.169.x, fd00:ec2::x) or the VPC's reserved addresses",
			advice: "use the database's own address; to reach a service on the instance itself use localhost:PORT"}
	case errors.As(err, &linkCE):
		return diagnosis{step: stepDial, problem: fmt.Sprintf("the instance cannot connect to %s: %s", linkCE.Addr, sanitize(linkCE.Reason)),
			cause: "nothing listens there, or a security group, NACL or firewall blocks the instance", advice: dialAdvice}
	case errors.As(err, &tgtErr):
		return diagnosis{step: stepTarget, problem: msg}
	case errors.As(err, &icErr):
		return diagnosis{step: stepIC, problem: msg, usage: errors.Is(err, instanceconnect.ErrNotEC2)}
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
		if errors.As(err, &authErr) {
			d.problem += ": " + authDetail(authErr)
		}
		d.cause = "wrong user name, or the key is not authorized for that user"
		if errors.As(err, &authErr) && !serverOffered(authErr, "publickey") && len(authErr.Methods) > 0 {
			d.cause = "sshd on the instance does not offer public-key login to this user (PubkeyAuthentication no, or a Match block)"
		}
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
	case errors.Is(err, sshx.ErrConnectFailed), errors.Is(err, sshx.ErrForwardingProhibited), errors.As(err, &ocErr):
		return diagnoseDial(err, "", o)
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

// dialAdvice is what to check for a database address the instance cannot
// reach.
const dialAdvice = "check the host name and port, that the instance can resolve it, and that the database's security group / NACLs allow the instance"

// diagnoseDial explains a failed dial of addr through a working SSH
// connection: the instance cannot reach addr (sshx.ErrConnectFailed), its
// sshd does not allow forwarding (sshx.ErrForwardingProhibited), sshd
// refused for another reason, no answer in time, or the tunnel itself
// failed. addr "" means the address of the *sshx.DialError.
func diagnoseDial(err error, addr string, o *tunnelOpts) diagnosis {
	var (
		de     *sshx.DialError
		oc     *gossh.OpenChannelError
		reason gossh.RejectionReason
		why    string
	)
	switch {
	case errors.As(err, &de):
		reason, why = de.Reason, de.Message
		if addr == "" {
			addr = de.Addr
		}
	case errors.As(err, &oc):
		reason, why = oc.Reason, oc.Message
	}
	if addr == "" {
		addr = "the address"
	}
	why = sanitize(oneLine(why))
	if why == "" {
		why = reason.String()
	}
	switch {
	case errors.Is(err, sshx.ErrConnectFailed):
		return diagnosis{step: stepDial, problem: fmt.Sprintf("the instance cannot connect to %s: %s", addr, why),
			cause: connectFailedCause(why), advice: dialAdvice}
	case errors.Is(err, sshx.ErrForwardingProhibited):
		return diagnosis{step: stepDial, problem: fmt.Sprintf("sshd on the instance does not allow forwarding to %s: %s", addr, why),
			cause:  "AllowTcpForwarding no, DisableForwarding yes or a PermitOpen list without this address in the instance's sshd_config, or no-port-forwarding, restrict or permitopen= on the key's line in ~" + o.sshUser + "/.ssh/authorized_keys",
			advice: fmt.Sprintf("on the instance set AllowTcpForwarding local (or yes) and PermitOpen any (or a list with %s) in /etc/ssh/sshd_config and reload sshd, and allow port forwarding on the key's authorized_keys line (or add permitopen=\"%s\")", addr, addr)}
	case de != nil || oc != nil:
		return diagnosis{step: stepDial, problem: fmt.Sprintf("sshd on the instance could not open a connection to %s: %s", addr, why),
			advice: "look at sshd's log on the instance (journalctl -u sshd, /var/log/secure or /var/log/auth.log); for a resource shortage open fewer connections at once or raise MaxSessions in its sshd_config"}
	case errors.Is(err, context.DeadlineExceeded):
		return diagnosis{step: stepDial, problem: fmt.Sprintf("no answer from the instance about %s in time", addr),
			cause:  "a security group, network ACL or firewall silently dropping the instance's packets to the address (a closed port is refused at once), or a slow name lookup on the instance",
			advice: dialAdvice}
	}
	msg := sanitize(oneLine(err.Error()))
	if errors.Is(err, sshx.ErrClosed) || errors.Is(err, sshx.ErrKeepaliveTimeout) || errors.Is(err, tunnel.ErrTunnelDown) || errors.Is(err, tunnel.ErrClosed) {
		return diagnosis{step: stepDial, problem: fmt.Sprintf("the SSH connection to the instance was lost while connecting to %s: %s", addr, msg),
			advice: "run check again; if it recurs, check the instance's load and network, with --verbose"}
	}
	return diagnosis{step: stepDial, problem: fmt.Sprintf("cannot open a connection to %s through the tunnel: %s", addr, msg),
		advice: "run again with --verbose to see where the SSH connection failed"}
}

// connectFailedCause picks the likely cause of a failed connect from the
// instance by the server's message (OpenSSH sends strerror, e.g.
// "Connection refused").
func connectFailedCause(why string) string {
	w := strings.ToLower(why)
	switch {
	case strings.Contains(w, "refused"):
		return "nothing listens on that port at that address (the host answered and refused: a wrong port, or the database is down)"
	case strings.Contains(w, "unknown host"), strings.Contains(w, "not known"), strings.Contains(w, "name resolution"):
		return "the instance cannot resolve the host name (a typo, or a private DNS name its VPC does not resolve)"
	case strings.Contains(w, "timed out"):
		return "a security group, network ACL or firewall dropping the instance's packets to the address"
	case strings.Contains(w, "no route"), strings.Contains(w, "unreachable"):
		return "no network route from the instance to the address (subnet route tables, VPC peering)"
	}
	return dialCause
}

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
	if o.instanceConnect {
		return "an EC2 Instance Connect key"
	}
	if o.sshKey != "" {
		return o.sshKey
	}
	if o.tempKey {
		return "a temporary key registered through Cloud Assistant"
	}
	return "your ssh-agent keys"
}

// authDetail says what was tried and what the server is known to accept.
// x/crypto/ssh tries a method only after the server listed it as one that
// can continue ("attempted methods [none publickey]"), so an attempted
// publickey means the server accepts public keys and refused these; a
// publickey never attempted means the server does not offer it.
func authDetail(e *sshx.AuthError) string {
	tried := "no key"
	if len(e.Methods) > 0 {
		tried = strings.Join(e.Methods, "; ")
	}
	switch {
	case len(e.Methods) == 0:
		return "tried " + tried
	case serverOffered(e, "publickey"):
		return "tried " + tried + "; the server accepts public keys but none of these"
	default:
		return "tried " + tried + "; the server does not offer public-key login"
	}
}

// serverOffered reports whether x/crypto/ssh attempted method, i.e. the
// server listed it as acceptable.
func serverOffered(e *sshx.AuthError, method string) bool {
	if e.Err == nil {
		return false
	}
	msg := e.Err.Error()
	i := strings.Index(msg, "attempted methods [")
	if i < 0 {
		return true // unknown: do not claim the server refuses it
	}
	list := msg[i+len("attempted methods ["):]
	if j := strings.Index(list, "]"); j >= 0 {
		list = list[:j]
	}
	for _, m := range strings.Fields(list) {
		if m == method {
			return true
		}
	}
	return false
}
