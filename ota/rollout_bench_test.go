//go:build bench

package ota_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/ota"
)

// BenchmarkRollout rolls an artifact out to BENCH_OTA_LOCKERS lockers (1,000)
// of BENCH_OTA_SIZE bytes (5 MiB) in waves (a canary of 1 %, then 33 % each),
// DESIGN decision 25. The hub runs in this process; lockersim (run, real
// enrolment, real mTLS MQTT and HTTPS downloads, hashing and discarding)
// is a process of its own, so this process's CPU time is the hub's. It
// reports the time from start to completed, the hub's CPU seconds and peak
// RSS during the rollout, and the download throughput.
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
	data := make([]byte, size)
	rand.Read(data)
	ctx := context.Background()
	a, err := h.Admin.UploadArtifact(ctx, "9.0.0", nil, "bench", bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
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
	bytesSent := h.Metric("lockerhub_ota_download_bytes_total")
	var ws []string
	for i := 1; i <= len(s.Waves); i++ {
		ws = append(ws, fmt.Sprintf("wave %d (%d) %.1fs", i, s.Waves[i-1].Size, waves[i].Seconds()))
	}
	if len(s.Failures) > 0 {
		b.Logf("failures: %v", s.Failures)
	}
	b.Logf("%d lockers × %d KiB: completed in %.1f s (%s, each when its lockers were done); installed %d, failed %d; hub CPU %.1f s (%.2f cores); hub peak RSS %d MiB; %.0f MiB sent, %.0f MiB/s over the rollout",
		n, size>>10, took.Seconds(), strings.Join(ws, ", "), s.Counts["installed"], s.Counts["failed"], cpu, cpu/took.Seconds(), peak>>20,
		bytesSent/(1<<20), bytesSent/(1<<20)/took.Seconds())
	b.ReportMetric(took.Seconds(), "s/rollout")
	b.ReportMetric(cpu, "hub-cpu-s")
	b.ReportMetric(float64(peak>>20), "hub-peak-MiB")
	b.ReportMetric(bytesSent/(1<<20)/took.Seconds(), "MiB/s")
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
