package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jumpless/jumpless/internal/sshserver"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// Open a tunnel, dial a service behind the instance, close. Against AWS,
// SSM.AWS comes from config.LoadDefaultConfig and the known_hosts entry
// for the instance id from your ~/.ssh/known_hosts; here an in-process SSH
// server and the SSM emulator stand in for the instance and the service.
func Example() {
	demo := startDemo()
	defer demo.close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM: ssm.Config{AWS: demo.emu.AWSConfig(), Target: "i-0123456789abcdef0"},
		SSH: sshx.Config{PrivateKeyFile: demo.keyFile, KnownHostsFile: demo.knownHosts},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()

	conn, err := tun.DialContext(ctx, "tcp", demo.service)
	if err != nil {
		log.Fatal(err)
	}
	greeting, _ := io.ReadAll(conn)
	conn.Close()
	fmt.Printf("%s (RemoteAddr is the dialed address: %v)\n", greeting, conn.RemoteAddr().String() == demo.service)

	if err := tun.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sessions open at the service:", demo.emu.Stats().SessionsOpen)
	fmt.Println("tunnel error:", tun.Err())
	// Output:
	// hello from behind the instance (RemoteAddr is the dialed address: true)
	// sessions open at the service: 0
	// tunnel error: tunnel: closed
}

// A job fails fast when its tunnel dies: watch Done and cancel the work
// with Err as the cause.
func ExampleTunnel_Done() {
	demo := startDemo()
	defer demo.close()

	tun, err := tunnel.Open(context.Background(), tunnel.Config{
		SSM: ssm.Config{AWS: demo.emu.AWSConfig(), Target: "i-0123456789abcdef0"},
		SSH: sshx.Config{PrivateKeyFile: demo.keyFile, KnownHostsFile: demo.knownHosts},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		select {
		case <-tun.Done():
			cancel(tun.Err())
		case <-ctx.Done():
		}
	}()

	// An administrator terminates the session.
	demo.emu.CloseChannel(tun.Stats().SessionIDs[0], "")
	<-ctx.Done()
	fmt.Println(errors.Is(context.Cause(ctx), tunnel.ErrTunnelDown))
	// Output: true
}

// demo is an in-process stand-in for an instance (SSH server), a service
// it can reach, and the SSM service.
type demo struct {
	emu                 *ssmtest.Server
	ssh                 *sshserver.Server
	svc                 net.Listener
	hold                net.Listener // accepts and never writes
	hang                string       // its address
	dir                 string
	keyFile, knownHosts string
	service             string
}

func startDemo() *demo {
	d := &demo{}
	var err error
	if d.dir, err = os.MkdirTemp("", "tunnel-example-"); err != nil {
		log.Fatal(err)
	}
	if d.svc, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		log.Fatal(err)
	}
	d.service = d.svc.Addr().String()
	go func() {
		for {
			c, err := d.svc.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from behind the instance"))
			c.Close()
		}
	}()
	if d.hold, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		log.Fatal(err)
	}
	d.hang = d.hold.Addr().String()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := d.hold.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	key, pemBytes, err := sshserver.NewKey(nil)
	if err != nil {
		log.Fatal(err)
	}
	if d.ssh, err = sshserver.Start(sshserver.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}}); err != nil {
		log.Fatal(err)
	}
	d.keyFile = filepath.Join(d.dir, "id_ed25519")
	d.knownHosts = filepath.Join(d.dir, "known_hosts")
	os.WriteFile(d.keyFile, pemBytes, 0o600)
	os.WriteFile(d.knownHosts, []byte(knownhosts.Line([]string{"i-0123456789abcdef0"}, d.ssh.HostKey())+"\n"), 0o600)
	if d.emu, err = ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{"i-0123456789abcdef0": d.ssh.Addr()}}); err != nil {
		log.Fatal(err)
	}
	return d
}

func (d *demo) close() {
	d.emu.Close()
	d.ssh.Close()
	d.svc.Close()
	d.hold.Close()
	os.RemoveAll(d.dir)
}
