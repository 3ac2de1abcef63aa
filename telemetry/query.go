package telemetry

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/protocol"
)

// Point is one point of a series: the bucket starting at T (or one raw
// sample, then Avg = Min = Max and N = 1).
type Point struct {
	T             time.Time
	Avg, Min, Max float64
	N             int64
}

// Series is one metric of one locker over a time range.
type Series struct {
	LockerID, Metric string
	Source           string        // "raw", "1m" or "1h": the table the points come from
	Step             time.Duration // bucket width; 0: raw samples as they are
	Points           []Point
}

// Query limits.
const (
	MaxQueryRange   = 400 * 24 * time.Hour
	MaxQueryPoints  = 10_000
	autoPoints      = 1000          // step 0 picks a step giving at most about this many points
	rawPointsWithin = 6 * time.Hour // step 0 over at most this range returns raw samples
)

// steps step 0 chooses from.
var niceSteps = []time.Duration{
	10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// Store answers telemetry queries.
type Store struct {
	pool *pgxpool.Pool
	ret  Retention
	now  func() time.Time
}

// NewStore returns the read side of the telemetry tables; ret is the
// retention the hub keeps (zero fields take the defaults), which tells Series
// which table still covers a range.
func NewStore(pool *pgxpool.Pool, ret Retention) *Store {
	ret.defaults()
	return &Store{pool: pool, ret: ret, now: time.Now}
}

// Series returns metric of lockerID over [from, to) in buckets of step
// (aligned to the Unix epoch, UTC), each with the average, minimum, maximum
// and count of the samples in it; buckets without samples are absent.
//
// Step 0 picks the step: raw samples when the range is at most 6 h,
// otherwise the smallest of 10 s, 15 s, 30 s, 1 m, 2 m, 5 m, … 1 h, 2 h, …
// 24 h giving at most about 1,000 points. The source is the coarsest table
// whose resolution is at most the step: raw samples below 1 minute, 1-minute
// rollups below 1 hour, else 1-hour rollups; but a range that starts before
// a table's retention (Retention.Raw, Retention.Rollup1m back from now) is
// read from the next coarser table, with the step raised to its resolution
// (1 minute, 1 hour) if it was finer, so a long range is not cut at the
// 1-minute retention. The newest minutes or hours, which the roller has not
// rolled up yet, are taken from the finer table, so a series reaches up to the
// last stored sample. Ranges older than the 1-hour retention have no points.
//
// Errors wrap ErrBadQuery for from ≥ to, ranges over 400 days, steps giving
// more than 10,000 points, a negative step or a metric name that cannot be one.
func (s *Store) Series(ctx context.Context, lockerID, metric string, from, to time.Time, step time.Duration) (Series, error) {
	from, to = from.UTC(), to.UTC()
	switch {
	case !from.Before(to):
		return Series{}, fmt.Errorf("%w: from %s is not before to %s", ErrBadQuery, from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > MaxQueryRange:
		return Series{}, fmt.Errorf("%w: a range of %v is longer than 400 days", ErrBadQuery, to.Sub(from))
	case step < 0:
		return Series{}, fmt.Errorf("%w: negative step %v", ErrBadQuery, step)
	case step > 0 && int64(to.Sub(from)/step) > MaxQueryPoints:
		return Series{}, fmt.Errorf("%w: step %v gives more than %d points over %v", ErrBadQuery, step, MaxQueryPoints, to.Sub(from))
	case !protocol.ValidMetricName(metric):
		return Series{}, fmt.Errorf("%w: %q is not a metric name", ErrBadQuery, metric)
	}
	out := Series{LockerID: lockerID, Metric: metric, Points: []Point{}}
	now := s.now()
	rawCovers := !from.Before(now.Add(-s.ret.Raw))
	minutesCover := !from.Before(now.Add(-s.ret.Rollup1m))
	if step == 0 {
		if to.Sub(from) <= rawPointsWithin && rawCovers {
			out.Source = "raw"
			return out, s.rawPoints(ctx, &out, from, to)
		}
		step = niceSteps[len(niceSteps)-1]
		for _, st := range niceSteps {
			if to.Sub(from)/st <= autoPoints {
				step = st
				break
			}
		}
	}
	if step < time.Minute && !rawCovers {
		step = time.Minute
	}
	if step < time.Hour && !minutesCover {
		step = time.Hour
	}
	out.Step = step
	var sql string
	switch {
	case step < time.Minute:
		out.Source, sql = "raw", rawBucketsSQL
	case step < time.Hour:
		out.Source, sql = "1m", rollup1mBucketsSQL
	default:
		out.Source, sql = "1h", rollup1hBucketsSQL
	}
	rows, err := s.pool.Query(ctx, sql, lockerID, metric, from, to, step)
	if err != nil {
		return Series{}, fmt.Errorf("telemetry series: %w", err)
	}
	var p Point
	var sum float64
	_, err = pgx.ForEachRow(rows, []any{&p.T, &p.Min, &p.Max, &sum, &p.N}, func() error {
		p.T = p.T.UTC()
		p.Avg = sum / float64(p.N)
		out.Points = append(out.Points, p)
		return nil
	})
	if err != nil {
		return Series{}, fmt.Errorf("telemetry series: %w", err)
	}
	return out, nil
}

func (s *Store) rawPoints(ctx context.Context, out *Series, from, to time.Time) error {
	rows, err := s.pool.Query(ctx, `SELECT ts, (m->>$2)::float8 FROM telemetry_samples
		WHERE locker_id = $1 AND ts >= $3 AND ts < $4 AND m ? $2 ORDER BY ts, boot, seq`, out.LockerID, out.Metric, from, to)
	if err != nil {
		return fmt.Errorf("telemetry series: %w", err)
	}
	var t time.Time
	var v float64
	_, err = pgx.ForEachRow(rows, []any{&t, &v}, func() error {
		out.Points = append(out.Points, Point{T: t.UTC(), Avg: v, Min: v, Max: v, N: 1})
		return nil
	})
	if err != nil {
		return fmt.Errorf("telemetry series: %w", err)
	}
	return nil
}

// The bucketed queries: $1 locker, $2 metric, $3 from, $4 to, $5 step.
var (
	rawBucketsSQL = `SELECT date_bin($5::interval, ts, timestamptz '1970-01-01 00:00:00+00') AS b,
		min(v), max(v), sum(v), count(*)
		FROM (SELECT ts, (m->>$2)::float8 AS v FROM telemetry_samples
			WHERE locker_id = $1 AND ts >= $3 AND ts < $4 AND m ? $2) s
		GROUP BY b ORDER BY b`

	// 1-minute rollups, and for the minutes after the newest one the raw
	// samples (the roller runs a little behind).
	rollup1mBucketsSQL = `WITH r AS (
			SELECT bucket, (a->>0)::float8 AS min, (a->>1)::float8 AS max, (a->>2)::float8 AS sum, (a->>3)::bigint AS n
			FROM telemetry_rollup_1m, LATERAL (SELECT ` + aggArrayOfMetric + ` AS a) x
			WHERE locker_id = $1 AND bucket >= $3 AND bucket < $4 AND agg ? $2),
		edge AS (SELECT coalesce(max(bucket) + interval '1 minute', $3) AS t FROM r),
		fresh AS (
			SELECT date_trunc('minute', s.ts, 'UTC') AS bucket, min(v) AS min, max(v) AS max, sum(v) AS sum, count(*) AS n
			FROM edge, telemetry_samples s, LATERAL (SELECT (s.m->>$2)::float8 AS v) x
			WHERE s.locker_id = $1 AND s.ts >= $3 AND s.ts < $4 AND s.ts >= edge.t AND s.m ? $2
			GROUP BY 1),
		u AS (SELECT * FROM r UNION ALL SELECT * FROM fresh)
		SELECT date_bin($5::interval, bucket, timestamptz '1970-01-01 00:00:00+00') AS b, min(min), max(max), sum(sum), sum(n)::bigint
		FROM u GROUP BY b ORDER BY b`

	// 1-hour rollups, and for the hours after the newest one the 1-minute
	// rollups.
	rollup1hBucketsSQL = `WITH r AS (
			SELECT bucket, (a->>0)::float8 AS min, (a->>1)::float8 AS max, (a->>2)::float8 AS sum, (a->>3)::bigint AS n
			FROM telemetry_rollup_1h, LATERAL (SELECT ` + aggArrayOfMetric + ` AS a) x
			WHERE locker_id = $1 AND bucket >= $3 AND bucket < $4 AND agg ? $2),
		edge AS (SELECT coalesce(max(bucket) + interval '1 hour', $3) AS t FROM r),
		fresh AS (
			SELECT date_trunc('hour', m.bucket, 'UTC') AS bucket, min((a->>0)::float8) AS min, max((a->>1)::float8) AS max,
				sum((a->>2)::float8) AS sum, sum((a->>3)::bigint)::bigint AS n
			FROM edge, telemetry_rollup_1m m, LATERAL (SELECT ` + aggArrayOfMetric + ` AS a) x
			WHERE m.locker_id = $1 AND m.bucket >= $3 AND m.bucket < $4 AND m.bucket >= edge.t AND m.agg ? $2
			GROUP BY 1),
		u AS (SELECT * FROM r UNION ALL SELECT * FROM fresh)
		SELECT date_bin($5::interval, bucket, timestamptz '1970-01-01 00:00:00+00') AS b, min(min), max(max), sum(sum), sum(n)::bigint
		FROM u GROUP BY b ORDER BY b`
)

// aggArrayOfMetric is metric $2's aggregate in a rollup row's agg as
// [min, max, sum, n] (see aggArray).
var aggArrayOfMetric = aggArray("agg->$2")

// Metrics returns the names of the metrics a locker sent in the last 24 h,
// sorted; when it sent none, those in its 1-hour rollups.
func (s *Store) Metrics(ctx context.Context, lockerID string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT k FROM telemetry_samples, jsonb_object_keys(m) AS k
		WHERE locker_id = $1 AND ts >= now() - interval '24 hours' ORDER BY k`, lockerID)
	if err != nil {
		return nil, fmt.Errorf("telemetry metrics: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("telemetry metrics: %w", err)
	}
	if len(names) > 0 {
		return names, nil
	}
	rows, err = s.pool.Query(ctx, `SELECT DISTINCT k FROM telemetry_rollup_1h, jsonb_object_keys(agg) AS k WHERE locker_id = $1 ORDER BY k`, lockerID)
	if err != nil {
		return nil, fmt.Errorf("telemetry metrics: %w", err)
	}
	names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("telemetry metrics: %w", err)
	}
	return append([]string{}, names...), nil
}
