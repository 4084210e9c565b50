package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jumpless/jumpless/dialer"
	"github.com/jumpless/jumpless/internal/testenv"
	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmtest"
	"github.com/jumpless/jumpless/tunnel"
)

const mib = 1 << 20

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// usage is the benchmark process's CPU time and heap allocation count.
type usage struct {
	cpu    time.Duration
	allocs uint64
}

func now() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), allocs: ms.Mallocs}
}

// result of one transfer measurement.
type result struct {
	mibps        float64
	cpuPerGiB    float64 // CPU-s per GiB moved, benchmark process only
	allocsPerMsg float64 // heap allocations per 1 KiB moved
	childPerGiB  float64 // CPU-s per GiB of the child (emulator, source, sink)
	cores        float64 // the client's CPU time / wall time
	childCores   float64 // the child's CPU time / wall time
}

// cpuOf returns the CPU time (user + system) of process pid from
// /proc/pid/stat (clock ticks of 10 ms), or 0 if it cannot be read.
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// transfer moves n bytes (down: source → client; up: client → sink) over
// conns parallel connections from dial and reports the rate.
func transfer(tb testing.TB, dial dialFunc, c *child, down bool, n int64, conns int) result {
	tb.Helper()
	per := n / int64(conns)
	cs := make([]net.Conn, conns)
	for i := range cs {
		addr := c.info.Sink
		if down {
			addr = c.info.Source
		}
		conn, err := dial(context.Background(), "tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close()
		cs[i] = conn
	}
	runtime.GC()
	pid := c.cmd.Process.Pid
	c0 := cpuOf(pid)
	u0, t0 := now(), time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, conn := range cs {
		wg.Go(func() {
			if down {
				var hdr [8]byte
				binary.BigEndian.PutUint64(hdr[:], uint64(per))
				if _, err := conn.Write(hdr[:]); err != nil {
					errs <- err
					return
				}
				got, err := io.CopyBuffer(io.Discard, conn, make([]byte, 64<<10))
				if err == nil && got != per {
					err = fmt.Errorf("downloaded %d of %d bytes", got, per)
				}
				if err != nil {
					errs <- err
				}
				return
			}
			buf := make([]byte, 64<<10)
			for left := per; left > 0; {
				k, err := conn.Write(buf[:min(left, int64(len(buf)))])
				left -= int64(k)
				if err != nil {
					errs <- err
					return
				}
			}
			if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				errs <- err
				return
			}
			var hdr [8]byte
			if _, err := io.ReadFull(conn, hdr[:]); err != nil {
				errs <- err
				return
			}
			if got := int64(binary.BigEndian.Uint64(hdr[:])); got != per {
				errs <- fmt.Errorf("sink got %d of %d bytes", got, per)
			}
		})
	}
	wg.Wait()
	el, u1 := time.Since(t0), now()
	c1 := cpuOf(pid)
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	moved := float64(per * int64(conns))
	return result{
		mibps:        moved / mib / el.Seconds(),
		cpuPerGiB:    (u1.cpu - u0.cpu).Seconds() / (moved / (1 << 30)),
		allocsPerMsg: float64(u1.allocs-u0.allocs) / (moved / 1024),
		childPerGiB:  (c1 - c0).Seconds() / (moved / (1 << 30)),
		cores:        (u1.cpu - u0.cpu).Seconds() / el.Seconds(),
		childCores:   (c1 - c0).Seconds() / el.Seconds(),
	}
}

// pacedFloor measures the client's cost of the least a paced download
// needs per message: a Go client reading 1 KiB TLS records that arrive one
// per ssmtest.RealisticMessagePeriod and writing a 100-byte reply to each
// (as the protocol's acknowledgement), with nothing else: no websocket,
// no Session Manager framing, no SSH, one goroutine.
func pacedFloor(tb testing.TB, c *child, n int64) result {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(c.info.PacedCAPEM))
	conn, err := tls.Dial("tcp", c.info.PacedTLS, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	pid := c.cmd.Process.Pid
	c0 := cpuOf(pid)
	u0, t0 := now(), time.Now()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := conn.Write(hdr[:]); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	ack := make([]byte, 100)
	for got := int64(0); got < n; {
		k, err := conn.Read(buf)
		got += int64(k)
		if err != nil {
			tb.Fatalf("paced TLS source: %d of %d bytes: %v", got, n, err)
		}
		if _, err := conn.Write(ack); err != nil {
			tb.Fatal(err)
		}
	}
	el, u1 := time.Since(t0), now()
	c1 := cpuOf(pid)
	moved := float64(n)
	return result{
		mibps:        moved / mib / el.Seconds(),
		cpuPerGiB:    (u1.cpu - u0.cpu).Seconds() / (moved / (1 << 30)),
		allocsPerMsg: float64(u1.allocs-u0.allocs) / (moved / 1024),
		childPerGiB:  (c1 - c0).Seconds() / (moved / (1 << 30)),
		cores:        (u1.cpu - u0.cpu).Seconds() / el.Seconds(),
		childCores:   (c1 - c0).Seconds() / el.Seconds(),
	}
}

// rig holds what every row shares.
type rig struct {
	sshd      *testenv.SSHD
	unpaced   *child
	realistic *child
	known     string
}

func (r *rig) tunnelConfig(c *child, sessions, maxPayload int) tunnel.Config {
	return tunnel.Config{
		SSM: ssm.Config{AWS: c.awsConfig(), RootCAs: c.pool, Target: target, MaxPayload: maxPayload},
		SSH: sshx.Config{
			User:           r.sshd.User,
			PrivateKeyFile: r.sshd.ClientKeyPath,
			KnownHostsFile: r.known,
		},
		Sessions: sessions,
	}
}

func (r *rig) openTunnel(tb testing.TB, c *child, sessions, maxPayload int) *tunnel.Tunnel {
	tb.Helper()
	tun, err := tunnel.Open(context.Background(), r.tunnelConfig(c, sessions, maxPayload))
	if err != nil {
		tb.Fatal(err)
	}
	return tun
}

func (r *rig) sshDirect(tb testing.TB) *sshx.Client {
	tb.Helper()
	nc, err := net.Dial("tcp", r.sshd.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := sshx.NewClient(context.Background(), nc, r.sshd.Addr, sshx.Config{User: r.sshd.User, Signers: []ssh.Signer{r.sshd.ClientSigner}, HostKey: r.sshd.HostKey})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// median of rounds.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianResult(rs []result) result {
	var a, b, c, d, e, f []float64
	for _, r := range rs {
		a, b, c = append(a, r.mibps), append(b, r.cpuPerGiB), append(c, r.allocsPerMsg)
		d, e, f = append(d, r.childPerGiB), append(e, r.cores), append(f, r.childCores)
	}
	return result{median(a), median(b), median(c), median(d), median(e), median(f)}
}

// BenchmarkReport runs every comparison once (rows alternate within rounds)
// and writes docs/bench/report.md and docs/bench/throughput.svg:
//
//	make bench-report
func BenchmarkReport(b *testing.B) {
	if os.Getenv("JUMPLESS_BENCH_REPORT") == "" {
		b.Skip("takes minutes and rewrites docs/bench: run it with make bench-report (JUMPLESS_BENCH_REPORT=1)")
	}
	outDir := os.Getenv("JUMPLESS_BENCH_OUT") // default: ../../docs/bench
	if outDir == "" {
		outDir = "../../docs/bench"
	}
	rounds := 3
	sshd := testenv.StartSSHD(b)
	r := &rig{sshd: sshd, known: sshd.WriteKnownHosts(true, target)}
	r.unpaced = startChild(b, childSpec{SSHD: sshd.Addr, Pacing: ssmtest.Unpaced})
	r.realistic = startChild(b, childSpec{SSHD: sshd.Addr, Pacing: ssmtest.Realistic})
	var rep report
	rep.load = loadAverage()
	if os.Getenv("JUMPLESS_BENCH_ONLY") == "open" { // for before/after comparisons
		for _, o := range r.openTimes(b, 5) {
			b.Logf("%-75s %5.0f ms, with %d ms delay %5.0f ms: %4.1f round trips", o.name, 1000*o.t0, o.delayMS, 1000*o.t30, o.roundTrips())
		}
		return
	}
	if only := os.Getenv("JUMPLESS_BENCH_ONLY"); only == "profile-down" || only == "profile-up" { // for profiling the client alone
		tun := r.openTunnel(b, r.unpaced, 1, 0)
		defer tun.Close()
		for range rounds {
			res := transfer(b, tun.DialContext, r.unpaced, only == "profile-down", 64*mib, 1)
			b.Logf("%s, 1 session: %+v", only, res)
		}
		return
	}
	if os.Getenv("JUMPLESS_BENCH_ONLY") == "realistic" { // for profiling
		tun := r.openTunnel(b, r.realistic, 1, 0)
		defer tun.Close()
		res := transfer(b, tun.DialContext, r.realistic, true, 4*mib, 1)
		b.Logf("realistic, 1 session: %+v", res)
		floor := pacedFloor(b, r.realistic, 4*mib)
		b.Logf("floor (TLS, 1 KiB per message in, 100 B out): %+v", floor)
		return
	}

	// Unpaced throughput: raw TCP, SSH direct-tcpip, jumpless 1 and 4
	// sessions, alternated within each round.
	sshc := r.sshDirect(b)
	defer sshc.Close()
	tun1 := r.openTunnel(b, r.unpaced, 1, 0)
	defer tun1.Close()
	tun4 := r.openTunnel(b, r.unpaced, 4, 0)
	defer tun4.Close()
	tunUp16 := r.openTunnel(b, r.unpaced, 1, 16384)
	defer tunUp16.Close()
	var nd net.Dialer
	type variant struct {
		name  string
		dial  dialFunc
		down  bool
		conns int
		n     int64
	}
	variants := []variant{
		{"raw TCP, down", nd.DialContext, true, 1, 256 * mib},
		{"SSH direct-tcpip over TCP, down", sshc.DialContext, true, 1, 128 * mib},
		{"jumpless unpaced, 1 session, down", tun1.DialContext, true, 1, 32 * mib},
		{"jumpless unpaced, 4 sessions, down", tun4.DialContext, true, 4, 64 * mib},
		{"raw TCP, up", nd.DialContext, false, 1, 256 * mib},
		{"SSH direct-tcpip over TCP, up", sshc.DialContext, false, 1, 128 * mib},
		{"jumpless unpaced, 1 session, up (MaxPayload 1024)", tun1.DialContext, false, 1, 32 * mib},
		{"jumpless unpaced, 1 session, up (MaxPayload 16384)", tunUp16.DialContext, false, 1, 32 * mib},
	}
	got := make([][]result, len(variants))
	for range rounds {
		for i, v := range variants {
			got[i] = append(got[i], transfer(b, v.dial, r.unpaced, v.down, v.n, v.conns))
		}
	}
	med := make([]result, len(variants))
	for i := range variants {
		med[i] = medianResult(got[i])
	}
	rep.unpaced = make([]throughputRow, len(variants))
	for i, v := range variants {
		base := med[1] // SSH direct down
		if !v.down {
			base = med[5]
		}
		rep.unpaced[i] = throughputRow{name: v.name, res: med[i], vsSSH: med[i].mibps / base.mibps}
	}
	if os.Getenv("JUMPLESS_BENCH_ONLY") == "unpaced" { // for before/after comparisons
		for _, r := range rep.unpaced {
			b.Logf("%-52s %7.1f MiB/s %5.2fx %6.2f CPU-s/GiB %6.3f allocs/KiB; cores: client %.2f, child %.2f (%.2f CPU-s/GiB)", r.name, r.res.mibps, r.vsSSH, r.res.cpuPerGiB, r.res.allocsPerMsg, r.res.cores, r.res.childCores, r.res.childPerGiB)
		}
		return
	}

	// Realistic pacing: k sessions carrying k connections, 1 KiB + 1 ms
	// per message like AWS's agent.
	perConn := int64(3 * mib / 2)
	for _, k := range []int{1, 2, 4, 8, 16} {
		tun := r.openTunnel(b, r.realistic, k, 0)
		res := transfer(b, tun.DialContext, r.realistic, true, perConn*int64(k), k)
		tun.Close()
		rep.realistic = append(rep.realistic, realisticRow{sessions: k, res: res})
	}

	rep.floor = pacedFloor(b, r.realistic, perConn)

	// Databases through one realistic session.
	tunR := r.openTunnel(b, r.realistic, 1, 0)
	capRes := transfer(b, tunR.DialContext, r.realistic, true, 3*mib, 1)
	rep.sessionCap = capRes.mibps
	dsn, table, drop := mysqlTable(b)
	defer drop()
	plain := mysqlScan(b, tunR, dsn, table, dialer.WithoutCompression())
	plain.name = "MySQL result set, uncompressed"
	comp := mysqlScan(b, tunR, dsn, table)
	comp.name = "MySQL result set, compressed (dialer default)"
	cp := pgCopy(b, tunR)
	cp.name = "PostgreSQL COPY TO STDOUT"
	rep.db = []dbRow{plain, comp, cp}
	tunR.Close()

	// Heap and goroutines: an idle tunnel, idle connections.
	h0, g0 := heapNow()
	tunI := r.openTunnel(b, r.unpaced, 1, 0)
	h1, g1 := heapNow()
	rep.idleTunnelKiB, rep.idleTunnelGoroutines = float64(h1-h0)/1024, g1-g0
	rep.connKiB, rep.connGoroutines = idleHeap(b, tunI, 16)
	rep.directKiB, rep.directGoroutines = idleHeap(b, &nd, 16)
	tunI.Close()

	rep.open, rep.openRounds = r.openTimes(b, rounds), rounds
	rep.write(b, outDir)
}

type throughputRow struct {
	name  string
	res   result
	vsSSH float64
}

type realisticRow struct {
	sessions int
	res      result
}

type report struct {
	load       string
	unpaced    []throughputRow
	realistic  []realisticRow
	sessionCap float64 // MiB/s of one realistic session (download)
	floor      result  // pacedFloor
	db         []dbRow

	idleTunnelKiB               float64
	idleTunnelGoroutines        int
	connKiB, connGoroutines     float64
	directKiB, directGoroutines float64
	open                        []openRow
	openRounds                  int
}

// openRow is one way of reaching the first query: Open → first result
// without (t0) and with (t30) delayMS (30 unless JUMPLESS_BENCH_DELAY_MS
// says otherwise) one-way delay in front of the service, medians in seconds.
type openRow struct {
	name    string
	t0, t30 float64
	delayMS int
}

// roundTrips is the number of round trips the delay added.
func (o openRow) roundTrips() float64 { return (o.t30 - o.t0) / (2 * float64(o.delayMS) / 1000) }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return string(b[:len(b)-1])
}

// openTimes returns, per variant (tunnel mode × pgx sslmode), the medians
// of rounds alternated measurements of Open → first query, without and
// with 30 ms one-way delay in front of the service (the data channel and
// the API; sshd and the database sit behind the agent, as in a VPC).
// "pgx defaults" is the DSN without sslmode, i.e. sslmode=prefer: an
// SSLRequest, and, since the test server has ssl=on, a TLS handshake with
// PostgreSQL through the tunnel.
func (r *rig) openTimes(b *testing.B, rounds int) []openRow {
	delayMS := 30
	if v, err := strconv.Atoi(os.Getenv("JUMPLESS_BENCH_DELAY_MS")); err == nil && v > 0 {
		delayMS = v // a longer delay counts round trips more precisely on a loaded host
	}
	delayed := startChild(b, childSpec{SSHD: r.sshd.Addr, Pacing: ssmtest.Unpaced, DelayMS: delayMS})
	disable := testenv.PostgresDSN(b)
	defaults, err := withoutSSLMode(disable)
	if err != nil {
		b.Fatal(err)
	}
	direct := func(c *child) tunnel.Config {
		return tunnel.Config{Mode: tunnel.ModeDirect, SSM: ssm.Config{AWS: c.awsConfig(), RootCAs: c.pool, Target: target}}
	}
	variants := []struct {
		name string
		cfg  func(*child) tunnel.Config
		dsn  string
	}{
		{"ModeSSH (library default), pgx sslmode=disable", func(c *child) tunnel.Config { return r.tunnelConfig(c, 1, 0) }, disable},
		{"ModeSSH (library default), pgx defaults (sslmode=prefer)", func(c *child) tunnel.Config { return r.tunnelConfig(c, 1, 0) }, defaults},
		{"ModeDirect (CLI default without SSH flags), pgx sslmode=disable", direct, disable},
		{"ModeDirect (CLI default without SSH flags), pgx defaults (sslmode=prefer)", direct, defaults},
	}
	d0 := make([][]float64, len(variants))
	d30 := make([][]float64, len(variants))
	for range rounds {
		for i, v := range variants {
			d0[i] = append(d0[i], openToFirstQuery(b, v.cfg(r.unpaced), v.dsn).Seconds())
			d30[i] = append(d30[i], openToFirstQuery(b, v.cfg(delayed), v.dsn).Seconds())
		}
	}
	rows := make([]openRow, len(variants))
	for i, v := range variants {
		rows[i] = openRow{name: v.name, t0: median(d0[i]), t30: median(d30[i]), delayMS: delayMS}
	}
	return rows
}

// withoutSSLMode returns dsn (a URL) without its sslmode parameter.
func withoutSSLMode(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Del("sslmode")
	u.RawQuery = q.Encode()
	return u.String(), nil
}
