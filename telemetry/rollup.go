package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// roller keeps the rollups in step with the raw samples. Writers append the
// minutes their batches touched to telemetry_rollup_dirty in the same
// transaction as the samples; each pass deletes the marks of minutes that are
// over (plus Config.RollDelay), recomputes those minutes' 1-minute rollups
// from the raw samples (full replacement, so a pass run twice or a late
// sample gives the same result as one pass over everything), and marks their
// hours; hours that are over are then recomputed from the 1-minute rollups
// the same way. A mark deleted by a pass that fails comes back with the
// rollback; a mark added meanwhile is not visible to the pass (its samples
// are not either) and is left for the next one.
type roller struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	m      *ingestMetrics
	delay  time.Duration
	raw    time.Duration
	ready  func() bool
	passes int
}

func newRoller(pool *pgxpool.Pool, log *slog.Logger, m *ingestMetrics, cfg Config, ready func() bool) *roller {
	return &roller{pool: pool, log: log, m: m, delay: cfg.RollDelay, raw: cfg.Retention.Raw, ready: ready}
}

func (r *roller) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.ready() {
			continue // old minutes' partitions may be missing until the first maintain
		}
		if _, err := r.rollOnce(ctx, time.Now()); err != nil && ctx.Err() == nil {
			r.log.Warn("telemetry rollup failed; retrying at the next tick", "error", err)
		}
	}
}

type mark struct {
	at     time.Time
	locker string // "": every locker
}

// rollOnce is one pass; it returns how many minutes it recomputed.
func (r *roller) rollOnce(ctx context.Context, now time.Time) (int, error) {
	start := time.Now()
	n, err := r.rollMinutes(ctx, now)
	if err == nil {
		err = r.rollHours(ctx, now)
	}
	if err != nil {
		r.m.rollFailures.Inc()
		return n, err
	}
	r.m.rollSeconds.Observe(time.Since(start).Seconds())
	r.m.rollMinutes.Add(float64(n))
	// The mark tables are deleted from every pass; autovacuum is off here.
	if r.passes++; r.passes%6 == 1 {
		if _, err := r.pool.Exec(ctx, `VACUUM telemetry_rollup_dirty, telemetry_rollup_dirty_1h`); err != nil {
			r.log.Warn("vacuum of the rollup marks failed", "error", err)
		}
	}
	return n, nil
}

// takeMarks deletes the marks up to cutoff and returns them: the distinct
// every-locker ones, and the per-locker ones they do not cover.
func takeMarks(ctx context.Context, tx pgx.Tx, sql string, cutoff time.Time) (all []time.Time, per []mark, err error) {
	rows, err := tx.Query(ctx, sql, cutoff)
	if err != nil {
		return nil, nil, err
	}
	seen := map[mark]bool{}
	var at time.Time
	var locker *string
	_, err = pgx.ForEachRow(rows, []any{&at, &locker}, func() error {
		k := mark{at: at.UTC()}
		if locker != nil {
			k.locker = *locker
		}
		seen[k] = true
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for k := range seen {
		if k.locker == "" {
			all = append(all, k.at)
		} else if !seen[mark{at: k.at}] {
			per = append(per, k)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Before(all[j]) })
	return all, per, nil
}

// aggValue packs one metric's min, max, sum and n (columns of those names)
// into its value in a rollup's agg (migrations/002): a bare number for a
// single sample, else [min, max, sum, n].
const aggValue = `CASE WHEN n = 1 THEN to_jsonb(min) ELSE jsonb_build_array(min, max, sum, n) END`

// aggArray turns the jsonb expression x, one metric's value in agg, into
// [min, max, sum, n] for both forms.
func aggArray(x string) string {
	return fmt.Sprintf(`CASE WHEN jsonb_typeof(%[1]s) = 'number' THEN jsonb_build_array(%[1]s, %[1]s, %[1]s, 1) ELSE %[1]s END`, x)
}

// rollup1mSQL recomputes the 1-minute rollups of the samples that %s
// selects (s: telemetry_samples): every metric of a locker's minute in one row.
const rollup1mSQL = `INSERT INTO telemetry_rollup_1m (locker_id, bucket, agg)
	SELECT locker_id, bucket, jsonb_object_agg(metric, ` + aggValue + `)
	FROM (SELECT s.locker_id, date_trunc('minute', s.ts, 'UTC') AS bucket, e.key AS metric,
			min(e.value::float8) AS min, max(e.value::float8) AS max, sum(e.value::float8) AS sum, count(*) AS n
		FROM telemetry_samples s CROSS JOIN LATERAL jsonb_each(s.m) AS e
		%s
		GROUP BY 1, 2, 3) g
	GROUP BY 1, 2
	ON CONFLICT (locker_id, bucket) DO UPDATE SET agg = excluded.agg`

func (r *roller) rollMinutes(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-time.Minute - r.delay)
	floor := now.Add(-r.raw - 24*time.Hour) // raw samples this old are gone
	done := 0
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		all, per, err := takeMarks(ctx, tx, `DELETE FROM telemetry_rollup_dirty WHERE minute <= $1 RETURNING minute, locker_id`, cutoff)
		if err != nil {
			return fmt.Errorf("rollup marks: %w", err)
		}
		var hours []time.Time
		var hourLockers []*string
		hourMarks := map[mark]bool{}
		addHour := func(m mark) {
			h := mark{at: m.at.Truncate(time.Hour), locker: m.locker}
			if !hourMarks[h] {
				hourMarks[h] = true
				hours = append(hours, h.at)
				if h.locker == "" {
					hourLockers = append(hourLockers, nil)
				} else {
					hourLockers = append(hourLockers, &h.locker)
				}
			}
		}
		// Every locker's samples of runs of consecutive minutes: one
		// statement per run, bounded by constants so only its partitions
		// are read.
		for i := 0; i < len(all); {
			j := i + 1
			for j < len(all) && all[j].Sub(all[j-1]) == time.Minute {
				j++
			}
			lo, hi := all[i], all[j-1].Add(time.Minute)
			if !hi.Before(floor) {
				if _, err := tx.Exec(ctx, fmt.Sprintf(rollup1mSQL, `WHERE s.ts >= $1 AND s.ts < $2`), lo, hi); err != nil {
					return fmt.Errorf("rollup of %s–%s: %w", lo.Format(time.RFC3339), hi.Format(time.RFC3339), err)
				}
				for _, m := range all[i:j] {
					addHour(mark{at: m})
				}
				done += j - i
			}
			i = j
		}
		// One locker's late samples: only that locker's minutes.
		sort.Slice(per, func(i, j int) bool { return per[i].at.Before(per[j].at) })
		for len(per) > 0 {
			chunk := per[:min(len(per), 5000)]
			per = per[len(chunk):]
			var lockers []string
			var minutes []time.Time
			for _, m := range chunk {
				if m.at.Before(floor) {
					continue
				}
				lockers, minutes = append(lockers, m.locker), append(minutes, m.at)
				addHour(m)
			}
			if len(minutes) == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(rollup1mSQL, `JOIN unnest($1::text[], $2::timestamptz[]) AS d(locker_id, minute)
				ON s.locker_id = d.locker_id AND s.ts >= d.minute AND s.ts < d.minute + interval '1 minute'
				WHERE s.ts >= $3 AND s.ts < $4`), lockers, minutes, minutes[0], minutes[len(minutes)-1].Add(time.Minute)); err != nil {
				return fmt.Errorf("rollup of late samples: %w", err)
			}
			done += len(minutes)
		}
		if len(hours) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO telemetry_rollup_dirty_1h (hour, locker_id) SELECT * FROM unnest($1::timestamptz[], $2::text[])`,
				hours, hourLockers); err != nil {
				return fmt.Errorf("mark rollup hours: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return done, nil
}

// rollup1hSQL recomputes the 1-hour rollups from the 1-minute ones that %s
// selects (r: telemetry_rollup_1m).
var rollup1hSQL = `INSERT INTO telemetry_rollup_1h (locker_id, bucket, agg)
	SELECT locker_id, bucket, jsonb_object_agg(metric, ` + aggValue + `)
	FROM (SELECT r.locker_id, date_trunc('hour', r.bucket, 'UTC') AS bucket, e.key AS metric,
			min((a->>0)::float8) AS min, max((a->>1)::float8) AS max, sum((a->>2)::float8) AS sum, sum((a->>3)::bigint)::bigint AS n
		FROM telemetry_rollup_1m r CROSS JOIN LATERAL jsonb_each(r.agg) AS e
			CROSS JOIN LATERAL (SELECT ` + aggArray("e.value") + ` AS a) x
		%s
		GROUP BY 1, 2, 3) g
	GROUP BY 1, 2
	ON CONFLICT (locker_id, bucket) DO UPDATE SET agg = excluded.agg`

func (r *roller) rollHours(ctx context.Context, now time.Time) error {
	cutoff := now.Add(-time.Hour - r.delay)
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		all, per, err := takeMarks(ctx, tx, `DELETE FROM telemetry_rollup_dirty_1h WHERE hour <= $1 RETURNING hour, locker_id`, cutoff)
		if err != nil {
			return fmt.Errorf("rollup hour marks: %w", err)
		}
		for _, h := range all {
			if _, err := tx.Exec(ctx, fmt.Sprintf(rollup1hSQL, `WHERE r.bucket >= $1 AND r.bucket < $2`), h, h.Add(time.Hour)); err != nil {
				return fmt.Errorf("rollup of hour %s: %w", h.Format(time.RFC3339), err)
			}
		}
		if len(per) == 0 {
			return nil
		}
		sort.Slice(per, func(i, j int) bool { return per[i].at.Before(per[j].at) })
		var lockers []string
		var hours []time.Time
		for _, m := range per {
			lockers, hours = append(lockers, m.locker), append(hours, m.at)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(rollup1hSQL, `JOIN unnest($1::text[], $2::timestamptz[]) AS d(locker_id, hour)
			ON r.locker_id = d.locker_id AND r.bucket >= d.hour AND r.bucket < d.hour + interval '1 hour'
			WHERE r.bucket >= $3 AND r.bucket < $4`), lockers, hours, hours[0], hours[len(hours)-1].Add(time.Hour)); err != nil {
			return fmt.Errorf("rollup of late hours: %w", err)
		}
		return nil
	})
}
