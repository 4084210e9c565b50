package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/jumpless/jumpless/sshx"
)

// TestAuthDetailSeparatesTriedFromAccepted guards check's wording: the keys
// listed are what was tried; what the server accepts is derived from the
// methods x/crypto/ssh attempted (it attempts only what the server lists).
func TestAuthDetailSeparatesTriedFromAccepted(t *testing.T) {
	key := "publickey file /k (ssh-ed25519 SHA256:x)"
	for _, c := range []struct {
		err  *sshx.AuthError
		want string
	}{
		{&sshx.AuthError{Methods: []string{key}, Err: errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain")},
			"tried " + key + "; the server accepts public keys but none of these"},
		{&sshx.AuthError{Methods: []string{key}, Err: errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none], no supported methods remain")},
			"tried " + key + "; the server does not offer public-key login"},
		{&sshx.AuthError{Err: errors.New("ssh: unable to authenticate, attempted methods [none], no supported methods remain")},
			"tried no key"},
	} {
		got := authDetail(c.err)
		if got != c.want {
			t.Errorf("authDetail = %q, want %q", got, c.want)
		}
		if strings.Contains(got, "server accepts: ") {
			t.Errorf("authDetail calls the tried keys accepted: %q", got)
		}
	}
}
