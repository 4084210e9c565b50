package sshx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/jumpless/jumpless/sshx"
)

// ExampleParseFingerprint shows the fingerprint forms accepted for
// Config.HostKeyFingerprint (as printed by `ssh-keygen -lf key.pub`).
func ExampleParseFingerprint() {
	fp, err := sshx.ParseFingerprint("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	fmt.Println(fp, err)
	_, err = sshx.ParseFingerprint("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48")
	fmt.Println(err)
	// Output:
	// SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU <nil>
	// sshx: invalid config: HostKeyFingerprint must start with "SHA256:" (as printed by ssh-keygen -lf <key>)
}

// ExampleNewClient connects over a net.Conn (here TCP; in jumpless an SSM
// session) and dials a database through the bastion.
func ExampleNewClient() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", "bastion.example.com:22")
	if err != nil {
		log.Fatal(err)
	}
	c, err := sshx.NewClient(ctx, conn, "i-0123456789abcdef0", sshx.Config{
		PrivateKeyFile: "/home/etl/.ssh/id_ed25519",
		KnownHostsFile: "/home/etl/.ssh/known_hosts", // entry for "i-0123456789abcdef0"
	})
	if err != nil {
		log.Fatal(err) // e.g. *sshx.HostKeyError, *sshx.AuthError
	}
	defer c.Close()
	db, err := c.DialContext(ctx, "tcp", "orders-db.internal:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	fmt.Println("connected to", db.RemoteAddr())
}

// ExampleClient_DialContext sends a request, half-closes the connection so
// the far end sees end of input, and reads the whole reply; a target the
// bastion cannot reach is reported as ErrConnectFailed.
func ExampleClient_DialContext() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", "bastion.example.com:22")
	if err != nil {
		log.Fatal(err)
	}
	c, err := sshx.NewClient(ctx, conn, "i-0123456789abcdef0", sshx.Config{
		PrivateKeyFile: "/home/etl/.ssh/id_ed25519",
		KnownHostsFile: "/home/etl/.ssh/known_hosts",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	tc, err := c.DialContext(ctx, "tcp", "loader.internal:9000")
	if errors.Is(err, sshx.ErrConnectFailed) {
		log.Fatal(err) // "the bastion could not connect to loader.internal:9000: ..."
	} else if err != nil {
		log.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Write([]byte("LOAD batch-42\n")); err != nil {
		log.Fatal(err)
	}
	if err := tc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		log.Fatal(err)
	}
	reply, err := io.ReadAll(tc) // until the far end closes
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", reply)
}
