package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/jumpless/jumpless/internal/testca"
	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// childEnv names the variable that turns the test binary into the child:
// its value is a childSpec in JSON.
const childEnv = "JUMPLESS_BENCH_CHILD"

const target = "i-0123456789abcdef0"

// childSpec is what the parent asks the child to serve.
type childSpec struct {
	SSHD    string // the emulated target's address
	Pacing  ssmtest.Pacing
	DelayMS int // one-way delay added in front of the emulator
	// PerFrameWrites turns off ssmtest.Config.BatchWrites (on by default
	// here, so that the client, not the emulator, is what the unpaced rows
	// measure); JUMPLESS_BENCH_PER_FRAME=1 sets it for A/B runs.
	PerFrameWrites bool
}

// childInfo is what the child tells the parent (one JSON line on stdout).
type childInfo struct {
	URL, CAPEM, AccessKey, SecretKey, Region string
	Source, Sink                             string
	// PacedTLS: a TLS server (CA in PacedCAPEM) that sends the count the
	// client asks for (8-byte big-endian) in 1 KiB writes, one per
	// ssmtest.RealisticMessagePeriod, and discards what the client sends:
	// the per-message floor of a paced download (one TLS record in, one
	// small reply out) without Session Manager, SSH or websockets.
	PacedTLS, PacedCAPEM string
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild serves the emulator, a source (sends the number of bytes the
// client asks for in an 8-byte big-endian count, then closes) and a sink
// (reads to EOF, replies with the 8-byte count) until stdin closes.
func runChild(specJSON string) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	if path := os.Getenv("JUMPLESS_BENCH_CHILD_CPUPROFILE"); path != "" && spec.DelayMS == 0 {
		// A CPU profile of the child (emulator, source, sink) until the
		// parent closes stdin; one file per pacing.
		f, err := os.Create(fmt.Sprintf("%s.%d", path, spec.Pacing))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg := ssmtest.Config{Targets: map[string]string{target: spec.SSHD}, Pacing: spec.Pacing, TLS: true, BatchWrites: !spec.PerFrameWrites}
	var front net.Listener
	if spec.DelayMS > 0 {
		var err error
		if front, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		cfg.AdvertiseAddr = front.Addr().String()
	}
	srv, err := ssmtest.NewServer(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	if front != nil {
		go serveDelayed(front, srv.ListenAddr(), time.Duration(spec.DelayMS)*time.Millisecond)
	}
	src, err := serve(func(c net.Conn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(hdr[:]))
		buf := make([]byte, 32<<10)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for n > 0 {
			k, err := c.Write(buf[:min(n, int64(len(buf)))])
			n -= int64(k)
			if err != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	sink, err := serve(func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(n))
		_, _ = c.Write(hdr[:])
	})
	if err != nil {
		return err
	}
	paced, pacedCA, err := servePacedTLS()
	if err != nil {
		return err
	}
	ak, sk := srv.Credentials()
	info := childInfo{URL: srv.URL(), CAPEM: string(srv.CACertPEM()), AccessKey: ak, SecretKey: sk, Region: srv.Region(), Source: src, Sink: sink,
		PacedTLS: paced, PacedCAPEM: pacedCA}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return nil
}

// servePacedTLS starts the PacedTLS server (see childInfo).
func servePacedTLS() (addr, caPEM string, err error) {
	ca, err := testca.New("bench", net.IPv4(127, 0, 0, 1))
	if err != nil {
		return "", "", err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Leaf}, MinVersion: tls.VersionTLS12}
	addr, err = serve(func(raw net.Conn) {
		c := tls.Server(raw, cfg)
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		go func() { _, _ = io.Copy(io.Discard, c) }()
		n := int64(binary.BigEndian.Uint64(hdr[:]))
		msg := make([]byte, 1024)
		next := time.Now()
		for n > 0 {
			k, err := c.Write(msg[:min(n, int64(len(msg)))])
			n -= int64(k)
			if err != nil {
				return
			}
			next = next.Add(ssmtest.RealisticMessagePeriod)
			time.Sleep(time.Until(next))
		}
	})
	return addr, string(ca.PEM), err
}

func serve(handle func(net.Conn)) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String(), nil
}

// serveDelayed forwards every connection on ln to addr, delivering each
// chunk d after it was read, in both directions.
func serveDelayed(ln net.Listener, addr string, d time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer up.Close()
			var wg sync.WaitGroup
			wg.Go(func() { delayCopy(up, c, d); up.(*net.TCPConn).CloseWrite() })
			wg.Go(func() { delayCopy(c, up, d); c.(*net.TCPConn).CloseWrite() })
			wg.Wait()
		}()
	}
}

func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		at time.Time
		b  []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now().Add(d), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			for range q {
			}
			return
		}
	}
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	info  childInfo
	pool  *x509.CertPool
}

func startChild(tb testing.TB, spec childSpec) *child {
	tb.Helper()
	if os.Getenv("JUMPLESS_BENCH_PER_FRAME") != "" {
		spec.PerFrameWrites = true
	}
	js, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		tb.Fatalf("bench child: %v", err)
	}
	if err := json.Unmarshal(line, &c.info); err != nil {
		tb.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AppendCertsFromPEM([]byte(c.info.CAPEM))
	return c
}

// awsConfig is the client's aws.Config for the child's emulator.
func (c *child) awsConfig() aws.Config {
	return aws.Config{
		Region:       c.info.Region,
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(c.info.AccessKey, c.info.SecretKey, "")),
		BaseEndpoint: aws.String(c.info.URL),
		HTTPClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12},
		}},
	}
}
