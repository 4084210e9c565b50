package dialer_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// countingWriter counts bytes and calls at once when limit is passed.
type countingWriter struct {
	n     int64
	limit int64
	once  sync.Once
	at    func()
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.limit {
		w.once.Do(w.at)
	}
	return len(p), nil
}

// TestPostgresCopyToCutByTerminateSessionFails guards the worst failure an
// ETL job can meet: a COPY ... TO STDOUT of 300 000 rows whose SSM session
// is terminated mid-way (TerminateSession by someone else) must end in an
// error that names the tunnel's end, never in a short result reported as
// success.
func TestPostgresCopyToCutByTerminateSessionFails(t *testing.T) {
	const rows = 300_000
	tun, srv := stack(t)
	c := ctx(t, 120*time.Second)
	conn, err := dialer.ConnectPgx(c, tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	api := ssmsdk.NewFromConfig(srv.AWSConfig())
	id := tun.Stats().SessionIDs[0]
	w := &countingWriter{limit: 2 << 20, at: func() {
		if _, err := api.TerminateSession(context.Background(), &ssmsdk.TerminateSessionInput{SessionId: aws.String(id)}); err != nil {
			t.Errorf("TerminateSession: %v", err)
		}
	}}
	tag, err := conn.PgConn().CopyTo(c, w,
		"COPY (SELECT g, md5(g::text) FROM generate_series(1, 300000) g) TO STDOUT")
	if err == nil {
		t.Fatalf("COPY TO STDOUT succeeded with %d rows (%d bytes) although the session was terminated mid-way", tag.RowsAffected(), w.n)
	}
	if errors.Is(err, io.EOF) {
		t.Errorf("COPY error %v matches io.EOF", err)
	}
	t.Logf("COPY of %d rows cut after %d bytes: %v", rows, w.n, err)
	<-tun.Done()
	if !errors.Is(tun.Err(), tunnel.ErrTunnelDown) || !errors.Is(tun.Err(), ssm.ErrSessionTerminated) {
		t.Errorf("tunnel Err = %v; want ErrTunnelDown wrapping ssm.ErrSessionTerminated", tun.Err())
	}
}
