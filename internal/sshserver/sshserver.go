// Package sshserver is a small in-process SSH server that supports what a
// jumpless tunnel needs: public key authentication and direct-tcpip
// channels (TCP forwarding). The quickstart example and the CLI's emulator
// mode use it so that a machine with only Go can run the whole stack; tests
// of the real thing use OpenSSH (internal/testenv.StartSSHD).
package sshserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures Start.
type Config struct {
	// HostKey is the server's host key. Nil: a new ed25519 key.
	HostKey ssh.Signer

	// AuthorizedKeys are the public keys allowed to log in (as any user
	// name). Required: a server nobody can log in to is a mistake.
	AuthorizedKeys []ssh.PublicKey

	// Dial opens the TCP connection for a direct-tcpip channel. Nil: a
	// net.Dialer with a 10s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Addr is the listen address. Empty: "127.0.0.1:0".
	Addr string

	// Logger receives connection logs. Nil: no logging.
	Logger *slog.Logger
}

// Server is a running SSH server.
type Server struct {
	cfg     Config
	sshCfg  *ssh.ServerConfig
	ln      net.Listener
	log     *slog.Logger
	hostKey ssh.PublicKey

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// NewKey returns a new ed25519 signer and its private key in OpenSSH PEM
// format (unencrypted; with a non-empty passphrase, encrypted).
func NewKey(passphrase []byte) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	var block *pem.Block
	if len(passphrase) > 0 {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "jumpless", passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "jumpless")
	}
	if err != nil {
		return nil, nil, err
	}
	return signer, pem.EncodeToMemory(block), nil
}

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if len(cfg.AuthorizedKeys) == 0 {
		return nil, errors.New("sshserver: no AuthorizedKeys")
	}
	if cfg.HostKey == nil {
		s, _, err := NewKey(nil)
		if err != nil {
			return nil, err
		}
		cfg.HostKey = s
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		cfg.Dial = d.DialContext
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	authorized := make([][]byte, len(cfg.AuthorizedKeys))
	for i, k := range cfg.AuthorizedKeys {
		authorized[i] = k.Marshal()
	}
	sc := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			m := key.Marshal()
			for _, a := range authorized {
				if bytes.Equal(a, m) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, fmt.Errorf("sshserver: key %s not authorized for %q", ssh.FingerprintSHA256(key), meta.User())
		},
	}
	sc.AddHostKey(cfg.HostKey)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, sshCfg: sc, ln: ln, log: log, hostKey: cfg.HostKey.PublicKey(),
		conns: make(map[net.Conn]struct{}), ctx: ctx, cancel: cancel}
	s.wg.Go(s.serve)
	return s, nil
}

// Addr returns the listen address ("127.0.0.1:port").
func (s *Server) Addr() string { return s.ln.Addr().String() }

// HostKey returns the server's host public key.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey }

// Close stops the server, closes every connection and waits for its
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// track registers c; false when the server is closing.
func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

func (s *Server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c, true) {
			c.Close()
			return
		}
		s.wg.Go(func() {
			defer s.track(c, false)
			defer c.Close()
			s.handle(c)
		})
	}
}

func (s *Server) handle(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		s.log.Debug("sshserver: handshake failed", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	nc.SetDeadline(time.Time{})
	s.log.Debug("sshserver: login", "user", conn.User(), "remote", nc.RemoteAddr())
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nch := range chans {
		if nch.ChannelType() != "direct-tcpip" {
			nch.Reject(ssh.UnknownChannelType, "only direct-tcpip is supported")
			continue
		}
		wg.Go(func() { s.forward(nch) })
	}
}

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254 7.2).
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

func (s *Server) forward(nch ssh.NewChannel) {
	var m directTCPIP
	if err := ssh.Unmarshal(nch.ExtraData(), &m); err != nil {
		nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	tc, err := s.cfg.Dial(ctx, "tcp", addr)
	cancel()
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, "connect to "+addr+" failed: "+err.Error())
		return
	}
	if !s.track(tc, true) {
		tc.Close()
		nch.Reject(ssh.ConnectionFailed, "server closing")
		return
	}
	defer s.track(tc, false)
	defer tc.Close()
	ch, chReqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	var wg sync.WaitGroup
	wg.Go(func() { ssh.DiscardRequests(chReqs) })
	wg.Go(func() {
		io.Copy(tc, ch)
		if cw, ok := tc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			tc.Close()
		}
	})
	io.Copy(ch, tc)
	ch.CloseWrite()
	// The client may keep its side open; once the target is done, close.
	ch.Close()
	tc.Close()
	wg.Wait()
}
