package aliyuntest_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
)

// An emulated instance in one line; the client talks to it over real
// HTTP and websockets, with signed requests.
func Example() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the "database" on the instance
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the instance"))
			c.Close()
		}
	}()
	srv, _ := aliyuntest.NewServer(aliyuntest.Config{
		Instances: map[string]string{"i-bp1emulated0000001": "127.0.0.1"},
		FlowLimit: aliyuntest.UnpacedRate, // fast test: no pacing
	})
	defer srv.Close()
	conn, err := aliyun.Dial(context.Background(), aliyun.Config{
		Region: srv.Region(), InstanceID: "i-bp1emulated0000001", PortNumber: ln.Addr().(*net.TCPAddr).Port,
		Endpoint: srv.Endpoint(), Credential: srv.Credential(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	b := make([]byte, 23)
	io.ReadFull(conn, b)
	fmt.Println(string(b))
	// Output: hello from the instance
}
