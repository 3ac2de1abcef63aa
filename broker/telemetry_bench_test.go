//go:build bench

package broker_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
)

// BenchmarkTelemetryIngest measures issue 5's requirements with real mTLS
// lockers: 1,000 lockers (BENCH_LOCKERS) publishing QoS 1 telemetry
//
//   - as fast as their PUBACKs allow (each at most 10 unacknowledged), for
//     60 s (BENCH_DURATION): durable samples stored per second, ≥ 20,000/s
//     required, 50,000/s the aim;
//   - at 10,000 samples/s in total (BENCH_RATE): PUBACK p99 ≤ 50 ms.
//
// A PUBACK means the sample is committed in PostgreSQL. After each run the
// number of samples stored equals the number the generator saw acknowledged.
// The generator is `lockersim bench --tls --payload telemetry` in its own
// process (one sample of five measurements per message, ~120 bytes). The
// peer in the same run is Debian's Mosquitto (TLS with client certificates,
// no persistence, no subscriber) under the same generator and flags.
//
//	make bench BENCH=TelemetryIngest
func BenchmarkTelemetryIngest(b *testing.B) {
	n := envInt("BENCH_LOCKERS", 1000)
	rate := envInt("BENCH_RATE", 10000)
	dur := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BENCH_DURATION")); err == nil && d >= 10*time.Second {
		dur = d
	}
	h := hubtest.Start(b, func(c *app.Config) { c.Logger = slog.New(slog.DiscardHandler) })
	sim := buildLockersim(b)
	common := enrolLockers(b, h, sim, b.TempDir(), "TEL-", n, 10)

	stored := func() int64 {
		var c int64
		if err := h.App.Pool.QueryRow(context.Background(), `SELECT count(*) FROM telemetry_samples WHERE locker_id LIKE 'TEL-%'`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		return c
	}
	storedMetric := func() float64 { return h.Metric("lockerhub_telemetry_samples_stored_total") }
	publish := func(rateFlag int) []string {
		return []string{"--tls", "--payload", "telemetry", "--size", "0", "--qos", "1", "--rate", strconv.Itoa(rateFlag),
			"--connections", strconv.Itoa(n), "--duration", dur.String()}
	}

	type phase struct {
		name string
		rate int // 0: as fast as acks allow
	}
	// The paced phase first: after the maximum one, the roller still rolls up
	// its millions of samples for a while, which is not what a hub taking
	// 10,000 samples/s does (it rolls up its own minutes, as here).
	for _, ph := range []phase{{"rate", rate}, {"max", 0}} {
		before := stored()
		gen := startBench(b, sim, append(append([]string{"--broker", h.MQTTAddr}, publish(ph.rate)...), common...)...)
		waitFor(b, 2*time.Minute, "hub: all connected", func() bool { return h.App.Broker.Connected() == n })
		win := measure(b, gen.cmd.Process.Pid, 0, dur, storedMetric)
		res := gen.wait(b)
		waitFor(b, 30*time.Second, "all disconnected", func() bool { return h.App.Broker.Connected() == 0 })
		got := stored() - before
		logHistogram(b, h, "lockerhub_telemetry_commit_seconds", 1000, "ms") // cumulative: both phases after the second
		logHistogram(b, h, "lockerhub_telemetry_batch_samples", 1, "samples")
		logHistogram(b, h, "lockerhub_telemetry_rollup_seconds", 1000, "ms")
		figure("telemetry_"+ph.name+"_stored_per_s", win.counted/win.seconds(), "/s", n)
		figure("telemetry_"+ph.name+"_acked_per_s", res.AckedPerS, "/s", n)
		figure("telemetry_"+ph.name+"_ack_p50_ms", res.AckP50Ms, "ms", n)
		figure("telemetry_"+ph.name+"_ack_p99_ms", res.AckP99Ms, "ms", n)
		figure("telemetry_"+ph.name+"_hub_cpu_cores", win.selfCPU/win.seconds(), "core", n)
		figure("telemetry_"+ph.name+"_postgres_cpu_cores", win.pgCPU/win.seconds(), "core", n)
		figure("telemetry_"+ph.name+"_generator_cpu_cores", win.otherCPU/win.seconds(), "core", n)
		figure("telemetry_"+ph.name+"_machine_cpu_busy_cores", win.machineCPU/win.seconds(), "core", n)
		b.Logf("hub, %s: %d samples stored; generator %s", ph.name, got, genSummary(res))
		if res.Errors > 0 {
			b.Logf("generator against the hub: %d errors, first: %s", res.Errors, res.FirstError)
		}
		if got != res.Acked {
			b.Errorf("%s: %d samples stored, but the generator saw %d acknowledged (%d sent)", ph.name, got, res.Acked, res.Sent)
		}
		switch {
		case ph.rate == 0 && win.counted/win.seconds() < 20000:
			b.Errorf("max: %.0f durable samples/s < 20,000/s", win.counted/win.seconds())
		case ph.rate > 0 && res.AckP99Ms > 50:
			b.Errorf("at %d samples/s: PUBACK p99 %.1f ms > 50 ms", ph.rate, res.AckP99Ms)
		}
	}

	// Peer: the same generator against Mosquitto (no persistence).
	mq := startMosquitto(b, h)
	for _, ph := range []phase{{"rate", rate}, {"max", 0}} {
		gen := startBench(b, sim, append(append([]string{"--broker", mqAddr(mq)}, publish(ph.rate)...), common...)...)
		win := measure(b, gen.cmd.Process.Pid, mq.Process.Pid, dur, func() float64 { return 0 })
		res := gen.wait(b)
		figure("mosquitto_"+ph.name+"_acked_per_s", res.AckedPerS, "/s", n)
		figure("mosquitto_"+ph.name+"_ack_p50_ms", res.AckP50Ms, "ms", n)
		figure("mosquitto_"+ph.name+"_ack_p99_ms", res.AckP99Ms, "ms", n)
		figure("mosquitto_"+ph.name+"_cpu_cores", win.brokerCPU/win.seconds(), "core", n)
		figure("mosquitto_"+ph.name+"_generator_cpu_cores", win.otherCPU/win.seconds(), "core", n)
		figure("mosquitto_"+ph.name+"_machine_cpu_busy_cores", win.machineCPU/win.seconds(), "core", n)
		b.Logf("mosquitto, %s: generator %s", ph.name, genSummary(res))
	}
}
