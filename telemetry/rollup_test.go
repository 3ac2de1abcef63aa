package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/telemetry"
)

type agg struct {
	Min, Max, Sum float64
	N             int64
}

// rollup returns one metric's aggregate in a rollup row, unpacked from its
// agg: a bare number is one sample, else [min, max, sum, n].
func (r *rig) rollup(table, locker, metric string, bucket time.Time) (agg, bool) {
	r.t.Helper()
	var raw []byte
	err := r.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT agg->$2 FROM %s WHERE locker_id = $1 AND bucket = $3 AND agg ? $2`, table),
		locker, metric, bucket).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return agg{}, false
	}
	require.NoError(r.t, err)
	var v float64
	if json.Unmarshal(raw, &v) == nil {
		return agg{v, v, v, 1}, true
	}
	var a [4]float64
	require.NoError(r.t, json.Unmarshal(raw, &a), "%s", raw)
	require.NotEqual(r.t, 1.0, a[3], "one sample is stored as a bare number: %s", raw)
	return agg{a[0], a[1], a[2], int64(a[3])}, true
}

// rolledSamples is how many samples the rollups of table count.
const rolledSamples = `SELECT coalesce(sum(CASE WHEN jsonb_typeof(e.value) = 'number' THEN 1 ELSE (e.value->>3)::int END), 0)::int
	FROM %s, jsonb_each(agg) AS e`

func (r *rig) rollUp(now time.Time) int {
	r.t.Helper()
	n, err := r.in.RollUp(context.Background(), now)
	require.NoError(r.t, err)
	return n
}

func TestRollupsFollowLateSamples(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	now := time.Now().UTC()
	base := now.Truncate(time.Hour).Add(-2 * time.Hour) // an hour that is over
	require.NoError(t, r.send("L1", sample(1, 1, base.Add(10*time.Second), `"temp_c":1,"mains":1`)))
	require.NoError(t, r.send("L1", sample(1, 2, base.Add(20*time.Second), `"temp_c":3,"mains":1`)))
	require.NoError(t, r.send("L1", sample(1, 3, base.Add(70*time.Second), `"temp_c":5,"mains":0`)))
	require.NoError(t, r.send("L2", sample(1, 1, base.Add(30*time.Second), `"temp_c":10`)))

	require.Equal(t, 3, r.rollUp(now), "L1's two minutes and L2's one")
	a, ok := r.rollup("telemetry_rollup_1m", "L1", "temp_c", base)
	require.True(t, ok)
	require.Equal(t, agg{1, 3, 4, 2}, a)
	a, _ = r.rollup("telemetry_rollup_1m", "L1", "temp_c", base.Add(time.Minute))
	require.Equal(t, agg{5, 5, 5, 1}, a)
	a, _ = r.rollup("telemetry_rollup_1m", "L1", "mains", base.Add(time.Minute))
	require.Equal(t, agg{0, 0, 0, 1}, a)
	a, _ = r.rollup("telemetry_rollup_1m", "L2", "temp_c", base)
	require.Equal(t, agg{10, 10, 10, 1}, a)
	a, _ = r.rollup("telemetry_rollup_1h", "L1", "temp_c", base)
	require.Equal(t, agg{1, 5, 9, 3}, a)

	// A pass with nothing new changes nothing.
	require.Zero(t, r.rollUp(now))
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_rollup_dirty`))

	// The locker resends an older sample after an outage: it lands in its
	// minute and hour, and a republished duplicate counts once.
	require.NoError(t, r.send("L1", sample(0+1, 0, base.Add(5*time.Second), `"temp_c":-1`)))
	require.NoError(t, r.send("L1", sample(1, 0, base.Add(5*time.Second), `"temp_c":-1`)))
	require.Equal(t, 1, r.rollUp(now), "only L1's minute is recomputed")
	a, _ = r.rollup("telemetry_rollup_1m", "L1", "temp_c", base)
	require.Equal(t, agg{-1, 3, 3, 3}, a)
	a, _ = r.rollup("telemetry_rollup_1h", "L1", "temp_c", base)
	require.Equal(t, agg{-1, 5, 8, 4}, a)
	a, _ = r.rollup("telemetry_rollup_1h", "L2", "temp_c", base)
	require.Equal(t, agg{10, 10, 10, 1}, a, "other lockers' hours stay")
}

func TestRollupOfRecentMinutesWaitsForTheirEnd(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	now := time.Now().UTC()
	minute := now.Truncate(time.Minute)
	require.NoError(t, r.send("L1", sample(1, 1, now, `"temp_c":2`)))
	require.NoError(t, r.send("L2", sample(1, 1, now, `"temp_c":4`)))
	require.Zero(t, r.rollUp(now), "the minute is not over")
	require.Equal(t, 1, r.rollUp(minute.Add(time.Minute+10*time.Second)), "every locker's minute in one go")
	a, ok := r.rollup("telemetry_rollup_1m", "L2", "temp_c", minute)
	require.True(t, ok)
	require.Equal(t, agg{4, 4, 4, 1}, a)
	_, ok = r.rollup("telemetry_rollup_1h", "L2", "temp_c", minute.Truncate(time.Hour))
	require.False(t, ok, "the hour is not over")
	r.rollUp(minute.Truncate(time.Hour).Add(time.Hour + 10*time.Second))
	a, ok = r.rollup("telemetry_rollup_1h", "L2", "temp_c", minute.Truncate(time.Hour))
	require.True(t, ok)
	require.Equal(t, agg{4, 4, 4, 1}, a)
}

// TestRollupNeverLosesConcurrentSamples runs the roller while samples of the
// same minutes keep committing: after a last pass, every rollup matches the
// raw samples.
func TestRollupNeverLosesConcurrentSamples(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	now := time.Now().UTC()
	base := now.Truncate(time.Minute).Add(-5 * time.Minute)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := r.in.RollUp(context.Background(), now)
			require.NoError(t, err)
		}
	}()
	var chans []<-chan result
	for i := range 2000 {
		chans = append(chans, r.submit(fmt.Sprintf("L%d", i%10), sample(1, i, base.Add(time.Duration(i%240)*time.Second), `"temp_c":1`)))
	}
	for _, ch := range chans {
		require.NoError(t, r.wait(ch, 10*time.Second))
	}
	close(stop)
	wg.Wait()
	r.rollUp(now.Add(2 * time.Hour))
	require.Equal(t, 2000, r.count(fmt.Sprintf(rolledSamples, "telemetry_rollup_1m")))
	require.Equal(t, 2000, r.count(fmt.Sprintf(rolledSamples, "telemetry_rollup_1h")))
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_rollup_dirty`))
}

func TestPartitionsAreCreatedAheadAndDropped(t *testing.T) {
	pool := newPool(t)
	r := start(t, pool, testConfig())
	ctx := context.Background()
	partitions := func(table string) []string {
		rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = $1::regclass ORDER BY 1`, table)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}
	day := func(d time.Time) string { return "telemetry_samples_" + d.UTC().Format("20060102") }
	now := time.Now().UTC()
	raw := partitions("telemetry_samples")
	require.Contains(t, raw, day(now))
	require.Contains(t, raw, day(now.Add(24*time.Hour)), "a day ahead")
	require.Contains(t, raw, day(now.Add(-2*24*time.Hour)), "back to the raw retention")
	require.Contains(t, partitions("telemetry_rollup_1h"), "telemetry_rollup_1h_"+now.Format("200601"))
	require.NoError(t, r.send("L1", sample(1, 1, now.Add(-36*time.Hour), `"temp_c":1`)))

	// Two hubs maintaining at once, three days later: both succeed, old
	// days go, new ones come, nothing twice.
	later := now.Add(3 * 24 * time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.in.Maintain(ctx, later) }()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	raw = partitions("telemetry_samples")
	require.NotContains(t, raw, day(now.Add(-36*time.Hour)))
	require.NotContains(t, raw, day(now))
	require.Contains(t, raw, day(later.Add(24*time.Hour)))
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_samples`), "the old sample went with its partition")

	// The ingest's window moved: a sample of a dropped day is acked, not stored.
	require.NoError(t, r.send("L1", sample(1, 2, now.Add(-time.Hour), `"temp_c":1`)))
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_samples`))
	require.Equal(t, 1.0, r.metric("lockerhub_telemetry_samples_dropped_total", "too_old"))
}

func TestMaintenanceKeepsRollupsLonger(t *testing.T) {
	pool := newPool(t)
	cfg := testConfig()
	cfg.Retention.Rollup1m = 5 * 24 * time.Hour
	cfg.Retention.Rollup1h = 90 * 24 * time.Hour
	r := start(t, pool, cfg)
	now := time.Now().UTC()
	require.NoError(t, r.send("L1", sample(1, 1, now.Add(-time.Hour), `"temp_c":1`)))
	r.rollUp(now.Add(time.Hour))
	require.NoError(t, r.in.Maintain(context.Background(), now.Add(4*24*time.Hour)))
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_samples`))
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_rollup_1m`))
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_rollup_1h`))
	require.NoError(t, r.in.Maintain(context.Background(), now.Add(7*24*time.Hour)))
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_rollup_1m`))
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_rollup_1h`))
}

// TestStartCreatesNearPartitionsFirst: with background maintenance, Start
// creates only the last days' partitions (a start stays cheap); a sample
// older than those but inside the retention is not acknowledged until Run
// has created the rest, and then it is stored.
func TestStartCreatesNearPartitionsFirst(t *testing.T) {
	pool := newPool(t)
	cfg := testConfig()
	cfg.Retention = telemetry.Retention{Raw: 10 * 24 * time.Hour, Rollup1m: 10 * 24 * time.Hour, Rollup1h: 60 * 24 * time.Hour, Ahead: 24 * time.Hour}
	cfg.MaintainEvery = time.Hour
	reg := prometheus.NewRegistry()
	in, err := telemetry.NewIngest(pool, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, cfg)
	require.NoError(t, err)
	require.NoError(t, in.Start(context.Background()))
	r := &rig{t: t, pool: pool, in: in, reg: reg}
	now := time.Now().UTC()
	raw := r.count(`SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry_samples'::regclass`)
	require.LessOrEqual(t, raw, 5, "today, 3 days back and a day ahead")

	old := sample(1, 1, now.Add(-6*24*time.Hour), `"temp_c":1`)
	require.ErrorIs(t, r.wait(r.submit("L1", old), time.Second), telemetry.ErrOverloaded, "its partition is yet to come: not acked, not dropped")
	require.Equal(t, 1.0, r.metric("lockerhub_telemetry_samples_not_taken_total", "no_partition"))
	require.Zero(t, r.metric("lockerhub_telemetry_samples_dropped_total", "too_old"))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, func() bool {
		return r.count(`SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry_samples'::regclass`) >= 12
	}, "Run creates the rest of the retention window")
	eventually(t, 10*time.Second, func() bool {
		res := r.wait(r.submit("L1", old), 10*time.Second)
		if res != nil {
			require.ErrorIs(t, res, telemetry.ErrOverloaded)
		}
		return res == nil
	}, "the locker's resent sample is taken")
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_samples`))
	require.NoError(t, r.send("L1", sample(1, 2, now.Add(-11*24*time.Hour), `"temp_c":1`)), "past the retention: acked")
	require.Equal(t, 1.0, r.metric("lockerhub_telemetry_samples_dropped_total", "too_old"))
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_samples`))
}
