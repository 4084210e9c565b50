package sshx

import (
	"bytes"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ParseFingerprint validates a host key fingerprint as printed by
// `ssh-keygen -l` ("SHA256:" + base64 of 32 bytes, padding optional) and
// returns it in the canonical form of ssh.FingerprintSHA256. The error
// matches ErrInvalidConfig.
func ParseFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "SHA256:")
	if !ok {
		return "", fmt.Errorf("%w: HostKeyFingerprint must start with \"SHA256:\" (as printed by ssh-keygen -lf <key>)", ErrInvalidConfig)
	}
	rest = strings.TrimRight(rest, "=")
	b, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("%w: HostKeyFingerprint is not SHA256: followed by the base64 of 32 bytes", ErrInvalidConfig)
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(b), nil
}

// ParseHostKey parses a public host key given as an authorized_keys line
// ("ssh-ed25519 AAAA... comment"), a known_hosts line ("host ssh-ed25519
// AAAA..."), or the contents of a file whose first line is one of those.
// The error matches ErrInvalidConfig.
func ParseHostKey(s string) (ssh.PublicKey, error) {
	b := bytes.TrimSpace([]byte(s))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty host key", ErrInvalidConfig)
	}
	if pub, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
		return pub, nil
	}
	if _, _, pub, _, _, err := ssh.ParseKnownHosts(b); err == nil {
		return pub, nil
	}
	return nil, fmt.Errorf("%w: host key is neither an authorized_keys line (\"ssh-ed25519 AAAA...\") nor a known_hosts line", ErrInvalidConfig)
}

// hostAddr is a net.Addr for knownhosts, which needs a "host:port" remote.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

// lookupName returns the known_hosts lookup name ("host:port", port 22 when
// omitted).
func lookupName(name string) string {
	if _, _, err := net.SplitHostPort(name); err == nil {
		return name
	}
	return net.JoinHostPort(strings.Trim(name, "[]"), "22")
}

// hostKeyCallback builds the verification callback for cfg (defaults
// applied) and host, the name to check the key under.
func hostKeyCallback(cfg *Config, host string) (ssh.HostKeyCallback, []string, error) {
	if cfg.InsecureIgnoreHostKey {
		cfg.Logger.Warn("sshx: host key verification disabled (InsecureIgnoreHostKey)")
		return ssh.InsecureIgnoreHostKey(), nil, nil
	}
	var checks []func(key ssh.PublicKey) error
	var algos []string
	if cfg.HostKey != nil {
		want := cfg.HostKey
		wantBytes := want.Marshal()
		checks = append(checks, func(key ssh.PublicKey) error {
			if subtle.ConstantTimeCompare(key.Marshal(), wantBytes) == 1 {
				return nil
			}
			return &HostKeyError{Host: host, Source: "pinned HostKey", Want: []string{want.Type() + " " + ssh.FingerprintSHA256(want)}, Err: ErrHostKeyMismatch}
		})
		algos = algorithmsFor(want.Type())
	}
	if cfg.HostKeyFingerprint != "" {
		fp := cfg.HostKeyFingerprint
		checks = append(checks, func(key ssh.PublicKey) error {
			if subtle.ConstantTimeCompare([]byte(ssh.FingerprintSHA256(key)), []byte(fp)) == 1 {
				return nil
			}
			return &HostKeyError{Host: host, Source: "HostKeyFingerprint", Want: []string{fp}, Err: ErrHostKeyMismatch}
		})
	}
	if cfg.KnownHostsFile != "" {
		kh, err := knownhosts.New(cfg.KnownHostsFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: KnownHostsFile: %v", ErrInvalidConfig, err)
		}
		name := lookupName(host)
		source := "known_hosts " + cfg.KnownHostsFile
		if algos == nil {
			algos = knownAlgorithms(kh, name)
		}
		checks = append(checks, func(key ssh.PublicKey) error {
			err := kh(name, hostAddr(name), key)
			if err == nil {
				return nil
			}
			var ke *knownhosts.KeyError
			var re *knownhosts.RevokedError
			switch {
			case errors.As(err, &ke) && len(ke.Want) == 0:
				return &HostKeyError{Host: host, Source: source, Err: ErrUnknownHost}
			case errors.As(err, &ke):
				var want []string
				for _, w := range ke.Want {
					want = append(want, fmt.Sprintf("%s %s (line %d)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Line))
				}
				return &HostKeyError{Host: host, Source: source, Want: want, Err: ErrHostKeyMismatch}
			case errors.As(err, &re):
				return &HostKeyError{Host: host, Source: source + " (key is @revoked)", Err: ErrHostKeyMismatch}
			default:
				return &HostKeyError{Host: host, Source: source + ": " + err.Error(), Err: ErrHostKeyMismatch}
			}
		})
	}
	log := cfg.Logger
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		for _, check := range checks {
			if err := check(key); err != nil {
				var he *HostKeyError
				if errors.As(err, &he) {
					he.Fingerprint = ssh.FingerprintSHA256(key)
					he.KeyType = key.Type()
					he.Key = key
				}
				log.Warn("sshx: host key rejected", "host", host, "fingerprint", ssh.FingerprintSHA256(key), "err", err)
				return err
			}
		}
		log.Debug("sshx: host key verified", "host", host, "fingerprint", ssh.FingerprintSHA256(key))
		return nil
	}, algos, nil
}

// algorithmsFor returns the host key algorithms that produce keys of type t,
// so that the server presents the pinned key type.
func algorithmsFor(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// knownAlgorithms returns the host key algorithms of the keys known_hosts
// holds for name (nil when none), so that the server is asked for a key
// type we can verify. It probes kh with a key no host has.
func knownAlgorithms(kh ssh.HostKeyCallback, name string) []string {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := kh(name, hostAddr(name), probe); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, w := range ke.Want {
		for _, a := range algorithmsFor(w.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}
