//go:build bench

package ota_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/pki"
)

// BenchmarkRollout rolls an artifact out to BENCH_OTA_LOCKERS lockers (1,000)
// of BENCH_OTA_SIZE bytes (5 MiB) in waves (a canary of 1 %, then 33 % each),
// DESIGN decision 25. The hub runs in this process; lockersim (run, real
// enrolment, real mTLS MQTT and HTTPS downloads, hashing and discarding)
// is a process of its own, so this process's CPU time is the hub's. It
// reports the time from start to completed, the hub's CPU seconds and peak
// RSS during the rollout, and the download throughput; then the same
// rollout of another artifact with the downloads served by a bare net/http
// server in this process (the peer).
//
//	make bench BENCH=Rollout
//	BENCH_OTA_LOCKERS=10000 BENCH_OTA_SIZE=1048576 make bench BENCH=Rollout
func BenchmarkRollout(b *testing.B) {
	n, size := envInt("BENCH_OTA_LOCKERS", 1000), envInt("BENCH_OTA_SIZE", 5<<20)
	h := hubtest.Start(b, func(c *app.Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		c.OTA = ota.Config{Tick: 200 * time.Millisecond, MaxDownloads: 64}
	})
	bin := filepath.Join(b.TempDir(), "lockersim")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lockerhub/lockerhub/cmd/lockersim").CombinedOutput(); err != nil {
		b.Fatalf("build lockersim: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "run", "--hub", h.MQTTAddr, "--api", h.DeviceURL, "--admin", h.HTTPURL, "--admin-token", h.AdminToken,
		"--var", b.TempDir(), "--data", b.TempDir(), "--lockers", strconv.Itoa(n), "--cells", "4", "--prefix", "BO-",
		"--control", "", "--telemetry", "1h", "--status-every", "0", "--enroll-concurrency", "16", "--ota-max-downloads", "64", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	waitFor(b, 10*time.Minute, fmt.Sprintf("%d lockers online with their firmware", n), func() bool {
		if h.App.Broker.Connected() < n {
			return false
		}
		for i := 1; i <= n; i++ {
			if tw := h.App.Twins.Get(fmt.Sprintf("BO-%05d", i)); tw == nil || tw.Reported.Firmware == "" {
				return false
			}
		}
		return true
	})
	hub := rollout(b, h, n, size, "9.0.0")
	// The peer, in the same run: the same engine, the same lockersim, the
	// downloads from a bare net/http server (same certificate, client
	// certificates required, http.ServeContent, no authorization lookup, no
	// download limit) in this process.
	peerURL, stop := peerServer(b, h, size)
	defer stop()
	h.App.OTA.SetDeviceURL(peerURL)
	peer := rollout(b, h, n, size, "9.0.1")
	b.Logf("%d lockers × %d KiB, hub downloads: %s", n, size>>10, hub)
	b.Logf("%d lockers × %d KiB, bare net/http downloads (peer): %s", n, size>>10, peer)
	for _, f := range []struct {
		name, unit string
		hub, peer  float64
	}{
		{"ota_rollout_seconds", "s", hub.took, peer.took},
		{"ota_rollout_cpu_cores", "core", hub.cpu / hub.took, peer.cpu / peer.took},
		{"ota_rollout_peak_rss_mib", "MiB", float64(hub.peak >> 20), float64(peer.peak >> 20)},
		{"ota_rollout_throughput_mib_s", "MiB/s", hub.mib / hub.took, peer.mib / peer.took},
	} {
		fmt.Printf("figure %-32s %10.2f %-5s (%d lockers × %d KiB)\n", f.name, f.hub, f.unit, n, size>>10)
		fmt.Printf("figure %-32s %10.2f %-5s (%d lockers × %d KiB)\n", f.name+"_peer", f.peer, f.unit, n, size>>10)
	}
}

type rolloutResult struct {
	took, cpu      float64
	peak           int64
	mib            float64
	waves          string
	installed, bad int
}

func (r rolloutResult) String() string {
	return fmt.Sprintf("completed in %.1f s (%s, each when its lockers were done); installed %d, failed %d; hub process CPU %.1f s (%.2f cores); peak RSS %d MiB; %.0f MiB/s over the rollout",
		r.took, r.waves, r.installed, r.bad, r.cpu, r.cpu/r.took, r.peak>>20, r.mib/r.took)
}

// rollout uploads an artifact of size bytes as version and rolls it out to
// every locker, measuring it.
func rollout(b *testing.B, h *hubtest.Hub, n, size int, version string) rolloutResult {
	b.Helper()
	data := make([]byte, size)
	rand.Read(data)
	ctx := context.Background()
	a, err := h.Admin.UploadArtifact(ctx, version, nil, "bench", bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	peerData.Store(&data)
	ticks0, tickSum0, _ := tickStats(b, h, 0)
	cpu0, start := cpuSeconds(), time.Now()
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Policy: apiclient.RolloutPolicy{Canary: max(n/100, 1), Percent: 33, Order: "id"}})
	if err != nil {
		b.Fatal(err)
	}
	var peak int64
	var s apiclient.RolloutStatus
	waves := map[int]time.Duration{}
	waitFor(b, 60*time.Minute, "rollout completed", func() bool {
		peak = max(peak, procRSS(os.Getpid()))
		s, err = h.Admin.RolloutStatus(ctx, r.ID)
		if err != nil {
			b.Fatal(err)
		}
		for _, w := range s.Waves {
			if _, ok := waves[w.N]; !ok && w.Counts["installed"]+w.Counts["failed"] == w.Size {
				waves[w.N] = time.Since(start)
			}
		}
		if s.State == "paused" || s.State == "aborted" {
			b.Fatalf("rollout %s: %s (%v)", s.State, s.Reason, s.Failures)
		}
		time.Sleep(200 * time.Millisecond)
		return s.State == "completed"
	})
	took, cpu := time.Since(start), cpuSeconds()-cpu0
	ticks, tickSum, p99 := tickStats(b, h, ticks0)
	b.Logf("%s: %d engine ticks, mean %.1f ms, p99 ≤ %.0f ms", version, ticks-ticks0, 1000*(tickSum-tickSum0)/float64(max(ticks-ticks0, 1)), 1000*p99)
	if len(s.Failures) > 0 {
		b.Logf("%s failures: %v", version, s.Failures)
	}
	var ws []string
	for i := 1; i <= len(s.Waves); i++ {
		ws = append(ws, fmt.Sprintf("wave %d (%d) %.1fs", i, s.Waves[i-1].Size, waves[i].Seconds()))
	}
	return rolloutResult{took: took.Seconds(), cpu: cpu, peak: peak, mib: float64(n) * float64(size) / (1 << 20), waves: strings.Join(ws, ", "),
		installed: s.Counts["installed"], bad: s.Counts["failed"]}
}

// tickStats reads lockerhub_ota_engine_tick_seconds: the count, the sum and
// the upper bound of the bucket that holds the 99th percentile of the ticks
// after the first `since` (bucket counts are cumulative over the run, so
// the bound is over the whole run).
func tickStats(b *testing.B, h *hubtest.Hub, since uint64) (uint64, float64, float64) {
	mfs, err := h.App.Metrics.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lockerhub_ota_engine_tick_seconds" || len(mf.GetMetric()) == 0 {
			continue
		}
		hg := mf.GetMetric()[0].GetHistogram()
		n := hg.GetSampleCount()
		p99 := math.Inf(1)
		for _, bk := range hg.GetBucket() {
			if float64(bk.GetCumulativeCount()) >= 0.99*float64(n) {
				p99 = bk.GetUpperBound()
				break
			}
		}
		return n, hg.GetSampleSum(), p99
	}
	return 0, 0, 0
}

var peerData atomic.Pointer[[]byte]

// peerServer serves the last uploaded artifact's bytes at any artifact's
// download path and the signing key, over TLS with the hub's server
// certificate, requiring a client certificate of the hub's CA.
func peerServer(b *testing.B, h *hubtest.Hub, size int) (string, func()) {
	b.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(h.DataDir, pki.ServerCertFile), filepath.Join(h.DataDir, pki.ServerKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/ota/artifacts/{id}/download", func(w http.ResponseWriter, r *http.Request) {
		data := *peerData.Load()
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	})
	mux.HandleFunc("GET /api/v1/ota/key", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(h.App.OTA.PublicKey()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_ = srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: h.CAPool(),
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}))
	}()
	return "https://" + ln.Addr().String(), func() { _ = srv.Close() }
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

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
