package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Inbound is a telemetry message with the function that settles it: nil once
// it is durable (or acknowledged without being stored: a duplicate, or too
// old to keep), an error wrapping protocol.ErrInvalid when it is refused, or
// one wrapping ErrOverloaded when it is not taken now (no PUBACK; the locker
// sends it again).
type Inbound struct {
	LockerID string
	Payload  []byte
	Received time.Time
	Done     func(error)
}

// item is one sample on its way to a writer.
type item struct {
	lockerID string
	s        Sample
	m        []byte // s.M as JSON
	size     int64  // what it counts against Config.QueueBytes
	done     func(error)
}

// lateAfter: samples of a minute older than this (at commit) mark only their
// locker's minute dirty, not every locker's (see telemetry_rollup_dirty).
const lateAfter = 10 * time.Minute

// Ingest takes telemetry samples, stores them in batches and acknowledges
// each only after its batch committed (DESIGN decisions 8, 10, 11). It owns
// its writers (each with its own connection), the partition maintenance and
// the roller: Start it, then Run it until the broker has closed.
//
// Policy when full: the queue is bounded by samples and bytes; a sample that
// does not fit is settled with ErrOverloaded at once, so the broker withholds
// its PUBACK and disconnects the locker, which resends it later. While
// PostgreSQL is away, writers keep their batch and retry it: nothing is
// acknowledged, nothing dropped, and the queue fills up to its bound.
type Ingest struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	cfg    Config
	m      *ingestMetrics
	parts  *partitions
	roller *roller
	known  map[string]bool

	queue       chan item
	queuedBytes atomic.Int64
	withheld    atomic.Int64 // taken, not settled yet
	stopMu      sync.RWMutex // Submit holds it for reading while it queues
	stopped     bool

	latestMu  sync.RWMutex
	latest    map[string]Sample
	observers []func(lockerID string, s Sample)

	healthMu sync.Mutex
	lastErr  error
}

// NewIngest returns the ingest; add observers, Start it, then Run it.
func NewIngest(pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer, cfg Config) (*Ingest, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	in := &Ingest{pool: pool, log: log, cfg: cfg, known: map[string]bool{},
		queue: make(chan item, cfg.QueueSamples), latest: map[string]Sample{}}
	for _, name := range cfg.KnownMetrics {
		in.known[name] = true
	}
	in.m = newIngestMetrics(reg, in)
	in.parts = newPartitions(pool, log, cfg.Retention)
	in.roller = newRoller(pool, log, in.m, cfg, in.parts.complete)
	return in, nil
}

// OnStored adds an observer told, after the commit and on a writer's
// goroutine, of every stored sample that is newer (by boot, seq) than what
// its locker sent before: the latest value as Latest returns it, not late or
// repeated ones. Writers run in parallel, so fn may be called concurrently
// (for different batches); it must not block. Call it before Run.
func (in *Ingest) OnStored(fn func(lockerID string, s Sample)) {
	in.observers = append(in.observers, fn)
}

// Start creates the partitions that are due and loads every locker's latest
// sample of the last days. With background maintenance (Config.MaintainEvery
// > 0) it creates only those of the last 3 days and ahead, and Run creates
// the older ones at once: until then a sample older than that is not
// acknowledged (the locker sends it again), neither stored nor dropped.
func (in *Ingest) Start(ctx context.Context) error {
	maintain := in.parts.maintain
	if in.cfg.MaintainEvery > 0 {
		maintain = in.parts.maintainNear
	}
	if err := maintain(ctx, time.Now()); err != nil {
		return err
	}
	return in.loadLatest(ctx, time.Now().Add(-3*24*time.Hour))
}

func (in *Ingest) loadLatest(ctx context.Context, since time.Time) error {
	latest, err := in.queryLatest(ctx, since)
	if err != nil {
		return err
	}
	in.latestMu.Lock()
	in.latest = latest
	in.latestMu.Unlock()
	return nil
}

// queryLatest reads every locker's latest sample since a time.
func (in *Ingest) queryLatest(ctx context.Context, since time.Time) (map[string]Sample, error) {
	// A skip scan over the unique index: one probe per locker instead of
	// sorting days of samples.
	rows, err := in.pool.Query(ctx, `WITH RECURSIVE l AS (
			(SELECT locker_id FROM telemetry_samples WHERE ts >= $1 ORDER BY locker_id LIMIT 1)
			UNION ALL
			SELECT (SELECT s.locker_id FROM telemetry_samples s WHERE s.locker_id > l.locker_id AND s.ts >= $1 ORDER BY s.locker_id LIMIT 1)
			FROM l WHERE l.locker_id IS NOT NULL)
		SELECT x.locker_id, x.ts, x.boot, x.seq, x.received, x.m FROM l, LATERAL (
			SELECT * FROM telemetry_samples s WHERE s.locker_id = l.locker_id AND s.ts >= $1
			ORDER BY s.ts DESC, s.boot DESC, s.seq DESC LIMIT 1) x
		WHERE l.locker_id IS NOT NULL`, since)
	if err != nil {
		return nil, fmt.Errorf("load latest telemetry: %w", err)
	}
	latest, err := scanLatest(rows)
	if err != nil {
		return nil, fmt.Errorf("load latest telemetry: %w", err)
	}
	return latest, nil
}

// RefreshLatest reads the latest stored samples of lockers another hub node
// took (nil: every locker's of the last days) and keeps those newer than
// what this node has (docs/scaling.md).
func (in *Ingest) RefreshLatest(ctx context.Context, lockerIDs []string) error {
	if lockerIDs == nil {
		got, err := in.queryLatest(ctx, time.Now().Add(-3*24*time.Hour))
		if err != nil {
			return err
		}
		in.mergeLatest(got)
		return nil
	}
	rows, err := in.pool.Query(ctx, `SELECT x.locker_id, x.ts, x.boot, x.seq, x.received, x.m FROM unnest($1::text[]) AS l(id), LATERAL (
			SELECT * FROM telemetry_samples s WHERE s.locker_id = l.id AND s.ts >= $2
			ORDER BY s.ts DESC, s.boot DESC, s.seq DESC LIMIT 1) x`, lockerIDs, time.Now().Add(-3*24*time.Hour))
	if err != nil {
		return fmt.Errorf("refresh latest telemetry: %w", err)
	}
	got, err := scanLatest(rows)
	if err != nil {
		return fmt.Errorf("refresh latest telemetry: %w", err)
	}
	in.mergeLatest(got)
	return nil
}

// mergeLatest keeps each sample that is newer than the one held.
func (in *Ingest) mergeLatest(got map[string]Sample) {
	in.latestMu.Lock()
	defer in.latestMu.Unlock()
	for id, s := range got {
		if cur, ok := in.latest[id]; !ok || s.newer(cur) {
			in.latest[id] = s
		}
	}
}

func scanLatest(rows pgx.Rows) (map[string]Sample, error) {
	latest := map[string]Sample{}
	var id string
	var s Sample
	var boot, seq int64
	_, err := pgx.ForEachRow(rows, []any{&id, &s.TS, &boot, &seq, &s.Received, &s.M}, func() error {
		s.Boot, s.Seq = uint32(boot), uint64(seq)
		s.TS, s.Received = s.TS.UTC(), s.Received.UTC()
		latest[id] = s
		s.M = nil // a fresh map for the next row
		return nil
	})
	return latest, err
}

// Latest returns the newest stored sample of a locker (by boot, seq).
func (in *Ingest) Latest(lockerID string) (Sample, bool) {
	in.latestMu.RLock()
	defer in.latestMu.RUnlock()
	s, ok := in.latest[lockerID]
	return s, ok
}

// FleetLatest returns, for every locker whose latest sample has metric, that
// value, ordered by locker ID.
func (in *Ingest) FleetLatest(metric string) []LatestValue {
	in.latestMu.RLock()
	out := make([]LatestValue, 0, len(in.latest))
	for id, s := range in.latest {
		if v, ok := s.M[metric]; ok {
			out = append(out, LatestValue{LockerID: id, TS: s.TS, Value: v})
		}
	}
	in.latestMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].LockerID < out[j].LockerID })
	return out
}

// Ready returns an error while the last write attempt failed (PostgreSQL is
// away and samples wait), for /readyz.
func (in *Ingest) Ready(context.Context) error {
	in.healthMu.Lock()
	defer in.healthMu.Unlock()
	if in.lastErr != nil {
		return fmt.Errorf("telemetry writes are failing: %w", in.lastErr)
	}
	return nil
}

func (in *Ingest) setHealth(err error) {
	in.healthMu.Lock()
	in.lastErr = err
	in.healthMu.Unlock()
	if err == nil {
		in.m.dbUp.Set(1)
	} else {
		in.m.dbUp.Set(0)
	}
}

// Submit checks a sample on the caller's goroutine (the MQTT read loop) and
// queues it for a writer. It never blocks; it may settle the message at once:
// invalid, unknown metric (policy refuse) or ts too far ahead → an error
// wrapping protocol.ErrInvalid; older than the oldest partition or the raw
// retention → nil, not stored (counted as dropped "too_old"); queue full or
// hub stopping → an error wrapping ErrOverloaded.
func (in *Ingest) Submit(msg Inbound) {
	in.m.received.Inc()
	t, err := protocol.DecodeTelemetry(msg.Payload)
	if err != nil {
		in.refuse(msg, "payload", err)
		return
	}
	if in.cfg.UnknownMetrics == UnknownRefuse {
		for name := range t.M {
			if !in.known[name] {
				in.refuse(msg, "unknown_metric", fmt.Errorf("%w: unknown metric %q (this hub refuses metrics it does not know)", protocol.ErrInvalid, name))
				return
			}
		}
	}
	ts := time.UnixMilli(t.TS).UTC()
	now := time.Now()
	if ts.After(now.Add(in.cfg.MaxFuture)) {
		in.refuse(msg, "future", fmt.Errorf("%w: ts %s is more than %v ahead of the hub's clock", protocol.ErrInvalid, ts.Format(time.RFC3339), in.cfg.MaxFuture))
		return
	}
	w := in.parts.window()
	if !ts.Before(w.to) { // partitions ahead are missing: maintenance is failing
		in.overloaded(msg, "no_partition", fmt.Errorf("%w: no partition for ts %s yet", ErrOverloaded, ts.Format(time.RFC3339)))
		return
	}
	if ts.Before(w.from) || ts.Before(now.Add(-in.cfg.Retention.Raw)) {
		if !in.parts.complete() && !ts.Before(now.Add(-in.cfg.Retention.Raw)) {
			// Inside the retention, but its partition is still to be
			// created by the maintenance that follows a start.
			in.overloaded(msg, "no_partition", fmt.Errorf("%w: no partition for ts %s yet", ErrOverloaded, ts.Format(time.RFC3339)))
			return
		}
		in.m.dropped.WithLabelValues("too_old").Inc()
		msg.Done(nil)
		return
	}
	it := item{lockerID: msg.LockerID, done: msg.Done, size: int64(len(msg.Payload)),
		s: Sample{TS: ts, Boot: t.Boot, Seq: t.Seq, Received: msg.Received.UTC(), M: t.M}}
	it.m = appendMetrics(make([]byte, 0, 16+24*len(t.M)), t.M)

	in.stopMu.RLock()
	defer in.stopMu.RUnlock()
	if in.stopped {
		in.overloaded(msg, "stopping", fmt.Errorf("%w: the hub is stopping", ErrOverloaded))
		return
	}
	if in.queuedBytes.Add(it.size) > in.cfg.QueueBytes {
		in.queuedBytes.Add(-it.size)
		in.overloaded(msg, "queue_full", fmt.Errorf("%w: %d bytes queued", ErrOverloaded, in.cfg.QueueBytes))
		return
	}
	in.withheld.Add(1)
	select {
	case in.queue <- it:
	default:
		in.withheld.Add(-1)
		in.queuedBytes.Add(-it.size)
		in.overloaded(msg, "queue_full", fmt.Errorf("%w: %d samples queued", ErrOverloaded, in.cfg.QueueSamples))
	}
}

func (in *Ingest) refuse(msg Inbound, reason string, err error) {
	in.m.rejected.WithLabelValues(reason).Inc()
	msg.Done(err)
}

func (in *Ingest) overloaded(msg Inbound, reason string, err error) {
	in.m.notTaken.WithLabelValues(reason).Inc()
	msg.Done(err)
}

// appendMetrics writes m as a JSON object (names are plain by
// protocol.ValidMetricName, values finite).
func appendMetrics(b []byte, m map[string]float64) []byte {
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, '}')
}

// Run writes until ctx ends (and runs partition maintenance and the roller
// meanwhile). Then it takes no more samples, writes what is queued within
// Config.Grace, settles what is left with ErrOverloaded (unacknowledged: the
// lockers resend it) and returns once every goroutine it started has ended.
func (in *Ingest) Run(ctx context.Context) {
	graceCtx, cancelGrace := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelGrace()
	stopGrace := context.AfterFunc(ctx, func() {
		in.stopMu.Lock()
		in.stopped = true
		in.stopMu.Unlock()
		time.AfterFunc(in.cfg.Grace, cancelGrace)
	})
	defer stopGrace()

	var wg sync.WaitGroup
	for range in.cfg.Writers {
		wg.Add(1)
		go func() { defer wg.Done(); in.write(ctx, graceCtx) }()
	}
	if in.cfg.MaintainEvery > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); in.parts.run(ctx, in.cfg.MaintainEvery) }()
	}
	if in.cfg.RollEvery > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); in.roller.run(ctx, in.cfg.RollEvery) }()
	}
	wg.Wait()
	// Writers are gone and Submit takes nothing more: settle any leftovers.
	in.stopMu.Lock()
	in.stopped = true
	in.stopMu.Unlock()
	for {
		select {
		case it := <-in.queue:
			in.settle([]item{it}, fmt.Errorf("%w: the hub stopped before the sample was stored", ErrOverloaded))
		default:
			return
		}
	}
}

// Maintain creates and drops partitions as of now (Run does it every
// Config.MaintainEvery).
func (in *Ingest) Maintain(ctx context.Context, now time.Time) error {
	return in.parts.maintain(ctx, now)
}

// RollUp recomputes the rollups of the minutes and hours over by now (Run
// does it every Config.RollEvery) and returns how many minutes it rolled up.
func (in *Ingest) RollUp(ctx context.Context, now time.Time) (int, error) {
	return in.roller.rollOnce(ctx, now)
}

// writer is one writer's connection, with its staging table.
type writer struct {
	in   *Ingest
	conn *pgx.Conn
}

func (in *Ingest) write(ctx, graceCtx context.Context) {
	w := &writer{in: in}
	defer w.close()
	for {
		select {
		case first := <-in.queue:
			w.commitWithRetry(ctx, graceCtx, in.gather(ctx, first, true))
		case <-ctx.Done():
			for {
				select {
				case first := <-in.queue:
					w.commitWithRetry(ctx, graceCtx, in.gather(graceCtx, first, false))
				default:
					return
				}
			}
		}
	}
}

// gather takes up to BatchMax samples, waiting up to BatchWait for them when wait.
func (in *Ingest) gather(ctx context.Context, first item, wait bool) []item {
	batch := make([]item, 1, min(in.cfg.BatchMax, 1+len(in.queue)+64))
	batch[0] = first
	in.queuedBytes.Add(-first.size)
	var timeout <-chan time.Time
	wait = wait && in.cfg.BatchWait > 0
	if wait {
		t := time.NewTimer(in.cfg.BatchWait)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < in.cfg.BatchMax {
		select {
		case it := <-in.queue:
			in.queuedBytes.Add(-it.size)
			batch = append(batch, it)
			continue
		default:
		}
		if !wait {
			return batch
		}
		select {
		case it := <-in.queue:
			in.queuedBytes.Add(-it.size)
			batch = append(batch, it)
		case <-timeout:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// commitWithRetry stores a batch, retrying with backoff (up to 1 s) while
// PostgreSQL is away, until it commits or, after ctx ended, the grace is
// over: then its samples are settled with ErrOverloaded (never acknowledged
// without being stored, never dropped while the hub runs).
func (w *writer) commitWithRetry(ctx, graceCtx context.Context, batch []item) {
	in := w.in
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(graceCtx, in.cfg.CommitTimeout)
		err := w.commit(actx, batch)
		cancel()
		if err == nil {
			in.setHealth(nil)
			if attempt > 1 {
				in.log.Info("telemetry stored again", "attempts", attempt)
			}
			return
		}
		in.m.failures.Inc()
		in.setHealth(err)
		if attempt == 1 || attempt%20 == 0 {
			in.log.Warn("storing telemetry failed; retrying", "samples", len(batch), "attempt", attempt, "error", err)
		}
		if w.conn != nil && (w.conn.IsClosed() || !isServerError(err)) {
			w.close()
		}
		if isNoPartition(err) {
			// The partitions changed under us (another hub dropped old
			// ones, or none exist ahead): look again and let go of the
			// samples that are too old now.
			if err := in.parts.maintain(graceCtx, time.Now()); err != nil {
				in.log.Warn("telemetry partition maintenance failed", "error", err)
			}
			if batch = in.dropTooOld(batch); len(batch) == 0 {
				return
			}
		}
		select {
		case <-graceCtx.Done():
			in.settle(batch, fmt.Errorf("%w: the hub stopped before the sample was stored (%v)", ErrOverloaded, err))
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// dropTooOld acknowledges (without storing) the samples of batch the
// current window no longer takes, and returns the rest.
func (in *Ingest) dropTooOld(batch []item) []item {
	w := in.parts.window()
	keep := batch[:0]
	for _, it := range batch {
		if it.s.TS.Before(w.from) {
			in.m.dropped.WithLabelValues("too_old").Inc()
			in.withheld.Add(-1)
			it.done(nil)
			continue
		}
		keep = append(keep, it)
	}
	return keep
}

func (in *Ingest) settle(batch []item, err error) {
	in.withheld.Add(-int64(len(batch)))
	if err != nil {
		in.m.notTaken.WithLabelValues("stopping").Add(float64(len(batch)))
	}
	for _, it := range batch {
		it.done(err)
	}
}

func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

func isNoPartition(err error) bool {
	// 23514 check_violation: "no partition of relation … found for row".
	return pg.IsCode(err, "23514")
}

func (w *writer) close() {
	if w.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = w.conn.Close(ctx)
		cancel()
		w.conn = nil
	}
}

// connect opens the writer's own connection (with the pool's settings) and
// its staging table, once per connection: a temporary table per batch would
// bloat the catalog. ON COMMIT DELETE ROWS empties it at each commit.
func (w *writer) connect(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, w.in.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE telemetry_staging (
			locker_id text, ts timestamptz, boot bigint, seq bigint, received timestamptz, m jsonb) ON COMMIT DELETE ROWS`); err != nil {
		_ = conn.Close(ctx)
		return fmt.Errorf("telemetry staging table: %w", err)
	}
	w.conn = conn
	return nil
}

var stagingColumns = []string{"locker_id", "ts", "boot", "seq", "received", "m"}

type lockerMinute struct {
	locker string
	minute time.Time
}

// commit stores one batch in one transaction: COPY into the staging table,
// INSERT … ON CONFLICT DO NOTHING into telemetry_samples (a republished
// sample is stored once), mark the minutes it touched for the roller; then,
// committed, updates the latest values, tells observers and settles every
// sample of the batch (duplicates too: they are stored).
func (w *writer) commit(ctx context.Context, batch []item) error {
	in := w.in
	if w.conn == nil {
		if err := w.connect(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	late := start.Add(-lateAfter).Truncate(time.Minute)
	marks := map[lockerMinute]bool{}
	for _, it := range batch {
		m := it.s.TS.Truncate(time.Minute)
		if m.Before(late) {
			marks[lockerMinute{it.lockerID, m}] = true
		} else {
			marks[lockerMinute{"", m}] = true
		}
	}
	minutes := make([]time.Time, 0, len(marks))
	lockers := make([]*string, 0, len(marks))
	for k := range marks {
		minutes = append(minutes, k.minute)
		if k.locker == "" {
			lockers = append(lockers, nil)
		} else {
			lockers = append(lockers, &k.locker)
		}
	}

	var stored int64
	err := pgx.BeginFunc(ctx, w.conn, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"telemetry_staging"}, stagingColumns,
			pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) {
				it := &batch[i]
				return []any{it.lockerID, it.s.TS, int64(it.s.Boot), int64(it.s.Seq), it.s.Received, it.m}, nil
			}))
		if err != nil {
			return fmt.Errorf("copy telemetry: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO telemetry_samples (locker_id, ts, boot, seq, received, m)
			SELECT locker_id, ts, boot, seq, received, m FROM telemetry_staging ON CONFLICT DO NOTHING`)
		if err != nil {
			return fmt.Errorf("store telemetry: %w", err)
		}
		stored = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `INSERT INTO telemetry_rollup_dirty (minute, locker_id)
			SELECT * FROM unnest($1::timestamptz[], $2::text[])`, minutes, lockers); err != nil {
			return fmt.Errorf("mark telemetry minutes: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	in.m.commitSeconds.Observe(time.Since(start).Seconds())
	in.m.batchSize.Observe(float64(len(batch)))
	in.m.stored.Add(float64(stored))
	in.m.duplicates.Add(float64(int64(len(batch)) - stored))

	// Committed: latest values, observers, then the PUBACKs.
	var news []int
	in.latestMu.Lock()
	for i := range batch {
		it := &batch[i]
		if cur, ok := in.latest[it.lockerID]; !ok || it.s.newer(cur) {
			in.latest[it.lockerID] = it.s
			news = append(news, i)
		}
	}
	in.latestMu.Unlock()
	if len(in.observers) > 0 {
		for _, i := range news {
			for _, o := range in.observers {
				o(batch[i].lockerID, batch[i].s)
			}
		}
	}
	in.settle(batch, nil)
	return nil
}
