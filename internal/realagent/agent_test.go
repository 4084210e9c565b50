package realagent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/jumpless/jumpless/internal/realagent"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

// rig is one emulator in gateway mode with AWS's real agent attached, and a
// real sshd the agent reaches (AWS-StartSSHSession).
type rig struct {
	srv   *ssmtest.Server
	agent *realagent.Agent
	sshd  *testenv.SSHD
	port  int
}

func newRig(t *testing.T) *rig {
	t.Helper()
	realagent.Require(t)
	srv, err := ssmtest.NewServer(ssmtest.Config{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	a := realagent.Start(t, srv)
	sshd := testenv.StartSSHD(t)
	a.Forward(sshd.Addr)
	_, p, _ := net.SplitHostPort(sshd.Addr)
	port, _ := strconv.Atoi(p)
	return &rig{srv: srv, agent: a, sshd: sshd, port: port}
}

// config is tunnel.Open's config for the real agent: default settings, the
// agent dialing sshd's port on its loopback.
func (r *rig) config() tunnel.Config {
	return tunnel.Config{
		SSM: ssm.Config{AWS: r.srv.AWSConfig(), RootCAs: r.srv.CertPool(), Target: realagent.InstanceID, PortNumber: r.port},
		SSH: sshx.Config{
			User:           r.sshd.User,
			PrivateKeyFile: r.sshd.ClientKeyPath,
			HostKey:        r.sshd.HostKey,
		},
	}
}

func (r *rig) open(t *testing.T) *tunnel.Tunnel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, r.config())
	if err != nil {
		t.Fatalf("tunnel.Open through the real agent: %v\nagent log:\n%s", err, tail(r.agent.Logs()))
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

// waitNoSessions waits until the emulator counts no open session and the
// agent reported every started session complete.
func (r *rig) waitNoSessions(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := r.srv.Stats()
		if st.SessionsOpen == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open %v later (%v); started %d, agent completed %d", st.SessionsOpen, within, r.srv.SessionIDs(), st.SessionsStarted, st.AgentTasksCompleted)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAgentCompleted waits until the agent reported want sessions complete
// in total (agent_task_complete): nothing left running in the agent.
func (r *rig) waitAgentCompleted(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.srv.Stats().AgentTasksCompleted < want {
		if time.Now().After(deadline) {
			t.Fatalf("the agent reported %d sessions complete, want %d", r.srv.Stats().AgentTasksCompleted, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// TestRealAgent runs the real-agent tests against one agent (it takes a few
// seconds to start).
func TestRealAgent(t *testing.T) {
	r := newRig(t)
	t.Logf("real amazon-ssm-agent %s attached to the emulator's gateway", r.agent.Version)
	t.Run("Databases", func(t *testing.T) { testDatabases(t, r) })
	t.Run("DownloadUpload4MiB", func(t *testing.T) { testDownloadUpload(t, r) })
	t.Run("OpenClose100", func(t *testing.T) { testOpenClose(t, r, 100) })
	t.Run("TargetRefuses", func(t *testing.T) { testTargetRefuses(t, r) })
	t.Run("WebsocketKillMidDownload", func(t *testing.T) { testKillMidDownload(t, r, false) })
	t.Run("AgentWebsocketKillMidDownload", func(t *testing.T) { testKillMidDownload(t, r, true) })
	t.Run("TerminateMidTransfer", func(t *testing.T) { testTerminateMidTransfer(t, r) })
	t.Run("RealPlugin", func(t *testing.T) { testRealPlugin(t, r) })
	t.Run("DirectMode", func(t *testing.T) { testDirectMode(t, r) })
	t.Run("DirectModeTargetRefuses", func(t *testing.T) { testDirectModeTargetRefuses(t, r) })
	st := r.srv.Stats()
	t.Logf("emulator: sessions started %d, ended %d, agent completed %d, frames client→agent %d (lost %d), agent→client %d (lost %d)",
		st.SessionsStarted, st.SessionsEnded, st.AgentTasksCompleted, st.FramesToAgent, st.FramesLostToAgent, st.FramesToClient, st.FramesLost)
}

// testDatabases: pgx and mysql round trips to the real databases through
// SSH through the real agent.
func testDatabases(t *testing.T, r *rig) {
	pgDSN, myDSN := testenv.PostgresDSN(t), testenv.MySQLDSN(t)
	tun := r.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pc, err := pgx.ParseConfig(pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	pc.DialFunc = tun.DialContext
	pg, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		t.Fatalf("pgx through the real agent: %v", err)
	}
	defer pg.Close(context.Background())
	var sum int64
	if err := pg.QueryRow(ctx, "SELECT sum(g) FROM generate_series(1, 20000) g").Scan(&sum); err != nil || sum != 200010000 {
		t.Fatalf("postgres: sum %d, %v", sum, err)
	}

	mc, err := mysql.ParseDSN(myDSN)
	if err != nil {
		t.Fatal(err)
	}
	netName := "realagent-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	mysql.RegisterDialContext(netName, func(ctx context.Context, addr string) (net.Conn, error) {
		return tun.DialContext(ctx, "tcp", addr)
	})
	mc.Net = netName
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	table := "realagent_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, v VARCHAR(64))"); err != nil {
		t.Fatalf("mysql through the real agent: %v", err)
	}
	defer db.ExecContext(context.Background(), "DROP TABLE "+table)
	for i := 0; i < 50; i++ {
		if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (?, ?)", i, fmt.Sprintf("row-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var n, s int
	if err := db.QueryRowContext(ctx, "SELECT count(*), sum(id) FROM "+table).Scan(&n, &s); err != nil || n != 50 || s != 1225 {
		t.Fatalf("mysql: count %d sum %d, %v", n, s, err)
	}
	db.Close()
	pg.Close(context.Background())
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.waitNoSessions(t, 30*time.Second)
}

// startSource serves payload to every connection (a download source on the
// host, reached through SSH).
func startSource(t *testing.T, payload []byte) string {
	return testenv.TCPServer(t, func(c net.Conn) { _, _ = c.Write(payload) })
}

// startSink hashes what each connection sends and writes back the 32-byte
// sha256 when the client half-closes.
func startSink(t *testing.T) string {
	return testenv.TCPServer(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err == nil {
			_, _ = c.Write(h.Sum(nil))
		}
	})
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func testDownloadUpload(t *testing.T, r *rig) {
	const size = 4 << 20
	payload := randBytes(t, size)
	want := sha256.Sum256(payload)
	src := startSource(t, payload)
	sink := startSink(t)
	tun := r.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	c, err := tun.DialContext(ctx, "tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h := sha256.New()
	n, err := io.Copy(h, c)
	down := time.Since(start)
	c.Close()
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("download through the real agent: %d of %d bytes, %v, sha256 equal %v", n, size, err, bytes.Equal(h.Sum(nil), want[:]))
	}

	c, err = tun.DialContext(ctx, "tcp", sink)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("upload through the real agent: sha256 equal %v, %v", bytes.Equal(got, want[:]), err)
	}
	up := time.Since(start)
	c.Close()
	t.Logf("real agent, 4 MiB: download %.2f MiB/s (%v), upload %.2f MiB/s (%v), sha256 equal both ways",
		float64(size)/(1<<20)/down.Seconds(), down.Round(time.Millisecond), float64(size)/(1<<20)/up.Seconds(), up.Round(time.Millisecond))
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.waitNoSessions(t, 30*time.Second)
}

// testOpenClose opens and closes n tunnels one after another, each with a
// round trip; none may hang and no session may be left open.
func testOpenClose(t *testing.T, r *rig, n int) {
	echo := testenv.EchoServer(t)
	// Every earlier session was reported complete by the agent (it acts on
	// channel_closed after the client's TerminateSession).
	r.waitAgentCompleted(t, r.srv.Stats().SessionsStarted)
	before := r.srv.Stats()
	start := time.Now()
	var slowest time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tun, err := tunnel.Open(ctx, r.config())
		if err != nil {
			cancel()
			t.Fatalf("cycle %d: Open: %v", i, err)
		}
		c, err := tun.DialContext(ctx, "tcp", echo)
		if err != nil {
			cancel()
			tun.Close()
			t.Fatalf("cycle %d: Dial: %v", i, err)
		}
		msg := []byte("cycle " + strconv.Itoa(i))
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		got := make([]byte, len(msg))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("cycle %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("cycle %d: echo %q, %v", i, got, err)
		}
		c.Close()
		done := make(chan error, 1)
		go func() { done <- tun.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cycle %d: Close: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("cycle %d: Close hangs", i)
		}
		cancel()
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
	}
	r.waitNoSessions(t, 30*time.Second)
	r.waitAgentCompleted(t, before.AgentTasksCompleted+int64(n))
	st := r.srv.Stats()
	started := st.SessionsStarted - before.SessionsStarted
	completed := st.AgentTasksCompleted - before.AgentTasksCompleted
	t.Logf("real agent: %d open/close cycles in %v (slowest %v); sessions started %d, reported complete by the agent %d, open now %d",
		n, time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond), started, completed, st.SessionsOpen)
	if started != int64(n) || completed != int64(n) {
		t.Fatalf("%d sessions started and %d reported complete by the agent for %d cycles", started, completed, n)
	}
}

// testTargetRefuses: the agent's dial of the SSH port is refused (nothing
// listens on that port in the agent's namespace). Open must fail with an
// error, not hang, and leave no session open.
//
// What the real agent (3.3.0.0) does here: its Port plugin logs "Unable to
// connect to specified port: ... connection refused", then panics (nil
// pointer in BasicPortSession.Stop, port_basic.go:113) and the session
// worker exits 1 without agent_task_complete. Nothing tells the client: it
// fails only when its SSH handshake times out (sshx HandshakeTimeout, 10 s
// here), and its Close terminates the session at the service.
func testTargetRefuses(t *testing.T, r *rig) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port free on the host, never forwarded
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := r.config()
	cfg.SSM.PortNumber = port
	cfg.SSH.HandshakeTimeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	tun, err := tunnel.Open(ctx, cfg)
	if err == nil {
		tun.Close()
		t.Fatal("Open succeeded although the agent's target refuses the connection")
	}
	took := time.Since(start)
	t.Logf("target refused: Open failed after %v: %v", took.Round(time.Millisecond), err)
	if ctx.Err() != nil || took > 30*time.Second {
		t.Fatalf("Open failed only after %v (test deadline %v): %v", took, ctx.Err(), err)
	}
	if !strings.Contains(r.agent.FileLog(), "connection refused") {
		t.Errorf("the agent's log does not show the refused dial:\n%s", tail(r.agent.FileLog()))
	}
	r.waitNoSessions(t, 30*time.Second)
}

// download reads from c until an error, hashing it.
func download(c net.Conn) (int64, []byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, c)
	return n, h.Sum(nil), err
}

// testKillMidDownload kills the client's websocket (agentSide: the real
// agent's data-channel websocket, which the agent reopens by itself) once
// during a 4 MiB download with default settings: the download completes
// sha256-equal or fails with an error, never a short read that ends in
// io.EOF.
func testKillMidDownload(t *testing.T, r *rig, agentSide bool) {
	const size = 4 << 20
	payload := randBytes(t, size)
	want := sha256.Sum256(payload)
	src := startSource(t, payload)
	tun := r.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		n, sum, err := download(c)
		res <- result{n, sum, err}
	}()
	// Kill once about a quarter of the payload went through.
	base := r.srv.Stats().FramesToClient
	for r.srv.Stats().FramesToClient-base < int64(size/1024/4) && time.Since(start) < 60*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	ids := r.srv.SessionIDs()
	killed := 0
	for _, id := range ids {
		if agentSide {
			killed += r.srv.KillAgentWebsocket(id)
		} else {
			killed += r.srv.KillWebsocket(id)
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d websockets (sessions %v)", killed, ids)
	}
	killedAt := time.Since(start)
	side := "client's"
	if agentSide {
		side = "agent's"
	}
	var got result
	select {
	case got = <-res:
	case <-ctx.Done():
		t.Fatalf("download hangs %v after the kill", time.Since(start)-killedAt)
	}
	total := time.Since(start)
	switch {
	case got.err == nil && got.n == size && bytes.Equal(got.sum, want[:]):
		t.Logf("%s websocket killed at %v: download completed sha256-equal in %v (agent data channels opened so far %d, resumes %d)",
			side, killedAt.Round(time.Millisecond), total.Round(time.Millisecond), r.srv.Stats().AgentDataChannels, r.srv.Stats().Resumes)
	case got.err == nil:
		t.Fatalf("SILENT TRUNCATION: the download ended with io.EOF after %d of %d bytes (%s websocket killed at %v, end at %v); tun.Err() = %v",
			got.n, size, side, killedAt.Round(time.Millisecond), total.Round(time.Millisecond), tun.Err())
	default:
		t.Logf("%s websocket killed at %v: download failed loudly after %d of %d bytes in %v: %v", side, killedAt.Round(time.Millisecond), got.n, size, total.Round(time.Millisecond), got.err)
	}
}

// testTerminateMidTransfer calls TerminateSession from the API while a
// download runs: the reader gets an error, not io.EOF, and the agent ends
// the session.
func testTerminateMidTransfer(t *testing.T, r *rig) {
	const size = 8 << 20
	payload := randBytes(t, size)
	src := startSource(t, payload)
	tun := r.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, _, err = download(c)
		res <- err
	}()
	base := r.srv.Stats().FramesToClient
	for r.srv.Stats().FramesToClient-base < 500 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	ids := r.srv.SessionIDs()
	if len(ids) != 1 {
		t.Fatalf("sessions %v", ids)
	}
	api := ssmsdk.NewFromConfig(r.srv.AWSConfig())
	before := r.srv.Stats()
	t0 := time.Now()
	if _, err := api.TerminateSession(ctx, &ssmsdk.TerminateSessionInput{SessionId: &ids[0]}); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-res:
	case <-ctx.Done():
		t.Fatal("download does not end after TerminateSession")
	}
	took := time.Since(t0)
	switch {
	case n >= size:
		t.Errorf("the whole payload arrived before the terminate took effect")
	case err == nil:
		t.Errorf("SILENT TRUNCATION: after TerminateSession the download ended with io.EOF after %d of %d bytes; tun.Err() = %v", n, size, tun.Err())
	default:
		t.Logf("TerminateSession mid-transfer: reader failed %v later after %d bytes: %v", took.Round(time.Millisecond), n, err)
	}
	r.waitNoSessions(t, 10*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for r.srv.Stats().AgentTasksCompleted == before.AgentTasksCompleted {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not report the terminated session complete (channel_closed on its control channel)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
