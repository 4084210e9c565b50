package ssm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// startGreeter is a tiny TCP server that speaks first, like sshd.
func startGreeter() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("SSH-2.0-example\r\n"))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Write(buf[:n]) // echo one message back
	}()
	return ln.Addr().String(), func() { ln.Close(); <-done }
}

// Dial a session through the emulator and use it as a net.Conn. Against AWS,
// build Config.AWS with config.LoadDefaultConfig and leave Endpoint empty.
func Example() {
	addr, stop := startGreeter()
	defer stop()
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{"i-0123456789abcdef0": addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := ssm.Dial(ctx, ssm.Config{
		AWS:    srv.AWSConfig(), // region, credentials, endpoint
		Target: "i-0123456789abcdef0",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	banner := make([]byte, 17)
	if _, err := io.ReadFull(s, banner); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", banner)
	s.Write([]byte("ping"))
	echo := make([]byte, 4)
	if _, err := io.ReadFull(s, echo); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", echo)
	// Output:
	// "SSH-2.0-example\r\n"
	// ping
}

// Errors from the SSM API keep the SDK's types; a target whose agent is
// not connected is reported as *types.TargetNotConnected.
func ExampleDial_targetNotConnected() {
	srv, err := ssmtest.NewServer(ssmtest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	_, err = ssm.Dial(context.Background(), ssm.Config{AWS: srv.AWSConfig(), Target: "i-0123456789abcdef0"})
	var apiErr *ssm.APIError
	fmt.Println(errors.As(err, &apiErr), apiErr.Op)
	// Output: true StartSession
}

// A bad target is rejected before any API call, with an error that names
// the field.
func ExampleConfigError() {
	_, err := ssm.Dial(context.Background(), ssm.Config{Target: "web-1"})
	var ce *ssm.ConfigError
	fmt.Println(errors.As(err, &ce), ce.Field, errors.Is(err, ssm.ErrInvalidConfig))
	// Output: true Target true
}
