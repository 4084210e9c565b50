package ssmtest

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/xtaci/smux"

	"github.com/jumpless/jumpless/ssm/internal/wire"
)

// Mux mode (reference §8.1, §8.4): for LocalPortForwarding documents the
// real agent (> 3.0.196.0) runs an smux v1 *server* over the data channel
// when the client's version is ≥ 1.1.70; each accepted stream dials the
// target. Like the agent, the emulator bridges smux through a local socket
// pair ([A] port_mux.go:163-218): the data-channel side of the pair is what
// the write pump reads (≤ 1024 B per message, paced) and what client Output
// is written to.

var (
	versionAgentMux      = mustVersion("3.0.196.0")  // agents above it have mux
	versionClientMux     = mustVersion("1.1.70")     // clients at or above it get mux
	versionClientNoKA    = mustVersion("1.2.331.0")  // clients above it get smux keep-alive off ...
	versionAgentKASwitch = mustVersion("3.1.1511.0") // ... from agents above this one
)

// muxMode reports whether the agent runs smux for this session and with
// which keep-alive setting, from the client's HandshakeResponse version.
func (a *agent) muxMode(clientVersion string) (mux, keepAlive bool) {
	if a.ss.props["type"] != "LocalPortForwarding" || compareVersion(a.version, versionAgentMux) <= 0 {
		return false, false
	}
	cv, err := parseVersion(clientVersion)
	if err != nil || compareVersion(cv, versionClientMux) < 0 {
		return false, false
	}
	keepAlive = !(compareVersion(cv, versionClientNoKA) > 0 && compareVersion(a.version, versionAgentKASwitch) > 0)
	return true, keepAlive
}

// startMux creates the socket pair and the smux server; it returns the
// data-channel side of the pair.
func (a *agent) startMux(keepAlive bool) (net.Conn, error) {
	dcEnd, muxEnd, err := loopbackPair()
	if err != nil {
		return nil, fmt.Errorf("mux socket pair: %w", err)
	}
	cfg := smux.DefaultConfig()
	cfg.Version = 1
	cfg.KeepAliveDisabled = !keepAlive
	sess, err := smux.Server(muxEnd, cfg)
	if err != nil {
		dcEnd.Close()
		muxEnd.Close()
		return nil, err
	}
	a.tmu.Lock()
	if a.targetGone {
		a.tmu.Unlock()
		sess.Close()
		dcEnd.Close()
		return nil, fmt.Errorf("session ended")
	}
	a.mux = sess
	a.tmu.Unlock()
	if !a.srv.goTracked(func() { a.acceptStreams(sess) }) {
		sess.Close()
		dcEnd.Close()
		return nil, fmt.Errorf("server closed")
	}
	return dcEnd, nil
}

func (a *agent) acceptStreams(sess *smux.Session) {
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		if !a.srv.goTracked(func() { a.serveStream(st) }) {
			st.Close()
			return
		}
	}
}

// serveStream dials the target for one smux stream; on failure it sends the
// ConnectToPortError flag and closes the stream ([A] port_mux.go:257-298).
// When either copy direction ends both connections are closed (no
// half-close, [A] port_mux.go:301-318).
func (a *agent) serveStream(st *smux.Stream) {
	defer st.Close()
	c, err := a.dial()
	if err != nil {
		a.srv.log.Info("ssmtest: mux stream dial failed", "session", a.ss.id, "error", err)
		a.sendStream(wire.PayloadFlag, wire.FlagPayload(wire.ConnectToPortError), wire.FlagsNone)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(a.ss.ctx, func() { c.Close(); st.Close() })
	defer stop()
	done := make(chan struct{})
	if !a.srv.goTracked(func() {
		defer close(done)
		_, _ = io.Copy(c, st)
		c.Close()
		st.Close()
	}) {
		return
	}
	_, _ = io.Copy(st, c)
	c.Close()
	st.Close()
	<-done
}

// loopbackPair returns a connected unix socket pair, as the agent uses on
// Linux ([A] port_mux.go:163-218): its kernel buffers (not TCP loopback's
// autotuned megabytes) bound how much of one stream's output can queue
// ahead of another's in front of the paced write pump. Where socketpair is
// unavailable it falls back to TCP on 127.0.0.1 (as the agent does on
// Windows).
func loopbackPair() (net.Conn, net.Conn, error) {
	if a, b, err := unixPair(); err == nil {
		return a, b, nil
	}
	return tcpPair()
}

func tcpPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	r := <-ch
	if err != nil {
		if r.c != nil {
			r.c.Close()
		}
		return nil, nil, err
	}
	if r.err != nil {
		d.Close()
		return nil, nil, r.err
	}
	return d, r.c, nil
}
