package ssmtest_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// Example starts the emulator in one line, in front of a TCP target, and
// opens a session with the real AWS SDK client.
func Example() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the "instance's" sshd, here an echo server
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()

	srv, _ := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{"i-0123456789abcdef0": ln.Addr().String()}})
	defer srv.Close()

	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	out, err := api.StartSession(context.Background(), &ssmsdk.StartSessionInput{
		Target:       aws.String("i-0123456789abcdef0"),
		DocumentName: aws.String("AWS-StartSSHSession"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(*out.StreamUrl == srv.StreamURL(*out.SessionId))
	fmt.Println(srv.Stats().SessionsOpen)
	_, _ = api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: out.SessionId})
	fmt.Println(srv.Stats().SessionsOpen)
	// Output:
	// true
	// 1
	// 0
}
