package ssmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"
)

// DefaultInstanceConnectWindow is how long a key pushed with
// SendSSHPublicKey stays usable when Config.InstanceConnectWindow is zero:
// 60 seconds, as AWS documents.
const DefaultInstanceConnectWindow = 60 * time.Second

var osUserPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$`)

type sendSSHPublicKeyInput struct {
	InstanceID       *string `json:"InstanceId"`
	InstanceOSUser   *string `json:"InstanceOSUser"`
	SSHPublicKey     *string `json:"SSHPublicKey"`
	AvailabilityZone *string `json:"AvailabilityZone"`
}

// serveInstanceConnect answers EC2 Instance Connect's SendSSHPublicKey.
func (s *Server) serveInstanceConnect(op string, body []byte) (any, *apiError) {
	if op != "SendSSHPublicKey" {
		return nil, errUnknownOperation()
	}
	var in sendSSHPublicKeyInput
	if e := decodeInput(body, &in); e != nil {
		return nil, e
	}
	if in.InstanceID == nil || in.InstanceOSUser == nil || in.SSHPublicKey == nil {
		return nil, errValidation("1 validation error detected: InstanceId, InstanceOSUser and SSHPublicKey must not be null")
	}
	id, user, key := *in.InstanceID, *in.InstanceOSUser, *in.SSHPublicKey
	if !strings.HasPrefix(id, "i-") || len(id) < 10 || len(id) > 32 {
		return nil, &apiError{status: 400, code: "InvalidArgsException", message: fmt.Sprintf("Instance ID %q is not valid: EC2 Instance Connect works with EC2 instances (i-...) only", id)}
	}
	if !osUserPattern.MatchString(user) {
		return nil, &apiError{status: 400, code: "InvalidArgsException", message: "InstanceOSUser is not valid"}
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil || len(bytes.TrimSpace(rest)) != 0 || len(key) > 4096 {
		return nil, &apiError{status: 400, code: "InvalidArgsException", message: "Invalid public key: use an OpenSSH-format RSA (2048 bits or more) or ED25519 public key"}
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoRSA:
	default:
		return nil, &apiError{status: 400, code: "InvalidArgsException", message: "Unsupported key type " + pub.Type()}
	}
	s.mu.Lock()
	_, isTarget := s.cfg.Targets[id]
	_, isInstance := s.instances[id]
	path, installed := s.cfg.InstanceConnect[id]
	window := s.cfg.InstanceConnectWindow
	s.mu.Unlock()
	if !isTarget && !isInstance && !installed {
		return nil, &apiError{status: 400, code: "EC2InstanceNotFoundException", message: "Instance not found: " + id}
	}
	s.st.keysPushed.Add(1)
	if installed {
		// The real instance's AuthorizedKeysCommand asks the instance
		// metadata service, which hands out the key for 60 s; OpenSSH's
		// expiry-time option makes the test sshd refuse it after the window
		// on its own, whatever the emulator does meanwhile.
		if err := s.installKey(path, user, pub, time.Now().Add(window)); err != nil {
			return nil, &apiError{status: 500, code: "ServiceException", message: "ssmtest: " + err.Error()}
		}
	}
	// Not installed: AWS accepts the push all the same; the instance just
	// never offers the key to its sshd (EC2 Instance Connect not installed).
	s.log.Debug("ssmtest: SendSSHPublicKey", "instance", id, "user", user, "fingerprint", ssh.FingerprintSHA256(pub), "installed", installed)
	return struct {
		RequestID string `json:"RequestId"`
		Success   bool   `json:"Success"`
	}{uuid.NewString(), true}, nil
}

// installKey rewrites the authorized_keys file at path with the key
// (restricted to logins as user when the file is shared by several users is
// not modelled: the test sshd serves one user) valid until expires, keeping
// the keys pushed earlier that have not expired yet.
func (s *Server) installKey(path, user string, pub ssh.PublicKey, expires time.Time) error {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	now := time.Now().UTC()
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	for sc.Scan() {
		line := sc.Text()
		var exp string
		if _, err := fmt.Sscanf(line, "expiry-time=%q", &exp); err == nil {
			if t, err := time.Parse("20060102150405Z", exp); err == nil && t.After(now) {
				b.WriteString(line)
				b.WriteByte('\n')
			}
		}
	}
	// Second granularity, rounded down: the key never outlives the window.
	fmt.Fprintf(&b, "expiry-time=%q %s", expires.UTC().Truncate(time.Second).Format("20060102150405Z"), ssh.MarshalAuthorizedKey(pub))
	_ = user
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
