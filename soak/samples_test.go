//go:build soak

package soak_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// sample is one look at the hub, every 15 s.
type sample struct {
	at                   time.Duration // since the load started
	rssMiB, heapMiB      float64
	goroutines           float64
	connected            float64
	errors               float64 // error counters plus ERROR log lines, cumulative
	samplesStored        float64 // telemetry samples stored, cumulative
	streamMessages       float64
	cmdMs, parcelMs      []float64 // driver latencies seen in this window
	cmdP50, cmdP99       float64
	parcelP50, parcelP99 float64
}

func sampleUntil(ctx context.Context, h *hubProc, d *driver, period time.Duration) []sample {
	start := time.Now()
	var out []sample
	every(ctx, period, func() {
		m, err := h.metrics()
		if err != nil {
			d.t.Logf("metrics: %v", err)
			return
		}
		s := sample{at: time.Since(start),
			rssMiB:         m["process_resident_memory_bytes"] / (1 << 20),
			heapMiB:        m["go_memstats_heap_inuse_bytes"] / (1 << 20),
			goroutines:     m["go_goroutines"],
			connected:      m["lockerhub_broker_connected_lockers"],
			samplesStored:  sumPrefix(m, "lockerhub_telemetry_samples_stored_total"),
			streamMessages: float64(d.streamMessages.Load()),
		}
		for _, name := range errorCounters {
			s.errors += sumPrefix(m, name)
		}
		s.errors += float64(h.errorLines.Load())
		s.cmdMs, s.parcelMs = d.takeLatencies()
		s.cmdP50, s.cmdP99 = percentile(s.cmdMs, 0.50), percentile(s.cmdMs, 0.99)
		s.parcelP50, s.parcelP99 = percentile(s.parcelMs, 0.50), percentile(s.parcelMs, 0.99)
		out = append(out, s)
	})
	return out
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func mean(s []sample, f func(sample) float64) float64 {
	if len(s) == 0 {
		return 0
	}
	var sum float64
	for _, x := range s {
		sum += f(x)
	}
	return sum / float64(len(s))
}

type summary struct {
	samples                       int
	warmup                        time.Duration
	rssEarly, rssLate             float64
	heapEarly, heapLate           float64
	rssGrowth, heapGrowth         float64
	goroutineMin, goroutineMax    float64
	goroutineSpread               float64
	minConnected                  float64
	earlyErrors, lateErrors       float64
	earlyP50, earlyP99            float64
	lateP50, lateP99              float64
	parcelEarlyP99, parcelLateP99 float64
	storedPerSecond               float64
}

// summarize compares the first and last third of what follows the warm-up
// (the first sixth of the run).
func summarize(s []sample) summary {
	var r summary
	r.samples = len(s)
	if len(s) < 6 {
		return r
	}
	after := s[len(s)/6:]
	third := len(after) / 3
	early, late := after[:third], after[len(after)-third:]
	r.warmup = s[len(s)/6].at
	r.rssEarly, r.rssLate = mean(early, func(x sample) float64 { return x.rssMiB }), mean(late, func(x sample) float64 { return x.rssMiB })
	// The heap in use saws up and down with each GC cycle: its floor (the
	// lowest sample of a third) is what a leak would lift.
	floor := func(w []sample) float64 {
		m := w[0].heapMiB
		for _, x := range w {
			m = min(m, x.heapMiB)
		}
		return m
	}
	r.heapEarly, r.heapLate = floor(early), floor(late)
	r.rssGrowth, r.heapGrowth = r.rssLate/r.rssEarly-1, r.heapLate/r.heapEarly-1
	r.goroutineMin, r.goroutineMax, r.minConnected = after[0].goroutines, after[0].goroutines, after[0].connected
	for _, x := range after {
		r.goroutineMin, r.goroutineMax = min(r.goroutineMin, x.goroutines), max(r.goroutineMax, x.goroutines)
		r.minConnected = min(r.minConnected, x.connected)
	}
	r.goroutineSpread = (r.goroutineMax - r.goroutineMin) / mean(after, func(x sample) float64 { return x.goroutines })
	r.earlyErrors = early[len(early)-1].errors - early[0].errors
	r.lateErrors = late[len(late)-1].errors - late[0].errors
	pool := func(w []sample, f func(sample) []float64) []float64 {
		var all []float64
		for _, x := range w {
			all = append(all, f(x)...)
		}
		return all
	}
	cmd := func(x sample) []float64 { return x.cmdMs }
	pcl := func(x sample) []float64 { return x.parcelMs }
	r.earlyP50, r.earlyP99 = percentile(pool(early, cmd), 0.5), percentile(pool(early, cmd), 0.99)
	r.lateP50, r.lateP99 = percentile(pool(late, cmd), 0.5), percentile(pool(late, cmd), 0.99)
	r.parcelEarlyP99, r.parcelLateP99 = percentile(pool(early, pcl), 0.99), percentile(pool(late, pcl), 0.99)
	last, first := s[len(s)-1], after[0]
	r.storedPerSecond = (last.samplesStored - first.samplesStored) / (last.at - first.at).Seconds()
	return r
}

func (r summary) String() string {
	return fmt.Sprintf("%d samples, warm-up %s; hub RSS %.0f → %.0f MiB (%+.1f%%), heap in use (floor) %.0f → %.0f MiB (%+.1f%%); goroutines %.0f–%.0f (spread %.1f%%); "+
		"lockers connected ≥ %.0f; errors %.0f in the first third, %.0f in the last; command round trip p50/p99 %.1f/%.1f ms → %.1f/%.1f ms; "+
		"parcel cycle p99 %.0f → %.0f ms; telemetry stored %.0f samples/s",
		r.samples, r.warmup.Round(time.Second), r.rssEarly, r.rssLate, 100*r.rssGrowth, r.heapEarly, r.heapLate, 100*r.heapGrowth,
		r.goroutineMin, r.goroutineMax, 100*r.goroutineSpread, r.minConnected, r.earlyErrors, r.lateErrors,
		r.earlyP50, r.earlyP99, r.lateP50, r.lateP99, r.parcelEarlyP99, r.parcelLateP99, r.storedPerSecond)
}

func writeCSV(path string, s []sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"seconds", "rss_mib", "heap_inuse_mib", "goroutines", "connected", "errors_total", "telemetry_stored_total",
		"stream_messages_total", "commands", "command_p50_ms", "command_p99_ms", "parcels", "parcel_p50_ms", "parcel_p99_ms"})
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, x := range s {
		_ = w.Write([]string{ff(x.at.Seconds()), ff(x.rssMiB), ff(x.heapMiB), ff(x.goroutines), ff(x.connected), ff(x.errors), ff(x.samplesStored),
			ff(x.streamMessages), strconv.Itoa(len(x.cmdMs)), ff(x.cmdP50), ff(x.cmdP99), strconv.Itoa(len(x.parcelMs)), ff(x.parcelP50), ff(x.parcelP99)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// series is one line of a plot.
type series struct {
	name string
	y    func(sample) float64
}

func plotAll(dir string, s []sample, lockers int, d time.Duration) error {
	title := fmt.Sprintf("lockerhub soak: %d lockers, %s", lockers, d)
	// Latency per minute, pooled, reads better than per 15 s window.
	perMinute := rebucket(s, time.Minute)
	for _, p := range []struct {
		file, title, y string
		data           []sample
		lines          []series
	}{
		{"memory.png", "hub memory", "MiB", s, []series{{"RSS", func(x sample) float64 { return x.rssMiB }}, {"Go heap in use", func(x sample) float64 { return x.heapMiB }}}},
		{"goroutines.png", "hub goroutines", "goroutines", s, []series{{"goroutines", func(x sample) float64 { return x.goroutines }}}},
		{"latency.png", "command round trip (API → locker → door sensor → API), per minute", "ms", perMinute, []series{
			{"p50", func(x sample) float64 { return x.cmdP50 }}, {"p99", func(x sample) float64 { return x.cmdP99 }}}},
		{"errors.png", "errors (error counters + ERROR log lines), cumulative", "count", s, []series{{"errors", func(x sample) float64 { return x.errors }}}},
	} {
		if err := plotLines(filepath.Join(dir, p.file), title+" — "+p.title, p.y, p.data, p.lines); err != nil {
			return fmt.Errorf("%s: %w", p.file, err)
		}
	}
	return nil
}

// rebucket pools the latencies of consecutive samples into windows of w.
func rebucket(s []sample, w time.Duration) []sample {
	var out []sample
	for _, x := range s {
		b := x.at.Truncate(w) + w
		if len(out) == 0 || out[len(out)-1].at != b {
			out = append(out, sample{at: b})
		}
		o := &out[len(out)-1]
		o.cmdMs = append(o.cmdMs, x.cmdMs...)
		o.parcelMs = append(o.parcelMs, x.parcelMs...)
	}
	for i := range out {
		o := &out[i]
		o.cmdP50, o.cmdP99 = percentile(o.cmdMs, 0.5), percentile(o.cmdMs, 0.99)
		o.parcelP50, o.parcelP99 = percentile(o.parcelMs, 0.5), percentile(o.parcelMs, 0.99)
	}
	return out
}

func plotLines(path, title, yLabel string, s []sample, lines []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "minutes"
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	for i, l := range lines {
		pts := make(plotter.XYs, len(s))
		for j, x := range s {
			pts[j] = plotter.XY{X: x.at.Minutes(), Y: l.y(x)}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(l.name, line)
	}
	p.Legend.Top = true
	p.BackgroundColor = color.White
	return p.Save(20*vg.Centimeter, 10*vg.Centimeter, path)
}
