package sshx

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseFingerprint: never panics; accepted values are canonical and
// idempotent; rejections are ErrInvalidConfig and do not echo the input.
func FuzzParseFingerprint(f *testing.F) {
	for _, s := range []string{
		"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		" SHA256:abc ", "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "", "SHA256:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("untyped error %v", err)
			}
			if len(s) > 24 && strings.Contains(err.Error(), s) {
				t.Fatalf("error echoes input")
			}
			return
		}
		again, err := ParseFingerprint(fp)
		if err != nil || again != fp || !strings.HasPrefix(fp, "SHA256:") || len(fp) != len("SHA256:")+43 {
			t.Fatalf("%q → %q → %q, %v", s, fp, again, err)
		}
	})
}

// FuzzParseHostKey: never panics; accepted keys round-trip through
// authorized_keys format.
func FuzzParseHostKey(f *testing.F) {
	for _, s := range []string{
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host",
		"[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
		"|1|abc=|def= ssh-rsa AAAA", "ssh-rsa", "", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHostKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		k2, err := ParseHostKey(string(ssh.MarshalAuthorizedKey(k)))
		if err != nil || string(k2.Marshal()) != string(k.Marshal()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
