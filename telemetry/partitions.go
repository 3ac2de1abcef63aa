package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// maintainLock is the advisory lock that keeps two hubs from creating and
// dropping partitions at the same time.
const maintainLock = 0x74656c656d31 // "telem1"

// partitioned is one partitioned table and how it is cut.
type partitioned struct {
	table   string
	monthly bool // else daily
	keep    func(Retention) time.Duration
}

var partitionedTables = []partitioned{
	{table: "telemetry_samples", keep: func(r Retention) time.Duration { return r.Raw }},
	{table: "telemetry_rollup_1m", keep: func(r Retention) time.Duration { return r.Rollup1m }},
	{table: "telemetry_rollup_1h", monthly: true, keep: func(r Retention) time.Duration { return r.Rollup1h }},
}

// start returns the start (UTC) of the partition holding t.
func (p partitioned) start(t time.Time) time.Time {
	t = t.UTC()
	if p.monthly {
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func (p partitioned) next(start time.Time) time.Time {
	if p.monthly {
		return start.AddDate(0, 1, 0)
	}
	return start.AddDate(0, 0, 1)
}

func (p partitioned) name(start time.Time) string {
	if p.monthly {
		return p.table + "_" + start.Format("200601")
	}
	return p.table + "_" + start.Format("20060102")
}

// parse returns the start of the partition called name ("" when it is not one of ours).
func (p partitioned) parse(name string) (time.Time, bool) {
	suffix, ok := strings.CutPrefix(name, p.table+"_")
	if !ok {
		return time.Time{}, false
	}
	layout := "20060102"
	if p.monthly {
		layout = "200601"
	}
	t, err := time.Parse(layout, suffix)
	return t, err == nil && len(suffix) == len(layout)
}

// window is the range of sample timestamps that have a raw partition.
type window struct{ from, to time.Time }

// partitions creates and drops the time partitions of every telemetry
// table, and knows which sample timestamps can be stored.
type partitions struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	ret  Retention
	win  atomic.Pointer[window]
	full atomic.Bool // a maintain over the whole retention succeeded
}

// nearBack is how far back maintainNear creates partitions at start: the
// samples a restart brings (lockers' backlogs of a short outage) land there;
// the rest of the retention window follows in the background.
const nearBack = 3 * 24 * time.Hour

func newPartitions(pool *pgxpool.Pool, log *slog.Logger, ret Retention) *partitions {
	p := &partitions{pool: pool, log: log, ret: ret}
	p.win.Store(&window{})
	return p
}

// window returns the range of timestamps a raw partition exists for, as
// last seen (an empty window before the first maintain or refresh).
func (p *partitions) window() window { return *p.win.Load() }

// maintain creates the partitions from the oldest raw day still kept up to
// now+Ahead for every table, drops those past their retention, and refreshes
// the window. Idempotent; under an advisory lock so that two hubs take turns.
func (p *partitions) maintain(ctx context.Context, now time.Time) error {
	if err := p.ensure(ctx, now, p.ret.Raw, true); err != nil {
		return err
	}
	p.full.Store(true)
	return nil
}

// maintainNear creates only the partitions from nearBack ago up to
// now+Ahead, and drops nothing: what a start needs at once (each partition
// costs a few milliseconds of DDL, and the retention window holds about 70).
// Until a maintain has succeeded, complete reports false and the ingest
// withholds the acknowledgement of samples older than the window instead of
// dropping them.
func (p *partitions) maintainNear(ctx context.Context, now time.Time) error {
	return p.ensure(ctx, now, min(nearBack, p.ret.Raw), false)
}

// complete reports whether the partitions cover the whole retention window
// (a maintain succeeded since start), so that a sample older than the window
// is past its retention rather than waiting for its partition.
func (p *partitions) complete() bool { return p.full.Load() }

func (p *partitions) ensure(ctx context.Context, now time.Time, back time.Duration, drop bool) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("telemetry partitions: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, maintainLock); err != nil {
		return fmt.Errorf("telemetry partitions: lock: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, maintainLock); err != nil {
			conn.Conn().Close(ctx) // never hand a connection holding the lock back to the pool
		}
	}()
	created, dropped := 0, 0
	for _, pt := range partitionedTables {
		existing, err := listPartitions(ctx, conn.Conn(), pt)
		if err != nil {
			return err
		}
		have := map[time.Time]bool{}
		for _, s := range existing {
			have[s] = true
		}
		for s := pt.start(now.Add(-back)); s.Before(now.Add(p.ret.Ahead)); s = pt.next(s) {
			if have[s] {
				continue
			}
			if err := ddl(ctx, conn.Conn(), fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')`,
				pgx.Identifier{pt.name(s)}.Sanitize(), pt.table, s.Format(time.RFC3339), pt.next(s).Format(time.RFC3339))); err != nil {
				return err
			}
			created++
		}
		if !drop {
			continue
		}
		cutoff := now.Add(-pt.keep(p.ret))
		for _, s := range existing {
			if pt.next(s).After(cutoff) {
				continue
			}
			if err := ddl(ctx, conn.Conn(), `DROP TABLE IF EXISTS `+pgx.Identifier{pt.name(s)}.Sanitize()); err != nil {
				return err
			}
			dropped++
		}
	}
	if created > 0 || dropped > 0 {
		p.log.Info("telemetry partitions maintained", "created", created, "dropped", dropped, "whole_retention", drop)
	}
	return p.refreshOn(ctx, conn.Conn())
}

// ddl runs one statement in its own short transaction, waiting at most 10 s
// for its lock: a partition DDL queued behind a long query would stall every
// writer queued behind it.
func ddl(ctx context.Context, conn *pgx.Conn, sql string) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
	if err != nil {
		return fmt.Errorf("telemetry partitions: %s: %w", sql, err)
	}
	return nil
}

// refresh reads which raw partitions exist (another hub may have changed them).
func (p *partitions) refresh(ctx context.Context) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return p.refreshOn(ctx, conn.Conn())
}

func (p *partitions) refreshOn(ctx context.Context, conn *pgx.Conn) error {
	pt := partitionedTables[0]
	starts, err := listPartitions(ctx, conn, pt)
	if err != nil {
		return err
	}
	// The window is the contiguous run of days ending with the newest one:
	// maintain creates every day in between, so a gap only appears while
	// somebody drops partitions by hand.
	w := window{}
	for i := len(starts) - 1; i >= 0; i-- {
		if w.from.IsZero() {
			w.from, w.to = starts[i], pt.next(starts[i])
			continue
		}
		if !pt.next(starts[i]).Equal(w.from) {
			break
		}
		w.from = starts[i]
	}
	p.win.Store(&w)
	return nil
}

// listPartitions returns the starts of the partitions of pt, oldest first.
func listPartitions(ctx context.Context, conn *pgx.Conn, pt partitioned) ([]time.Time, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = $1::regclass`, pt.table)
	if err != nil {
		return nil, fmt.Errorf("telemetry partitions of %s: %w", pt.table, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("telemetry partitions of %s: %w", pt.table, err)
	}
	var starts []time.Time
	for _, n := range names {
		if s, ok := pt.parse(n); ok {
			starts = append(starts, s)
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	return starts, nil
}

// run maintains the partitions every interval until ctx ends, the first
// time at once when the start created only the near ones; after a failure
// it tries again within a minute.
func (p *partitions) run(ctx context.Context, every time.Duration) {
	wait := every
	if !p.complete() {
		wait = 0
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = every
		if err := p.maintain(ctx, time.Now()); err != nil && ctx.Err() == nil {
			p.log.Error("telemetry partition maintenance failed; retrying in a minute", "error", err)
			wait = min(every, time.Minute)
		}
	}
}
