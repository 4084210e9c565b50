package aliyun_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// TestSeamSSHModeReplaceSessionAfterSessionTimeout: with
// tunnel.Config.Replace over the Alibaba transport, a Cloud Assistant
// session that the server ends (Status 5 SessionTimeout) fails only the
// query it carried, loudly (tunnel.ErrSessionLost wrapping
// aliyun.ErrSessionClosed, never io.EOF); the next connection goes
// through a replacement session and the tunnel stays up.
func TestSeamSSHModeReplaceSessionAfterSessionTimeout(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	tr, srv := linkTransport(t)
	_, p, _ := net.SplitHostPort(sshd.Addr)
	port, _ := strconv.Atoi(p)
	tun := openSeam(t, srv, tunnel.Config{
		Mode:      tunnel.ModeSSH,
		Transport: tr,
		SSM:       ssm.Config{PortNumber: port},
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
		Replace: tunnel.ReplaceConfig{Enabled: true, Backoff: 100 * time.Millisecond},
	})
	ctx := tctx(t, 60*time.Second)
	conn, err := dialer.ConnectPgx(ctx, tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep($1)", 30)
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond) // the query has left the client
	lost := tun.Stats().SessionIDs[0]
	if srv.SendStatus(lost, 5, "SessionTimeout") == 0 {
		t.Fatal("the emulator had no connection for the session")
	}
	select {
	case err = <-slow:
	case <-time.After(20 * time.Second):
		t.Fatal("the query on the ended session did not fail within 20s")
	}
	if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, tunnel.ErrSessionLost) || !errors.Is(err, aliyun.ErrSessionClosed) {
		t.Fatalf("query on the ended session: %v; want tunnel.ErrSessionLost wrapping aliyun.ErrSessionClosed, never EOF", err)
	}
	bounded(func(c context.Context) { conn.Close(c) })
	pgxRoundTrip(t, tun) // waits for the replacement if it is not ready yet
	st := tun.Stats()
	if tun.Err() != nil || st.Replacements != 1 || len(st.SessionIDs) != 1 || st.SessionIDs[0] == lost {
		t.Fatalf("after the ending: Err %v, Stats %+v; want the tunnel up with 1 replacement", tun.Err(), st)
	}
}
