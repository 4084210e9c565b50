package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// Direct mode needs no SSH server or key on the instance: its SSM agent
// forwards each connection (AWS-StartPortForwardingSessionToRemoteHost).
// Here the emulator's instance resolves db.internal to a local service.
func Example_direct() {
	svc, _ := net.Listen("tcp", "127.0.0.1:0")
	defer svc.Close()
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from db.internal"))
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(svc.Addr().String())
	emu, err := ssmtest.NewServer(ssmtest.Config{
		Targets: map[string]string{"i-0123456789abcdef0": "127.0.0.1"},
		Hosts:   map[string]string{"db.internal": "127.0.0.1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer emu.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		Mode: tunnel.ModeDirect,
		SSM:  ssm.Config{AWS: emu.AWSConfig(), Target: "i-0123456789abcdef0"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()

	conn, err := tun.DialContext(ctx, "tcp", "db.internal:"+port)
	if err != nil {
		log.Fatal(err)
	}
	greeting, _ := io.ReadAll(conn)
	conn.Close()
	fmt.Printf("%s\n", greeting)

	// The agent refuses the instance metadata service.
	conn, err = tun.DialContext(ctx, "tcp", "169.254.169.254:80")
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	fmt.Println("forbidden:", errors.Is(err, link.ErrForbidden))

	tun.Close()
	fmt.Println("sessions open at the service:", emu.Stats().SessionsOpen)
	// Output:
	// hello from db.internal
	// forbidden: true
	// sessions open at the service: 0
}
