package sshx

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// authSetup holds the public key sources for one handshake.
type authSetup struct {
	signers []ssh.Signer
	agent   agent.ExtendedAgent
	methods []string // descriptions for AuthError
	closers []func()
}

func (a *authSetup) close() {
	for _, c := range a.closers {
		c()
	}
	a.closers = nil
}

// authSetup loads the key sources of cfg (defaults applied): private key,
// then Signers, then the agent. They all go into one publickey method (see
// authMethod), because x/crypto/ssh tries each method name only once.
func (cfg *Config) authSetup() (*authSetup, error) {
	a := &authSetup{}
	key, src := cfg.key, cfg.keySource
	if key == nil && (len(cfg.PrivateKey) > 0 || cfg.PrivateKeyFile != "") {
		var err error
		key, src, err = loadPrivateKey(cfg.PrivateKey, cfg.PrivateKeyFile, cfg.Passphrase)
		if err != nil {
			return nil, err
		}
	}
	if key != nil {
		a.signers = append(a.signers, key)
		a.methods = append(a.methods, fmt.Sprintf("publickey %s (%s %s)", src, key.PublicKey().Type(), ssh.FingerprintSHA256(key.PublicKey())))
	}
	for _, s := range cfg.Signers {
		a.signers = append(a.signers, s)
		a.methods = append(a.methods, fmt.Sprintf("publickey signer (%s %s)", s.PublicKey().Type(), ssh.FingerprintSHA256(s.PublicKey())))
	}
	if cfg.Agent || cfg.AgentSocket != "" {
		sock := cfg.AgentSocket
		if sock == "" {
			sock = os.Getenv("SSH_AUTH_SOCK")
		}
		if sock == "" {
			return nil, fmt.Errorf("%w: Agent is set but SSH_AUTH_SOCK is empty; start ssh-agent or set AgentSocket", ErrInvalidConfig)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("%w: ssh-agent at %s: %v", ErrInvalidConfig, sock, err)
		}
		a.agent = agent.NewClient(c)
		a.closers = append(a.closers, func() { c.Close() })
		a.methods = append(a.methods, "publickey agent "+sock)
	}
	return a, nil
}

// loadPrivateKey reads (from pemBytes, else from path) and parses a private
// key, returning it with its description for AuthError.
func loadPrivateKey(pemBytes []byte, path string, passphrase []byte) (ssh.Signer, string, error) {
	src := "PrivateKey"
	if len(pemBytes) == 0 {
		src = "file " + path
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", &KeyError{Path: path, Err: unreadable{cause: err}}
		}
		pemBytes = b
	} else {
		path = ""
	}
	s, err := parseKey(pemBytes, passphrase)
	if err != nil {
		return nil, "", &KeyError{Path: path, Err: err}
	}
	return s, src, nil
}

// authMethod returns the single publickey method over all sources. It
// records in a.methods how many agent keys were offered.
func (a *authSetup) authMethod() ssh.AuthMethod {
	return ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		signers := append([]ssh.Signer(nil), a.signers...)
		if a.agent != nil {
			as, err := a.agent.Signers()
			if err != nil {
				return signers, nil // offer what we have; AuthError lists the agent
			}
			signers = append(signers, as...)
			for i, m := range a.methods {
				if strings.HasPrefix(m, "publickey agent ") && !strings.Contains(m, " keys)") {
					a.methods[i] = fmt.Sprintf("%s (%d keys)", m, len(as))
				}
			}
		}
		return signers, nil
	})
}

// parseKey parses a PEM or OpenSSH private key, classifying passphrase
// problems. Errors never contain key bytes.
func parseKey(pemBytes, passphrase []byte) (ssh.Signer, error) {
	if block, _ := pem.Decode(pemBytes); block != nil && block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, unreadable{cause: errors.New("encrypted PKCS#8 keys are not supported; convert with: ssh-keygen -p -f <keyfile> (writes OpenSSH format)")}
	}
	// Try the key as unencrypted first: a passphrase given for an
	// unencrypted key is ignored, as OpenSSH does (x/crypto/ssh would
	// reject it, with different errors for PEM and OpenSSH keys).
	s, err := ssh.ParsePrivateKey(pemBytes)
	if err == nil {
		return s, nil
	}
	var pm *ssh.PassphraseMissingError
	if !errors.As(err, &pm) {
		return nil, unreadable{cause: sanitize(err)}
	}
	if len(passphrase) == 0 {
		return nil, ErrPassphraseMissing
	}
	s, err = ssh.ParsePrivateKeyWithPassphrase(pemBytes, passphrase)
	if err == nil {
		return s, nil
	}
	if errors.Is(err, x509.IncorrectPasswordError) || isIncorrectPassword(err) {
		return nil, ErrPassphraseWrong
	}
	return nil, unreadable{cause: sanitize(err)}
}

// isIncorrectPassword catches wrong-passphrase errors x/crypto returns
// without x509.IncorrectPasswordError (e.g. malformed decrypted OpenSSH
// keys).
func isIncorrectPassword(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "decryption password incorrect") || strings.Contains(msg, "incorrect passphrase")
}

// sanitize returns an error with err's message cut to a bounded length, so
// that no parser can echo large parts of the input.
func sanitize(err error) error {
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "..."
	}
	return errors.New(msg)
}
