package ssmtest_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/xtaci/smux"

	"github.com/jumpless/jumpless/ssm/internal/wire"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// dcConn adapts rawClient's in-order Output stream to an io.ReadWriteCloser
// for an smux client.
type dcConn struct {
	c    *rawClient
	buf  []byte
	done chan struct{}
	once sync.Once
}

func (d *dcConn) Read(p []byte) (int, error) {
	for len(d.buf) == 0 {
		select {
		case b := <-d.c.data:
			d.buf = b
		case <-d.done:
			return 0, io.EOF
		}
	}
	n := copy(p, d.buf)
	d.buf = d.buf[n:]
	return n, nil
}

func (d *dcConn) Write(p []byte) (int, error) {
	d.c.send(p)
	return len(p), nil
}

func (d *dcConn) Close() error { d.once.Do(func() { close(d.done) }); return nil }

func TestPortForwardingDocumentUsesSmuxWithMuxCapableClient(t *testing.T) {
	target := startTCP(t, echo)
	_, port, _ := net.SplitHostPort(target.ln.Addr().String())
	srv := newServer(t, ssmtest.Config{Targets: map[string]string{instance: "127.0.0.1"}})
	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	out, err := api.StartSession(context.Background(), &ssmsdk.StartSessionInput{
		Target:       aws.String(instance),
		DocumentName: aws.String(ssmtest.DocStartPortForwardingSession),
		Parameters:   map[string][]string{"portNumber": {port}, "localPortNumber": {"0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, srv, *out.StreamUrl, *out.TokenValue)
	c.waitHandshake(5 * time.Second)
	waitFor(t, 5*time.Second, "agent handshake flag", func() bool { return srv.Stats().Handshakes >= 1 })
	if c.hsReq == nil {
		t.Fatal("no handshake request recorded")
	}
	dc := &dcConn{c: c, done: make(chan struct{})}
	cfg := smux.DefaultConfig()
	cfg.Version = 1
	cfg.KeepAliveDisabled = true // we advertised 1.2.650.0 > 1.2.331.0
	sess, err := smux.Client(dc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sess.Close()
		dc.Close()
	}()
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := sess.OpenStream()
			if err != nil {
				t.Error(err)
				return
			}
			defer st.Close()
			msg := randBytes(10000 + i)
			if _, err := st.Write(msg); err != nil {
				t.Error(err)
				return
			}
			got := make([]byte, len(msg))
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("stream %d: %v", i, err)
			}
		}()
	}
	wg.Wait()

	// A stream whose target dial fails gets the ConnectToPortError flag.
	target.ln.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := c.waitFrame(10*time.Second, func(m *wire.Message) bool {
		return m.PayloadType == wire.PayloadFlag && bytes.Equal(m.Payload, wire.FlagPayload(wire.ConnectToPortError))
	})
	if f == nil {
		t.Fatal("no ConnectToPortError flag")
	}
}
