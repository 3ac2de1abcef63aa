//go:build bench

package lockersim

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSimMemory10k runs 10,000 simulated lockers (20 cells each) against
// Debian's Mosquitto over plain TCP and reports this process's RSS per locker
// after a GC. The requirement: 10,000 lockers in one process within 1 GiB.
// (Over mTLS against the hub, measured with `lockersim run` and GET /memory:
// about 31 KiB per locker after a GC, 48 KiB before.)
//
//	go test -tags bench -run '^$' -bench SimMemory ./lockersim/
func BenchmarkSimMemory10k(b *testing.B) {
	c, err := dialMosquitto()
	if err != nil {
		b.Skipf("no Mosquitto on %s: %v", mosquittoAddr, err)
	}
	c.Close()
	for range b.N {
		cfg := DefaultConfig()
		cfg.Hub = mosquittoAddr
		cfg.Plain = true
		cfg.DataDir = b.TempDir()
		cfg.Lockers = 10000
		cfg.Cells = 20
		cfg.Prefix = "MEMBENCH-"
		cfg.Ramp = 10 * time.Second
		cfg.StatusEvery = 0
		s, err := NewSim(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		if err := s.Start(ctx); err != nil {
			b.Fatal(err)
		}
		for s.Stats().Connected.Load() < int64(cfg.Lockers) {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("only %d of %d connected after 2 min", s.Stats().Connected.Load(), cfg.Lockers)
			}
			time.Sleep(100 * time.Millisecond)
		}
		up := time.Since(start)
		before := memoryReport(false, cfg.Lockers)
		after := memoryReport(true, cfg.Lockers)
		cancel()
		s.Stop()
		b.ReportMetric(after.RSSPerLockerKi, "KiB/locker-after-gc")
		b.ReportMetric(before.RSSPerLockerKi, "KiB/locker")
		b.ReportMetric(after.RSSMiB, "MiB-rss-after-gc")
		b.ReportMetric(up.Seconds(), "s-all-connected")
		if before.RSSMiB > 1024 {
			b.Errorf("RSS %.0f MiB for %d lockers: over the 1 GiB budget", before.RSSMiB, cfg.Lockers)
		}
	}
}
