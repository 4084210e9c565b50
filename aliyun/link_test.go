package aliyun_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jumpless/jumpless/aliyun"
	"github.com/jumpless/jumpless/aliyun/aliyuntest"
	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// linkTransport is the Alibaba transport as a link.Transport over the
// emulator (unpaced).
func linkTransport(t *testing.T) (link.Transport, *aliyuntest.Server) {
	t.Helper()
	srv := newServer(t, fast())
	tr, err := aliyun.NewTransport(config(srv, "127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	return tr.Link(), srv
}

// openSeam opens a tunnel and checks at cleanup that Close left no session
// open at the emulator.
func openSeam(t *testing.T, srv *aliyuntest.Server, cfg tunnel.Config) *tunnel.Tunnel {
	t.Helper()
	tun, err := tunnel.Open(tctx(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatalf("tunnel.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("tunnel.Close: %v", err)
		}
		waitNoSessions(t, srv)
	})
	return tun
}

func pgxRoundTrip(t *testing.T, tun *tunnel.Tunnel) {
	t.Helper()
	c := tctx(t, 30*time.Second)
	conn, err := dialer.ConnectPgx(c, tun, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bounded(func(c context.Context) { conn.Close(c) })
	var s string
	if err := conn.QueryRow(c, "SELECT $1::text || ' through the seam'", "aliyun").Scan(&s); err != nil || s != "aliyun through the seam" {
		t.Fatalf("pgx: %q %v", s, err)
	}
}

// TestSeamSSHModePgxRoundTrip: tunnel.Config{Transport: aliyun} in
// ModeSSH starts Sessions Cloud Assistant sessions to the instance's sshd
// (a real one) and carries pgx over SSH channels.
func TestSeamSSHModePgxRoundTrip(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	tr, srv := linkTransport(t)
	_, p, _ := net.SplitHostPort(sshd.Addr)
	port, _ := strconv.Atoi(p)
	tun := openSeam(t, srv, tunnel.Config{
		Mode:      tunnel.ModeSSH,
		Transport: tr,
		Sessions:  2,
		SSM:       ssm.Config{PortNumber: port}, // the instance's sshd port (default 22)
		SSH: sshx.Config{
			User:           sshd.User,
			PrivateKeyFile: sshd.ClientKeyPath,
			KnownHostsFile: sshd.WriteKnownHosts(true, instance),
			HostKeyAlias:   instance,
		},
	})
	pgxRoundTrip(t, tun)
	if st := srv.Stats(); st.SessionsStarted != 2 || st.SessionsOpen != 2 {
		t.Fatalf("emulator stats %+v; want 2 sessions (Sessions) started and open", st)
	}
}

// TestSeamDirectModeOneSessionPerConnPgxAndMySQL: in ModeDirect each
// connection is its own Cloud Assistant session (no port sessions), with
// pgx and MySQL round trips through it.
func TestSeamDirectModeOneSessionPerConnPgxAndMySQL(t *testing.T) {
	tr, srv := linkTransport(t)
	if _, ok := tr.(link.PortTransport); ok {
		t.Fatal("the Alibaba transport claims port sessions it does not have")
	}
	tun := openSeam(t, srv, tunnel.Config{Mode: tunnel.ModeDirect, Transport: tr})
	pgxRoundTrip(t, tun)

	db, err := dialer.OpenMySQL(tun, testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	roundTrip(t, db, func(int) string { return "?" })

	// Three connections held at once are three sessions.
	c := tctx(t, 30*time.Second)
	before := srv.Stats().SessionsStarted
	db.SetMaxIdleConns(0)
	var conns []*sql.Conn
	for range 3 {
		conn, err := db.Conn(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.PingContext(c); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	st, ts := srv.Stats(), tun.Stats()
	if got := st.SessionsStarted - before; got != 3 || ts.OpenConns != 3 || st.SessionsOpen != 3 {
		t.Fatalf("3 held connections: %d new sessions, %d open at the emulator, tunnel %d open conns; want 3 each", got, st.SessionsOpen, ts.OpenConns)
	}
	for _, conn := range conns {
		conn.Close()
	}
}

// TestSeamDirectModeClosedPortIsLinkErrConnect: the agent's "could not
// open the port" matches link.ErrConnect (keeping *aliyun.StatusError),
// and the session is ended.
func TestSeamDirectModeClosedPortIsLinkErrConnect(t *testing.T) {
	tr, srv := linkTransport(t)
	tun := openSeam(t, srv, tunnel.Config{Mode: tunnel.ModeDirect, Transport: tr})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := tun.DialContext(tctx(t, 30*time.Second), "tcp", addr)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	var (
		se *aliyun.StatusError
		ce *link.ConnectError
	)
	if !errors.Is(err, link.ErrConnect) || !errors.As(err, &se) || errors.Is(err, tunnel.ErrTunnelDown) {
		t.Fatalf("connect to a closed port = %v; want link.ErrConnect and *aliyun.StatusError, not ErrTunnelDown", err)
	}
	if !errors.As(err, &ce) || ce.Addr != addr {
		t.Fatalf("connect to a closed port = %v; want a *link.ConnectError naming %s", err, addr)
	}
	waitNoSessions(t, srv)
}

// TestSeamDirectModeDeadSessionReadsTunnelDownNotEOF: a session whose
// websocket dies reads an error matching tunnel.ErrTunnelDown (and
// aliyun.ErrSessionLost), never io.EOF, and a Status from the server
// likewise.
func TestSeamDirectModeDeadSessionReadsTunnelDownNotEOF(t *testing.T) {
	for _, kill := range []struct {
		name string
		do   func(srv *aliyuntest.Server, id string) int
		want error
	}{
		{"websocket lost", func(srv *aliyuntest.Server, id string) int { return srv.KillWebsocket(id) }, aliyun.ErrSessionLost},
		{"status 5", func(srv *aliyuntest.Server, id string) int { return srv.SendStatus(id, 5, "SessionTimeout") }, aliyun.ErrSessionClosed},
	} {
		t.Run(kill.name, func(t *testing.T) {
			tr, srv := linkTransport(t)
			echo := testenv.EchoServer(t)
			tun := openSeam(t, srv, tunnel.Config{Mode: tunnel.ModeDirect, Transport: tr})
			c, err := tun.DialContext(tctx(t, 30*time.Second), "tcp", echo)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			msg := []byte("ping through aliyun")
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
				t.Fatalf("echo = %q, %v", got, err)
			}
			ids := tun.Stats().SessionIDs
			if len(ids) != 1 {
				t.Fatalf("sessions %v; want 1", ids)
			}
			if kill.do(srv, ids[0]) == 0 {
				t.Fatal("the emulator had no connection to kill")
			}
			_, err = c.Read(make([]byte, 1))
			if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, tunnel.ErrTunnelDown) || !errors.Is(err, kill.want) {
				t.Fatalf("Read on a conn whose session died = %v; want ErrTunnelDown and %v, never io.EOF", err, kill.want)
			}
		})
	}
}

// TestStatusErrorMatchesLinkErrConnectOnlyForConnectFailures: the
// agent's spellings of "could not open the target port" match
// link.ErrConnect; other reasons do not.
func TestStatusErrorMatchesLinkErrConnectOnlyForConnectFailures(t *testing.T) {
	for reason, want := range map[string]bool{
		"OpenPortFailed":       true, // emulator
		"Open_port_failed":     true, // agent v2.2.3.578
		"OpenTargetPortFailed": true, // newer agents
		"SessionTimeout":       false,
		"IdleTimeout":          false,
		"FlowExceedLimit":      false,
		"":                     false,
	} {
		err := fmt.Errorf("wrapped: %w", &aliyun.StatusError{Code: 5, Reason: reason})
		if got := errors.Is(err, link.ErrConnect); got != want {
			t.Errorf("reason %q: errors.Is(err, link.ErrConnect) = %v; want %v", reason, got, want)
		}
		if !errors.Is(err, aliyun.ErrSessionClosed) || errors.Is(err, link.ErrForbidden) {
			t.Errorf("reason %q: %v lost ErrSessionClosed or matches ErrForbidden", reason, err)
		}
	}
}
