package aliyun_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
)

// Dial starts a Session Manager session to a port of an instance and
// returns the connection; Close ends the session. Here the instance is
// the emulator's; against Alibaba Cloud, leave Endpoint and Credential
// zero (credentials then come from the environment, a profile or the RAM
// role).
func ExampleDial() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // a server on the instance that speaks first
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("220 ready\r\n"))
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	srv, _ := aliyuntest.NewServer(aliyuntest.Config{
		Instances: map[string]string{"i-bp1emulated0000001": "127.0.0.1"},
		FlowLimit: aliyuntest.UnpacedRate,
	})
	defer srv.Close()

	conn, err := aliyun.Dial(context.Background(), aliyun.Config{
		Region:     "cn-hangzhou",
		InstanceID: "i-bp1emulated0000001",
		PortNumber: ln.Addr().(*net.TCPAddr).Port,
		Endpoint:   srv.Endpoint(),
		Credential: srv.Credential(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	line := make([]byte, 11)
	io.ReadFull(conn, line)
	fmt.Printf("%q from session %s\n", line, conn.ID())
	// Output: "220 ready\r\n" from session s-emu00000000001
}
