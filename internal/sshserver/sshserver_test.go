package sshserver

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T) (*Server, ssh.Signer) {
	t.Helper()
	key, _, err := NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, key
}

func clientConfig(s *Server, key ssh.Signer) *ssh.ClientConfig {
	return &ssh.ClientConfig{User: "ec2-user", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(s.HostKey()), Timeout: 10 * time.Second}
}

func TestDirectTCPIPBroken(t *testing.T) {
	s, key := start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo until the client half-closes
		c.Close()
	}()
	cl, err := ssh.Dial("tcp", s.Addr(), clientConfig(s, key))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := cl.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	c.Close()
	// A target that refuses is reported as an open failure, not a hang.
	if _, err := cl.Dial("tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "connect to 127.0.0.1:1 failed") {
		t.Fatalf("dial refused port = %v", err)
	}
}

func TestUnauthorizedKeyAccepted(t *testing.T) {
	s, _ := start(t)
	other, _, err := NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ssh.Dial("tcp", s.Addr(), clientConfig(s, other))
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("Dial with an unauthorized key = %v", err)
	}
}

func TestCloseLeavesSessionsRunning(t *testing.T) {
	s, key := start(t)
	cl, err := ssh.Dial("tcp", s.Addr(), clientConfig(s, key))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s.Close()
	done := make(chan error, 1)
	go func() { done <- cl.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("client connection still up 5s after server Close")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Fatal("server still accepts after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStartWithoutKeysSucceeds(t *testing.T) {
	s, err := Start(Config{})
	if err == nil {
		s.Close()
		t.Fatal("Start without AuthorizedKeys succeeded")
	}
}
