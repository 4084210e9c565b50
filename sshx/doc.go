// Package sshx is an SSH client (golang.org/x/crypto/ssh) that runs over any
// net.Conn — in jumpless, an SSM Session Manager session — and opens
// direct-tcpip channels to databases behind the bastion.
//
// It adds what a job-scoped tunnel needs on top of x/crypto/ssh:
//
//   - authentication from a private key (PEM or OpenSSH format, RSA, ECDSA,
//     Ed25519, optionally passphrase-protected), extra signers, and
//     ssh-agent, tried in that order;
//   - host key verification that fails closed: known_hosts (hashed entries
//     included, looked up under HostKeyAlias), a pinned key, or a SHA256
//     fingerprint; skipping verification needs InsecureIgnoreHostKey;
//   - keepalives (keepalive@openssh.com) with a deadline, so a dead path
//     closes the client and Err reports why;
//   - typed errors for every failure a user can fix (see errors.go); no
//     error or log line contains key material or passphrases;
//   - connections whose RemoteAddr is the address dialed, with deadlines,
//     half-close (CloseWrite sends the SSH channel EOF, like
//     *net.TCPConn) and cheap byte counters (Client.Stats); a target the
//     bastion cannot reach is a *DialError matching ErrConnectFailed;
//   - Config.Validate, which runs NewClient's configuration checks without
//     any network, so callers can reject bad input before opening a session.
//
// Typical use:
//
//	c, err := sshx.NewClient(ctx, sessionConn, "i-0123456789abcdef0", sshx.Config{
//		PrivateKeyFile: keyPath,
//		KnownHostsFile: knownHostsPath, // entry for "i-0123456789abcdef0"
//	})
//	...
//	db, err := c.DialContext(ctx, "tcp", "orders-db.internal:5432")
package sshx
