package aliyun_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/tunnel"
)

// Transport.Link plugs Alibaba Cloud Assistant into package tunnel. In
// ModeDirect each connection is its own session to the address as the
// instance resolves it; in ModeSSH (the default, with an SSH config) the
// tunnel's sessions go to the instance's sshd. Here the instance is the
// emulator's.
func ExampleTransport_Link() {
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

	tr, err := aliyun.NewTransport(aliyun.Config{
		Region:     "cn-hangzhou",
		InstanceID: "i-bp1emulated0000001",
		Endpoint:   srv.Endpoint(),
		Credential: srv.Credential(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	tun, err := tunnel.Open(ctx, tunnel.Config{Mode: tunnel.ModeDirect, Transport: tr.Link()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tun.Close()
	conn, err := tun.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	line := make([]byte, 11)
	io.ReadFull(conn, line)
	fmt.Printf("%q, %d session open\n", line, tun.Stats().OpenConns)
	// Output: "220 ready\r\n", 1 session open
}
