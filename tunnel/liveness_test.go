package tunnel_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// TestResentDuplicatesDoNotKeepADeadTunnelAlive guards the progress
// rule from the tunnel's side: the path towards the agent dies (every frame
// of the client is lost: acknowledgements, SSH window adjustments and
// keepalives) while the agent's websocket stays open and answers pings.
// The agent then sends what the SSH window still allows and after that
// only resends the head of its unacknowledged messages, forever (reference
// §6.5, §6.8): duplicates with no new sequence number. SSH's keepalive must
// end the tunnel loudly, within its timeout of the last real progress, and
// the download must fail with the reason, never io.EOF.
func TestResentDuplicatesDoNotKeepADeadTunnelAlive(t *testing.T) {
	verifyNoLeaks(t)
	sshd := testenv.StartSSHD(t)
	srv := newEmulator(t, sshd.Addr)
	src := testenv.TCPServer(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	cfg := ssmConfig(srv, sshd)
	cfg.SSM.CloseTimeout = time.Second
	cfg.SSH.KeepaliveInterval = time.Second
	cfg.SSH.KeepaliveTimeout = 3 * time.Second
	tun := open(t, cfg)
	defer tun.Close()
	c := dial(t, tun, src)
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	srv.SetFaults(ssmtest.ToAgent, ssmtest.Faults{Drop: 1})
	cut := time.Now()
	// A hang bound only: the tunnel must end seconds after the SSH window
	// drained; without the rule it never does.
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	n, err := io.Copy(io.Discard, c)
	if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, sshx.ErrKeepaliveTimeout) || !errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("download after the path died: %v after %d more bytes, %v; want ErrTunnelDown wrapping sshx.ErrKeepaliveTimeout",
			err, n, time.Since(cut).Round(time.Millisecond))
	}
	st := srv.Stats()
	t.Logf("tunnel down %v after the path died (%d bytes read after it); agent retransmissions %d, frames dropped %d",
		time.Since(cut).Round(time.Millisecond), n, st.Retransmissions, st.FramesDropped)
	if st.Retransmissions == 0 {
		t.Fatal("the agent retransmitted nothing: the test proves nothing about duplicates")
	}
}
