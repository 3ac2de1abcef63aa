//go:build bench

package broker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pki"
)

// BenchmarkIdleLockers measures, for 10,000 mTLS lockers (BENCH_LOCKERS):
//   - the time to connect them all, hub and Debian's Mosquitto (same TLS, same
//     certificates, same generator: lockersim bench --idle) in the same run;
//   - the hub's RSS growth per idle connection after runtime.GC and
//     debug.FreeOSMemory (DESIGN decision 7), beside Mosquitto's;
//   - a reconnect storm: lockersim run holds the fleet, the hub restarts, and
//     the time from listening again until 99% and all are back (decision 24).
//
// The hub runs in this process; lockersim and Mosquitto are processes of their own.
//
//	make bench BENCH=IdleLockers
func BenchmarkIdleLockers(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("BENCH_LOCKERS")); err == nil && v > 0 {
		n = v
	}
	h := hubtest.Start(b, func(c *app.Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		// BENCH_ACCEPT_RATE: the hub's --mqtt-accept-rate, for a peer run with another rate.
		if v, err := strconv.ParseFloat(os.Getenv("BENCH_ACCEPT_RATE"), 64); err == nil && v > 0 {
			c.AcceptRate = v
		}
	})
	sim := buildLockersim(b)
	certs := b.TempDir()
	common := enrolLockers(b, h, sim, certs, "SIM-", n, 20)

	base := rssAfterGC()
	hold := 45 * time.Second
	hub := startBench(b, sim, append([]string{"--broker", h.MQTTAddr, "--tls", "--idle", "--connections", strconv.Itoa(n), "--duration", hold.String()}, common...)...)
	start := time.Now()
	waitFor(b, 3*time.Minute, "hub: all connected", func() bool { return h.App.Broker.Connected() == n })
	hubUp := time.Since(start)
	hubPerConn := float64(rssAfterGC()-base) / float64(n) / 1024
	if f := os.Getenv("BENCH_MEMPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		_ = pprof.WriteHeapProfile(out)
		out.Close()
		ms := new(runtime.MemStats)
		runtime.ReadMemStats(ms)
		b.Logf("heap in use %d MiB, stacks %d MiB, goroutines %d", ms.HeapInuse>>20, ms.StackInuse>>20, runtime.NumGoroutine())
	}
	hubRes := hub.wait(b)

	mq := startMosquitto(b, h)
	mqBase := procRSS(mq.Process.Pid)
	peer := startBench(b, sim, append([]string{"--broker", mqAddr(mq), "--tls", "--idle", "--connections", strconv.Itoa(n), "--duration", hold.String()}, common...)...)
	// Mosquitto has no GC: its peak RSS while the connections are held is its cost.
	var mqPeak int64
	for peer.cmd.ProcessState == nil && !peer.exited() {
		mqPeak = max(mqPeak, procRSS(mq.Process.Pid))
		time.Sleep(250 * time.Millisecond)
	}
	peerRes := peer.wait(b)
	if peerRes.Connections < n || peerRes.ConnectSeconds > hold.Seconds()-5 {
		b.Fatalf("mosquitto: %d of %d connected in %.1f s; hold %s is too short to measure", peerRes.Connections, n, peerRes.ConnectSeconds, hold)
	}
	mqPerConn := float64(mqPeak-mqBase) / float64(n) / 1024

	// Reconnect storm with the reference locker (backoff with full jitter, 1 s to 30 s).
	run := exec.Command(sim, "run", "--hub", h.MQTTAddr, "--api", h.DeviceURL, "--admin", h.HTTPURL, "--admin-token", h.AdminToken,
		"--ca", h.CAFile(), "--data", certs, "--prefix", "SIM-", "--lockers", strconv.Itoa(n), "--cells", "20",
		"--telemetry", "1h", "--ramp", "20s", "--status-every", "0", "--control", "")
	run.Stdout, run.Stderr = os.Stderr, os.Stderr
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = run.Process.Signal(syscall.SIGTERM); _ = run.Wait() }()
	waitFor(b, 3*time.Minute, "lockersim run: all connected", func() bool { return h.App.Broker.Connected() == n })
	if f := os.Getenv("BENCH_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	h.Restart()
	listening := time.Now()
	waitFor(b, 2*time.Minute, "99% back", func() bool { return h.App.Broker.Connected() >= n*99/100 })
	p99 := time.Since(listening)
	waitFor(b, 2*time.Minute, "all back", func() bool { return h.App.Broker.Connected() == n })
	all := time.Since(listening)

	figure("hub_connect_all_s", hubUp.Seconds(), "s", n)
	figure("hub_connect_generator_s", hubRes.ConnectSeconds, "s", n)
	figure("mosquitto_connect_generator_s", peerRes.ConnectSeconds, "s", n)
	figure("hub_rss_per_idle_conn", hubPerConn, "KiB", n)
	figure("mosquitto_rss_per_idle_conn", mqPerConn, "KiB", n)
	figure("storm_99pct_back_s", p99.Seconds(), "s", n)
	figure("storm_all_back_s", all.Seconds(), "s", n)
	if hubPerConn > 48 {
		b.Errorf("hub memory per idle connection %.1f KiB > 48 KiB", hubPerConn)
	}
	if p99 > 15*time.Second {
		b.Errorf("reconnect storm: 99%% back after %s > 15 s", p99)
	}
}

// enrolLockers registers and enrols n lockers (prefix + number, cells each)
// with the hub through lockersim, their keys and certificates in certs, not
// measured, and returns the flags every later lockersim bench run against the
// hub needs (certificates, CA, prefix).
func enrolLockers(b *testing.B, h *hubtest.Hub, sim, certs, prefix string, n, cells int) []string {
	common := []string{"--ca", h.CAFile(), "--certs", certs, "--admin", h.HTTPURL, "--admin-token", h.AdminToken,
		"--api", h.DeviceURL, "--prefix", prefix, "--enroll-concurrency", "16", "--cells", strconv.Itoa(cells)}
	// One first (the CA is fetched once), then the rest: short idle runs.
	runBench(b, sim, append([]string{"--broker", h.MQTTAddr, "--tls", "--idle", "--connections", "1", "--duration", "1s"}, common...)...)
	start := time.Now()
	runBench(b, sim, append([]string{"--broker", h.MQTTAddr, "--tls", "--idle", "--connections", strconv.Itoa(n), "--duration", "1s"}, common...)...)
	b.Logf("enrolled %d lockers in %s", n, time.Since(start).Round(time.Second))
	waitFor(b, 30*time.Second, "all disconnected", func() bool { return h.App.Broker.Connected() == 0 })
	return common
}

func figure(name string, v float64, unit string, n int) {
	fmt.Printf("figure %-32s %10.2f %-4s (%d lockers)\n", name, v, unit, n)
}

func buildLockersim(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "lockersim")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lockerhub/lockerhub/cmd/lockersim").CombinedOutput()
	if err != nil {
		b.Fatalf("build lockersim: %v\n%s", err, out)
	}
	return bin
}

type benchResult struct {
	Connections    int     `json:"connections"`
	ConnectSeconds float64 `json:"connect_seconds"`
	Errors         int     `json:"errors"`
	FirstError     string  `json:"first_error"`
	Seconds        float64 `json:"seconds"`
	Sent           int64   `json:"sent"`
	Acked          int64   `json:"acked"`
	AckedPerS      float64 `json:"acked_per_s"`
	AckP50Ms       float64 `json:"ack_p50_ms"`
	AckP99Ms       float64 `json:"ack_p99_ms"`
	SendLogLines   int64   `json:"send_log_lines"`
	SendLogDropped int64   `json:"send_log_dropped"`
}

type benchProc struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

func startBench(b *testing.B, sim string, args ...string) *benchProc {
	p := &benchProc{cmd: exec.Command(sim, append([]string{"bench"}, args...)...), out: &lockedBuffer{}}
	p.cmd.Stdout = p.out
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return p
}

// exited reports whether the generator has finished (it prints its result line last).
func (p *benchProc) exited() bool {
	return strings.Contains(p.out.String(), "connect_seconds")
}

func (p *benchProc) wait(b *testing.B) benchResult {
	if err := p.cmd.Wait(); err != nil {
		b.Fatalf("lockersim bench: %v", err)
	}
	var r benchResult
	line := strings.TrimSpace(p.out.String())
	if err := json.Unmarshal([]byte(line[strings.LastIndex(line, "\n")+1:]), &r); err != nil {
		b.Fatalf("lockersim bench output %q: %v", line, err)
	}
	return r
}

func runBench(b *testing.B, sim string, args ...string) benchResult {
	return startBench(b, sim, args...).wait(b)
}

func startMosquitto(b *testing.B, h *hubtest.Hub) *exec.Cmd {
	path, err := exec.LookPath("mosquitto")
	if err != nil {
		b.Skip("mosquitto is not installed: apt-get install mosquitto")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := b.TempDir()
	conf := fmt.Sprintf(`listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
persistence false
# as root, mosquitto drops to user mosquitto, which cannot read the hub's 0700 data dir

log_dest none
max_keepalive 300
user root
`, port, h.CAFile(), filepath.Join(h.DataDir, pki.ServerCertFile), filepath.Join(h.DataDir, pki.ServerKeyFile))
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(path, "-c", cf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(b, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	mqAddrs[cmd] = addr
	return cmd
}

var mqAddrs = map[*exec.Cmd]string{}

func mqAddr(c *exec.Cmd) string { return mqAddrs[c] }

func rssAfterGC() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return procRSS(os.Getpid())
}

// procRSS returns a process's resident set size in bytes.
func procRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func waitFor(b *testing.B, within time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
