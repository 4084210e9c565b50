package sshx

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
)

// sshWritePacket is x/crypto/ssh's own packet writer (the one its
// connection layer uses for every message). x/crypto/ssh's server has no
// API to send SSH_MSG_DISCONNECT after authentication, and OpenSSH sends
// one only on protocol errors x/crypto/ssh cannot be made to commit, so
// the test server reaches it directly (test code only).
//
//go:linkname sshWritePacket golang.org/x/crypto/ssh.(*handshakeTransport).writePacket
func sshWritePacket(t unsafe.Pointer, p []byte) error

// sendDisconnect sends SSH_MSG_DISCONNECT (RFC 4253 §11.1) on sc, encrypted
// and sequenced like any other packet of the connection.
func sendDisconnect(sc *ssh.ServerConn, reason uint32, msg string) error {
	tr := reflect.ValueOf(sc.Conn).Elem().FieldByName("transport")
	if !tr.IsValid() || tr.Kind() != reflect.Interface || tr.Elem().Type().String() != "*ssh.handshakeTransport" {
		return errors.New("test: x/crypto/ssh's connection layout changed; update sendDisconnect")
	}
	p := ssh.Marshal(struct {
		Reason   uint32 `sshtype:"1"`
		Message  string
		Language string
	}{reason, msg, ""})
	return sshWritePacket(unsafe.Pointer(tr.Elem().Pointer()), p)
}

// disconnectServer is an in-process x/crypto/ssh server whose
// direct-tcpip channels either stream endless data (host "download") or
// echo, and which ends a connection with SSH_MSG_DISCONNECT on demand.
type disconnectServer struct {
	addr    string
	hostKey ssh.PublicKey
	signer  ssh.Signer // the client's key
	conns   chan *ssh.ServerConn
	wg      sync.WaitGroup
}

func startDisconnectServer(t *testing.T) *disconnectServer {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	clientSigner, err := ssh.NewSignerFromKey(ck)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(clientSigner.PublicKey().Marshal()) {
			return nil, errors.New("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &disconnectServer{addr: ln.Addr().String(), hostKey: hostSigner.PublicKey(), signer: clientSigner, conns: make(chan *ssh.ServerConn, 1)}
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer nc.Close()
				sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				s.conns <- sc
				s.wg.Add(1)
				go func() { defer s.wg.Done(); ssh.DiscardRequests(reqs) }()
				for nch := range chans {
					var m directTCPIPMsg
					if nch.ChannelType() != "direct-tcpip" || ssh.Unmarshal(nch.ExtraData(), &m) != nil {
						nch.Reject(ssh.UnknownChannelType, "no")
						continue
					}
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					s.wg.Add(1)
					go func() {
						defer s.wg.Done()
						defer ch.Close()
						s.wg.Add(1)
						go func() { defer s.wg.Done(); ssh.DiscardRequests(creqs) }()
						if m.Host == "download" {
							buf := make([]byte, 16<<10)
							for {
								if _, err := ch.Write(buf); err != nil {
									return
								}
							}
						}
						io.Copy(ch, ch)
					}()
				}
				sc.Wait()
			}()
		}
	}()
	return s
}

// TestServerDisconnectIsNeverEOF guards the race between x/crypto/ssh
// closing every channel on the server's SSH_MSG_DISCONNECT (the channels
// then read io.EOF) and the client recording why the connection ended
// (Wait returns the disconnect a moment later): a conn mid-download and an
// idle conn must fail with an error matching ErrConnectionLost, never
// io.EOF, which would make a cut-off stream look complete. The race is not
// lost every time, so the test repeats it.
func TestServerDisconnectIsNeverEOF(t *testing.T) {
	verifyNoLeaks(t)
	s := startDisconnectServer(t)
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	for i := range rounds {
		disconnectRound(t, i, s)
		if t.Failed() {
			return
		}
	}
}

func disconnectRound(t *testing.T, round int, s *disconnectServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := NewClient(ctx, dial(t, s.addr), s.addr, Config{
		User: "test", Signers: []ssh.Signer{s.signer}, HostKey: s.hostKey, KeepaliveInterval: -1,
	})
	if err != nil {
		t.Fatalf("round %d: NewClient: %v", round, err)
	}
	defer c.Close()
	sc := <-s.conns
	dl, err := c.DialContext(ctx, "tcp", "download:1")
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	defer dl.Close()
	idle, err := c.DialContext(ctx, "tcp", "echo:1")
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	defer idle.Close()
	roundTrip(t, idle, "x")
	dl.SetReadDeadline(time.Now().Add(30 * time.Second))
	idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	dlRes := make(chan error, 1)
	go func() { _, err := readUntilError(dl); dlRes <- err }()
	idleRes := make(chan error, 1)
	go func() { _, err := idle.Read(make([]byte, 1)); idleRes <- err }()
	if _, err := io.ReadFull(dl, make([]byte, 1)); err != nil { // the download flows
		t.Fatalf("round %d: %v", round, err)
	}
	if err := sendDisconnect(sc, 11, "test: server going down"); err != nil {
		t.Fatal(err)
	}
	// sshd exits right after its disconnect message; then a client write
	// can draw a reset that discards the unread message, and only the
	// socket's failure is known. Odd rounds keep the socket open until
	// the client closes it, so the message is read.
	closeAtOnce := round%2 == 0
	if closeAtOnce {
		sc.Close()
	}
	for what, err := range map[string]error{"download Read": <-dlRes, "idle Read": <-idleRes} {
		if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, ErrConnectionLost) {
			t.Errorf("round %d: %s: %v; want ErrConnectionLost, never io.EOF", round, what, err)
		}
	}
	<-c.Done()
	if err := c.Err(); !errors.Is(err, ErrConnectionLost) || (!closeAtOnce && !strings.Contains(err.Error(), "server going down")) {
		t.Errorf("round %d: Err = %v; want ErrConnectionLost naming the server's reason", round, err)
	}
}
