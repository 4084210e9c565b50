package aliyun_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/internal/testenv"
)

// TestSecretsNeverLogged: the session token (in the WebSocketUrl) and the
// access key secret appear in no log line, at debug level, over a whole
// session including a failure.
func TestSecretsNeverLogged(t *testing.T) {
	srv := newServer(t, fast())
	echo := testenv.EchoServer(t)
	var logs bytes.Buffer
	cfg := config(srv, echo)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := aliyun.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := c.Session().WebSocketURL()
	token := url[strings.Index(url, "token=")+len("token="):]
	c.Write([]byte("x"))
	onConn(t, func() int { return srv.SendStatus(c.ID(), 5, "Exit") })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.Read(make([]byte, 8))
	c.Close()
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the test checks nothing")
	}
	for _, secret := range []string{token, srv.AccessKeySecret()} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret appears in the logs:\n%s", logs.String())
		}
	}
}
