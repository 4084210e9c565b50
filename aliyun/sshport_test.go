package aliyun_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/tunnel"
)

// TestSeamSSHModeTakesSSHPortWithoutSSMConfig guards the transport-neutral
// sshd port: an Alibaba user sets tunnel.Config.SSHPort (no ssm.Config at
// all) and the tunnel's sessions go to that port on the instance, a real
// sshd there; with the port ignored they would go to 22 and fail the login
// to this test's sshd.
func TestSeamSSHModeTakesSSHPortWithoutSSMConfig(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	tr, srv := linkTransport(t)
	_, p, _ := net.SplitHostPort(sshd.Addr)
	port, _ := strconv.Atoi(p)
	tun := openSeam(t, srv, tunnel.Config{
		Transport: tr,
		SSHPort:   port,
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
	})
	pgxRoundTrip(t, tun)
	if st := srv.Stats(); st.SessionsStarted != 1 {
		t.Fatalf("emulator stats %+v; want the one SSH session", st)
	}
}
