//go:build bench

package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/telemetry"
)

// benchEnv reads an integer knob of the benchmarks.
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchConfig() telemetry.Config {
	cfg := testConfig()
	cfg.Writers = benchEnv("TELEMETRY_BENCH_WRITERS", 2)
	cfg.BatchMax = benchEnv("TELEMETRY_BENCH_BATCH", 4000)
	return cfg
}

// figure prints one measured figure on a line of its own, as every
// benchmark of `make bench` does (docs/benchmarks.md).
func figure(name string, v float64, unit string, n int) {
	fmt.Printf("figure %-32s %10.2f %-4s (%d lockers)\n", name, v, unit, n)
}

// payload is a 60-s style sample with five metrics, as lockersim sends.
func payload(seq int, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"boot":1,"seq":%d,"ts":%d,"m":{"temp_c":%.1f,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71}}`,
		seq, ts.UnixMilli(), 4+float64(seq%100)/10)
}

// BenchmarkIngestCeiling submits 1,000,000 samples from 1,000 lockers
// straight to the ingest (no MQTT) as fast as it takes them, with at most 20
// samples per locker unacknowledged (as the broker's per-client budget
// would), and reports durable samples/s, ack and commit latency. It is one
// measurement, whatever b.N is. TELEMETRY_BENCH_SAMPLES, _WRITERS and
// _BATCH change the run.
//
//	make bench BENCH='^BenchmarkIngest'
func BenchmarkIngestCeiling(b *testing.B) {
	lockers := 1000
	total := benchEnv("TELEMETRY_BENCH_SAMPLES", 1_000_000)
	perLocker := total / lockers
	r := start(b, newPool(b), benchConfig())

	lat := make([]time.Duration, total)
	var next atomic.Int64
	var overloaded atomic.Int64
	var failed atomic.Value
	begin := time.Now()
	var wg sync.WaitGroup
	for l := range lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("L%05d", l)
			window := make(chan struct{}, 20)
			var inflight sync.WaitGroup
			for seq := range perLocker {
				window <- struct{}{}
				inflight.Add(1)
				p := payload(seq, time.Now())
				for {
					sent := time.Now()
					errc := make(chan error, 1)
					r.in.Submit(telemetry.Inbound{LockerID: id, Payload: p, Received: sent, Done: func(err error) {
						if err == nil {
							lat[next.Add(1)-1] = time.Since(sent)
							<-window
							inflight.Done()
						}
						errc <- err
					}})
					// Only a refusal settles at once; wait for it, not for the commit.
					select {
					case err := <-errc:
						if errors.Is(err, telemetry.ErrOverloaded) {
							overloaded.Add(1)
							time.Sleep(5 * time.Millisecond)
							continue
						}
						if err != nil {
							failed.Store(err)
							<-window
							inflight.Done()
						}
					default:
					}
					break
				}
			}
			inflight.Wait()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	n := int(next.Load())
	require.Equal(b, perLocker*lockers, n)
	require.Equal(b, n, r.count(`SELECT count(*) FROM telemetry_samples`))
	slices.Sort(lat[:n])
	p50, p99, batches := r.commitQuantiles()
	b.Logf("writers %d, batch ≤ %d: %d samples from %d lockers durable in %v; refused as overloaded and resent %d; %d transactions (%.0f samples each)",
		benchConfig().Writers, benchConfig().BatchMax, n, lockers, elapsed.Round(time.Millisecond), overloaded.Load(), batches, float64(n)/float64(batches))
	figure("telemetry_store_samples_per_s", float64(n)/elapsed.Seconds(), "/s", lockers)
	figure("telemetry_store_ack_p50_ms", ms(lat[n/2]), "ms", lockers)
	figure("telemetry_store_ack_p99_ms", ms(lat[n*99/100]), "ms", lockers)
	figure("telemetry_store_ack_max_ms", ms(lat[n-1]), "ms", lockers)
	figure("telemetry_store_commit_p50_ms", ms(p50), "ms", lockers)
	figure("telemetry_store_commit_p99_ms", ms(p99), "ms", lockers)

	start := time.Now()
	minutes, err := r.in.RollUp(context.Background(), time.Now().Add(2*time.Hour))
	require.NoError(b, err)
	figure("telemetry_rollup_pass_s", time.Since(start).Seconds(), "s", lockers)
	b.Logf("roller: %d minutes of %d samples rolled up in one pass", minutes, n)
}

// BenchmarkIngestLatency10k submits 10,000 samples/s (1,000 lockers, every
// 100 ms each) for 20 s and reports the ack latency: the requirement is
// p99 ≤ 50 ms. TELEMETRY_BENCH_SECONDS changes the duration.
//
//	make bench BENCH='^BenchmarkIngest'
func BenchmarkIngestLatency10k(b *testing.B) {
	const lockers, rate = 1000, 10_000
	dur := time.Duration(benchEnv("TELEMETRY_BENCH_SECONDS", 20)) * time.Second
	r := start(b, newPool(b), benchConfig())
	var mu sync.Mutex
	var lat []time.Duration
	var failed error
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / (rate / 100)) // 100 samples per tick
	defer tick.Stop()
	begin := time.Now()
	end := begin.Add(dur)
	seq := 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		for i := range 100 {
			seq++
			wg.Add(1)
			sent := time.Now()
			r.in.Submit(telemetry.Inbound{LockerID: fmt.Sprintf("L%05d", (seq+i)%lockers), Payload: payload(seq, sent), Received: sent,
				Done: func(err error) {
					defer wg.Done()
					d := time.Since(sent)
					mu.Lock()
					if err != nil {
						failed = err
					}
					lat = append(lat, d)
					mu.Unlock()
				}})
		}
	}
	wg.Wait()
	elapsed := time.Since(begin)
	require.NoError(b, failed)
	slices.Sort(lat)
	n := len(lat)
	p50, p99, batches := r.commitQuantiles()
	b.Logf("%d samples offered at %d/s over %v, %.0f samples per transaction", n, rate, dur, float64(n)/float64(batches))
	figure("telemetry_10k_samples_per_s", float64(n)/elapsed.Seconds(), "/s", lockers)
	figure("telemetry_10k_ack_p50_ms", ms(lat[n/2]), "ms", lockers)
	figure("telemetry_10k_ack_p99_ms", ms(lat[n*99/100]), "ms", lockers)
	figure("telemetry_10k_ack_max_ms", ms(lat[n-1]), "ms", lockers)
	figure("telemetry_10k_commit_p50_ms", ms(p50), "ms", lockers)
	figure("telemetry_10k_commit_p99_ms", ms(p99), "ms", lockers)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkStorageBytes measures the disk the telemetry tables take at the
// recommended 60-s telemetry with five metrics: TELEMETRY_BENCH_LOCKERS
// lockers (200) send one sample a minute for a day through the ingest, in
// time order across lockers as a fleet does; the roller makes the 1-minute
// and 1-hour rollups; after a CHECKPOINT, pg_total_relation_size (heap,
// TOAST, every index) of each table's partitions over its rows gives bytes
// per row and per locker per day, and what 10,000 lockers take at the
// default retention. For comparison the same run fills, from the same
// samples, the 1-minute rollups as 001 had them (one row per metric) and as
// parallel arrays (metric text[], min/max/sum float8[], n int8[]).
//
//	make bench BENCH=StorageBytes
func BenchmarkStorageBytes(b *testing.B) {
	lockers := benchEnv("TELEMETRY_BENCH_LOCKERS", 200)
	r := start(b, newPool(b), benchConfig())
	ctx := context.Background()
	now := time.Now().UTC()
	first := now.Truncate(time.Minute).Add(-25 * time.Hour)
	var pending sync.WaitGroup
	var failed atomic.Value
	for m := range 1440 {
		for l := range lockers {
			ts := first.Add(time.Duration(m)*time.Minute + time.Duration(l%60)*time.Second) // each locker its own phase
			p := fmt.Appendf(nil, `{"boot":1,"seq":%d,"ts":%d,"m":{"temp_c":%.1f,"humidity_pct":%d,"battery_v":%.2f,"mains":%d,"rssi_dbm":%d}}`,
				m+1, ts.UnixMilli(), 4+float64((m+l)%100)/10, 40+(m*7+l)%40, 12+float64((m*3+l)%100)/100, 1-(m/600+l)%2*(m%3/2), -90+(m+l*3)%30)
			pending.Add(1)
			for {
				errc := make(chan error, 1)
				r.in.Submit(telemetry.Inbound{LockerID: fmt.Sprintf("L%05d", l), Payload: p, Received: ts, Done: func(err error) {
					if !errors.Is(err, telemetry.ErrOverloaded) {
						if err != nil {
							failed.Store(err)
						}
						pending.Done()
					}
					errc <- err
				}})
				select {
				case err := <-errc:
					if errors.Is(err, telemetry.ErrOverloaded) {
						time.Sleep(5 * time.Millisecond)
						continue
					}
				default:
				}
				break
			}
		}
	}
	pending.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	_, err := r.in.RollUp(ctx, now.Add(2*time.Hour))
	require.NoError(b, err)

	// The same minutes in the layouts not chosen, from the same samples.
	for _, sql := range []string{
		`CREATE TABLE bench_rollup_per_metric (locker_id text NOT NULL, metric text NOT NULL, bucket timestamptz NOT NULL,
			min float8 NOT NULL, max float8 NOT NULL, sum float8 NOT NULL, n bigint NOT NULL, PRIMARY KEY (locker_id, metric, bucket))`,
		`CREATE INDEX ON bench_rollup_per_metric USING brin (bucket) WITH (pages_per_range = 16)`,
		`INSERT INTO bench_rollup_per_metric SELECT s.locker_id, e.key, date_trunc('minute', s.ts, 'UTC'),
			min(e.value::float8), max(e.value::float8), sum(e.value::float8), count(*)
			FROM telemetry_samples s CROSS JOIN LATERAL jsonb_each(s.m) AS e GROUP BY 1, 2, 3 ORDER BY 3, 1`,
		`CREATE TABLE bench_rollup_arrays (locker_id text NOT NULL, bucket timestamptz NOT NULL, metric text[] NOT NULL,
			min float8[] NOT NULL, max float8[] NOT NULL, sum float8[] NOT NULL, n int8[] NOT NULL, PRIMARY KEY (locker_id, bucket))`,
		`CREATE INDEX ON bench_rollup_arrays USING brin (bucket) WITH (pages_per_range = 16)`,
		`INSERT INTO bench_rollup_arrays SELECT locker_id, bucket, array_agg(metric ORDER BY metric), array_agg(min ORDER BY metric),
			array_agg(max ORDER BY metric), array_agg(sum ORDER BY metric), array_agg(n ORDER BY metric)
			FROM bench_rollup_per_metric GROUP BY 1, 2 ORDER BY 2, 1`,
		`CHECKPOINT`,
	} {
		_, err := r.pool.Exec(ctx, sql)
		require.NoError(b, err, sql)
	}
	size := func(table string) (bytes, rows float64) {
		var by, n int64
		require.NoError(b, r.pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce((SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
			WHERE i.inhparent = '%[1]s'::regclass), pg_total_relation_size('%[1]s'))::bigint, (SELECT count(*) FROM %[1]s)`, table)).Scan(&by, &n))
		return float64(by), float64(n)
	}
	const gib = 1 << 30
	for _, tc := range []struct {
		name, table   string
		perDay        float64 // rows per locker per day
		keptDays      float64 // default retention
		unit, rowName string
	}{
		{"raw", "telemetry_samples", 1440, 30, "B", "sample"},
		{"rollup_1m", "telemetry_rollup_1m", 1440, 30, "B", "row"},
		{"rollup_1h", "telemetry_rollup_1h", 24, 400, "B", "row"},
		{"rollup_1m_per_metric", "bench_rollup_per_metric", 5 * 1440, 30, "B", "row"},
		{"rollup_1m_arrays", "bench_rollup_arrays", 1440, 30, "B", "row"},
	} {
		bytes, rows := size(tc.table)
		perRow := bytes / rows
		b.Logf("%s: %.0f bytes for %.0f rows (%d lockers × a day)", tc.table, bytes, rows, lockers)
		figure("telemetry_"+tc.name+"_bytes_per_"+tc.rowName, perRow, tc.unit, lockers)
		figure("telemetry_"+tc.name+"_KiB_per_locker_day", perRow*tc.perDay/1024, "KiB", lockers)
		if tc.table[:5] == "telem" {
			figure("telemetry_"+tc.name+"_GiB_10k_lockers", perRow*tc.perDay*tc.keptDays*10_000/gib, "GiB", 10_000)
		}
	}
}

// BenchmarkIngestStart measures Ingest.Start on a fresh database with the
// default retention, as every hub start and hubtest.Start does: with
// background maintenance (the default: the last 3 days' partitions and
// ahead) and, in the same run, with the whole retention window created at
// once (Config.MaintainEvery < 0, what every start did before). Median of
// TELEMETRY_BENCH_STARTS (10) starts each.
//
//	make bench BENCH=IngestStart
func BenchmarkIngestStart(b *testing.B) {
	runs := benchEnv("TELEMETRY_BENCH_STARTS", 10)
	for _, tc := range []struct {
		name  string
		every time.Duration
	}{{"near", 0}, {"whole_window", -1}} {
		var took []time.Duration
		var parts int
		for range runs {
			pool := newPool(b)
			in, err := telemetry.NewIngest(pool, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), telemetry.Config{MaintainEvery: tc.every})
			require.NoError(b, err)
			begin := time.Now()
			require.NoError(b, in.Start(context.Background()))
			took = append(took, time.Since(begin))
			require.NoError(b, pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
				WHERE c.relkind = 'r'`).Scan(&parts))
			pool.Close()
		}
		slices.Sort(took)
		b.Logf("%s: %d partitions; starts took %v", tc.name, parts, took)
		figure("telemetry_start_"+tc.name+"_ms", ms(took[len(took)/2]), "ms", 0)
		figure("telemetry_start_"+tc.name+"_partitions", float64(parts), "", 0)
	}
}

// commitQuantiles estimates p50 and p99 of lockerhub_telemetry_commit_seconds
// from its buckets (linear within a bucket).
func (r *rig) commitQuantiles() (p50, p99 time.Duration, count uint64) {
	mfs, err := r.reg.Gather()
	require.NoError(r.t, err)
	for _, mf := range mfs {
		if mf.GetName() != "lockerhub_telemetry_commit_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		count = h.GetSampleCount()
		q := func(q float64) time.Duration {
			want := q * float64(count)
			prevCount, prevBound := 0.0, 0.0
			for _, b := range h.GetBucket() {
				c := float64(b.GetCumulativeCount())
				if c >= want {
					f := (want - prevCount) / math.Max(c-prevCount, 1)
					return time.Duration((prevBound + f*(b.GetUpperBound()-prevBound)) * float64(time.Second)).Round(100 * time.Microsecond)
				}
				prevCount, prevBound = c, b.GetUpperBound()
			}
			return time.Duration(prevBound * float64(time.Second))
		}
		return q(0.5), q(0.99), count
	}
	return 0, 0, 0
}
