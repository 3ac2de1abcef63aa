package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Errors of the twin store.
var (
	// ErrOverloaded: the ingest queue is full; the message is not taken (the
	// broker withholds its PUBACK and the locker sends it again).
	ErrOverloaded = errors.New("twin ingest queue is full")
	// ErrStale: an If-Match version that is not the current one.
	ErrStale = errors.New("version is not the current one")
)

// Inbound is a device message for the twin (state or events) with the
// function that settles it once it is durable (nil), invalid or refused.
type Inbound struct {
	LockerID string
	Kind     protocol.Kind
	Payload  []byte
	Received time.Time
	Done     func(error)
}

// item is one unit of work of the writer: a decoded device message or a
// change of the desired configuration.
type item struct {
	in      Inbound
	state   *protocol.State
	event   *protocol.Event
	desired *desiredJob
}

type desiredJob struct {
	lockerID string
	ifMatch  int64 // -1: no precondition
	config   json.RawMessage
	actor    audit.Actor // who asked: recorded in the batch's transaction
	result   chan desiredResult
}

// desiredRecord is a desired configuration in the audit log.
type desiredRecord struct {
	Version int64           `json:"version"`
	Config  json.RawMessage `json:"config"`
}

type desiredResult struct {
	version int64
	err     error
}

// Observer is told about every committed twin change, on the writer's
// goroutine: it must not block.
type Observer func(t *Twin, ch TwinChange)

// Twins holds the live twin of every locker: in memory for reads and the live
// stream, in PostgreSQL as the truth. One goroutine (Run) writes: it takes
// device messages in batches, stores events and twin changes in one
// transaction, and only after the commit changes the twins in memory, tells
// the observers and settles the messages (their PUBACKs).
type Twins struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	m    *twinMetrics

	mu    sync.RWMutex
	twins map[string]*Twin

	queue     chan item
	observers []Observer
	// eventObservers hear every newly stored event after its commit (command
	// confirmations: a door opened with cause "command:<id>").
	eventObservers []func(lockerID string, e protocol.Event)
	// txHooks write what follows from new events in the events' own
	// transaction (command confirmations).
	txHooks []TxEventHook
	// followers hear of twins another node changed (cluster mode): the
	// overview and the desired delivery, not the parcel steps (the node
	// that stored the change took those).
	followers []Observer
	notify    *notifier                        // cluster mode: announce changed twins (nil: a single hub)
	hasCell   func(lockerID, cell string) bool // nil: every cell name is taken
	clocks    *clocks                          // the lockers' clock offsets, from what they send

	batchMax  int
	batchWait time.Duration
	snapEvery int64

	// The writer's health, for judgements that wait on device messages
	// (a door confirmation): since when commits fail (zero: they do not) and
	// when they last came back after failing.
	healthMu     sync.Mutex
	failingSince time.Time
	upSince      time.Time
}

// Stored reports whether every device message the hub has been sent in the
// last d could have been stored by now: the writer is committing and has
// been since at least d ago. While PostgreSQL is away, a locker's message
// waits unacknowledged (in the writer's queue or the locker's outbox) and
// comes in after the outage: what depends on its absence must wait too.
func (t *Twins) Stored(now time.Time, d time.Duration) bool {
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	return t.failingSince.IsZero() && now.Sub(t.upSince) >= d
}

func (t *Twins) noteCommit(err error) {
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	switch {
	case err != nil && t.failingSince.IsZero():
		t.failingSince = time.Now()
	case err == nil && !t.failingSince.IsZero():
		t.failingSince, t.upSince = time.Time{}, time.Now()
	}
}

// TwinsConfig sizes the ingest; zero values take the defaults noted.
type TwinsConfig struct {
	Queue     int           // items waiting for the writer, 65,536
	BatchMax  int           // items per transaction, 512
	BatchWait time.Duration // how long a batch waits to fill beyond what is queued, 0
}

// NewTwins returns the twin store; Load it, add observers, then Run it.
func NewTwins(pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer, cfg TwinsConfig) *Twins {
	if cfg.Queue == 0 {
		cfg.Queue = 1 << 16
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = 512
	}
	t := &Twins{pool: pool, log: log, twins: map[string]*Twin{}, queue: make(chan item, cfg.Queue),
		batchMax: cfg.BatchMax, batchWait: cfg.BatchWait, snapEvery: 50, clocks: newClocks()}
	t.m = newTwinMetrics(reg, func() float64 { return float64(len(t.queue)) })
	return t
}

// SetLayout tells the twins which cells a locker has: reports about other
// cells are ignored (and counted), so a confused locker cannot fill its twin
// with cells that do not exist. Call it before Run.
func (t *Twins) SetLayout(hasCell func(lockerID, cell string) bool) { t.hasCell = hasCell }

// Observe adds an observer of committed changes. Call it before Run.
func (t *Twins) Observe(o Observer) { t.observers = append(t.observers, o) }

// ObserveFollowed adds an observer of twins changed by another hub node and
// read here (cluster mode), on the cluster's goroutine: it must not block.
// Call it before Run.
func (t *Twins) ObserveFollowed(o Observer) { t.followers = append(t.followers, o) }

// ObserveEvents adds an observer of newly stored events (not duplicates),
// told after their commit on the writer's goroutine: it must not block. Call
// it before Run.
func (t *Twins) ObserveEvents(fn func(lockerID string, e protocol.Event)) {
	t.eventObservers = append(t.eventObservers, fn)
}

// LockerEvent is a device event with the locker that sent it.
type LockerEvent struct {
	LockerID string
	Event    protocol.Event
}

// TxEventHook queues on b the statements that write what follows from newly
// stored events; they run in the transaction that stores the events, so both
// commit together. It returns a function to run after the commit (nil: none),
// on the writer's goroutine: it must not block. When a commit fails the hook
// runs again for the retry and the earlier function is dropped.
type TxEventHook func(events []LockerEvent, b *pgx.Batch) (after func())

// HookEvents adds a TxEventHook. Call it before Run.
func (t *Twins) HookEvents(h TxEventHook) { t.txHooks = append(t.txHooks, h) }

// Load reads every twin from PostgreSQL.
func (t *Twins) Load(ctx context.Context) error {
	rows, err := t.pool.Query(ctx, `SELECT locker_id, version, reported, desired, desired_version FROM fleet_twins`)
	if err != nil {
		return fmt.Errorf("load twins: %w", err)
	}
	twins := map[string]*Twin{}
	var id string
	var version, dv int64
	var reported, desired []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &version, &reported, &desired, &dv}, func() error {
		tw, err := scanTwin(&id, &version, &dv, &reported, &desired)
		twins[id] = tw
		return err
	})
	if err != nil {
		return fmt.Errorf("load twins: %w", err)
	}
	t.mu.Lock()
	t.twins = twins
	t.mu.Unlock()
	return nil
}

// Get returns the current twin of a locker (nil when it never reported).
func (t *Twins) Get(lockerID string) *Twin {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.twins[lockerID]
}

// Each calls fn for every twin (under a read lock: fn must be quick).
func (t *Twins) Each(fn func(*Twin)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, tw := range t.twins {
		fn(tw)
	}
}

// Submit validates a device message on the caller's goroutine (the MQTT read
// loop) and queues it for the writer. It never blocks: a full queue settles
// the message with ErrOverloaded.
func (t *Twins) Submit(in Inbound) {
	it := item{in: in}
	var err error
	switch in.Kind {
	case protocol.KindState:
		var s protocol.State
		s, err = protocol.DecodeState(in.Payload)
		it.state = &s
	case protocol.KindEvents:
		var e protocol.Event
		e, err = protocol.DecodeEvent(in.Payload)
		it.event = &e
	default:
		err = fmt.Errorf("%w: the twin does not take %s", protocol.ErrInvalid, in.Kind)
	}
	if err != nil {
		t.m.messages.WithLabelValues(string(in.Kind), "invalid").Inc()
		in.Done(err)
		return
	}
	if !in.Received.IsZero() {
		ts := int64(0)
		if it.state != nil {
			ts = it.state.TS
		} else {
			ts = it.event.TS
		}
		t.clocks.observe(in.LockerID, ts, in.Received)
	}
	select {
	case t.queue <- it:
	default:
		t.m.messages.WithLabelValues(string(in.Kind), "overloaded").Inc()
		in.Done(ErrOverloaded)
	}
}

// ClockOffset is the locker's estimated clock offset (positive: its clock is
// ahead of the hub's) from the state reports and events it sent in the last
// ten minutes, or false without any (DESIGN decision 15).
func (t *Twins) ClockOffset(lockerID string) (time.Duration, bool) {
	return t.clocks.offset(lockerID, time.Now())
}

// SetDesired replaces a locker's desired configuration when ifMatch is its
// current desired version (or -1 for no precondition) and returns the new
// version; ErrStale otherwise.
func (t *Twins) SetDesired(ctx context.Context, lockerID string, ifMatch int64, config json.RawMessage) (int64, error) {
	job := &desiredJob{lockerID: lockerID, ifMatch: ifMatch, config: config, actor: audit.ActorFrom(ctx), result: make(chan desiredResult, 1)}
	select {
	case t.queue <- item{desired: job}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-job.result:
		return r.version, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Run writes batches until ctx ends, then writes what is queued and returns.
func (t *Twins) Run(ctx context.Context) {
	for {
		var first item
		select {
		case first = <-t.queue:
		case <-ctx.Done():
			t.drain()
			return
		}
		batch := t.gather(ctx, first)
		t.commitWithRetry(ctx, batch)
	}
}

// gather takes what is queued behind first, up to batchMax. With no batch
// wait (the default) it does not wait for more: what arrives during a commit
// forms the next batch (group commit), so a quiet ingest commits at once.
func (t *Twins) gather(ctx context.Context, first item) []item {
	batch := []item{first}
	for len(batch) < t.batchMax {
		select {
		case it := <-t.queue:
			batch = append(batch, it)
			continue
		default:
		}
		break
	}
	if t.batchWait <= 0 || len(batch) >= t.batchMax {
		return batch
	}
	timer := time.NewTimer(t.batchWait)
	defer timer.Stop()
	for len(batch) < t.batchMax {
		select {
		case it := <-t.queue:
			batch = append(batch, it)
		case <-timer.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// drain writes what is queued at shutdown, within a few seconds.
func (t *Twins) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case it := <-t.queue:
			t.commitWithRetry(ctx, t.gather(ctx, it))
		default:
			return
		}
	}
}

// commitWithRetry retries a failed batch (the database is away) with backoff;
// its messages stay unacknowledged meanwhile. When ctx ends first they are
// left unsettled: the locker resends them after its reconnect.
func (t *Twins) commitWithRetry(ctx context.Context, batch []item) {
	backoff := 50 * time.Millisecond
	for {
		err := t.commit(ctx, batch)
		t.noteCommit(err)
		if err == nil {
			return
		}
		t.m.failures.Inc()
		t.log.Warn("storing device messages failed; retrying", "messages", len(batch), "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			for _, it := range batch {
				if it.desired != nil {
					it.desired.result <- desiredResult{err: err}
				}
			}
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

type eventKey struct{ locker, id string }

func (t *Twins) commit(ctx context.Context, batch []item) error {
	start := time.Now()
	now := time.Now().UTC()
	work := map[string]*Twin{}
	changes := map[string]*TwinChange{}
	desiredChanged := map[string]bool{}
	results := make([]desiredResult, len(batch))
	var stored map[string]*Twin // cluster mode: the stored twins of the batch, locked
	twin := func(id string) *Twin {
		if w := work[id]; w != nil {
			return w
		}
		var w *Twin
		old := t.Get(id)
		if st := stored[id]; st != nil && (old == nil || st.Version > old.Version) {
			old = st // another node wrote it since
		}
		if old != nil {
			w = old.clone()
		} else {
			w = &Twin{LockerID: id, Reported: Reported{Cells: map[string]*CellState{}}}
		}
		work[id] = w
		return w
	}
	change := func(id string) *TwinChange {
		if changes[id] == nil {
			changes[id] = &TwinChange{}
		}
		return changes[id]
	}

	// Two round trips at most: BEGIN with the events (their RETURNING says
	// which are new: only those change the twin), then the twin changes,
	// what the hooks derive from the events, and COMMIT.
	p, err := pg.BeginPipeline(ctx, t.pool)
	if err != nil {
		return err
	}
	defer p.Close()
	fresh := map[eventKey]bool{}
	hasEvents := queueEvents(nil, batch, nil)
	if hasEvents || t.notify != nil {
		b := &pgx.Batch{}
		if hasEvents {
			queueEvents(b, batch, fresh)
		}
		if t.notify != nil {
			// Several nodes: another one may have written one of these twins
			// (a desired change made there): lock them and start from the
			// newer of memory and the database.
			stored = map[string]*Twin{}
			queueLockTwins(b, batch, stored)
		}
		if err := p.Send(ctx, b, false); err != nil {
			return fmt.Errorf("store events: %w", err)
		}
	}
	b := &pgx.Batch{}
	var afters []func()
	err = func(tx pg.Queue) error {
		if len(fresh) > 0 && len(t.txHooks) > 0 {
			var events []LockerEvent
			for _, it := range batch {
				if it.event != nil && fresh[eventKey{it.in.LockerID, it.event.ID}] {
					events = append(events, LockerEvent{LockerID: it.in.LockerID, Event: *it.event})
				}
			}
			for _, h := range t.txHooks {
				if after := h(events, tx.Batch); after != nil {
					afters = append(afters, after)
				}
			}
		}
		for i, it := range batch {
			switch {
			case it.state != nil:
				t.dropUnknownCells(it.in.LockerID, it.state)
				twin(it.in.LockerID).applyState(*it.state, change(it.in.LockerID))
			case it.event != nil && fresh[eventKey{it.in.LockerID, it.event.ID}]:
				if it.event.Cell != "" && t.hasCell != nil && !t.hasCell(it.in.LockerID, it.event.Cell) {
					t.m.unknownCells.Inc()
					continue // stored as reported, but not in the twin
				}
				twin(it.in.LockerID).applyEvent(*it.event, change(it.in.LockerID))
			case it.desired != nil:
				j := it.desired
				w := twin(j.lockerID)
				if j.ifMatch >= 0 && j.ifMatch != w.DesiredVersion {
					results[i] = desiredResult{version: w.DesiredVersion, err: fmt.Errorf("%w: desired version is %d, not %d", ErrStale, w.DesiredVersion, j.ifMatch)}
					continue
				}
				before := desiredRecord{Version: w.DesiredVersion, Config: w.Desired}
				w.Desired = j.config
				w.DesiredVersion++
				if err := audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "desired", ObjectID: j.lockerID,
					Before: before, After: desiredRecord{Version: w.DesiredVersion, Config: w.Desired}, Actor: j.actor}); err != nil {
					return err
				}
				desiredChanged[j.lockerID] = true
				results[i] = desiredResult{version: w.DesiredVersion}
			}
		}
		var ids, docs []string
		var versions []int64
		var reported [][]byte
		var desired [][]byte
		var dversions []int64
		var snapshot []bool
		for id, w := range work {
			ch := changes[id]
			if (ch == nil || ch.empty()) && !desiredChanged[id] {
				continue
			}
			w.Version++
			if ch != nil && !ch.empty() {
				w.Reported.UpdatedAt = now
			}
			rep, err := json.Marshal(w.Reported)
			if err != nil {
				return err
			}
			des := w.Desired
			if len(des) == 0 {
				des = json.RawMessage(`{}`)
			}
			ids, versions, reported, desired, dversions = append(ids, id), append(versions, w.Version), append(reported, rep), append(desired, des), append(dversions, w.DesiredVersion)
			snap := w.Version%t.snapEvery == 1
			var doc []byte
			if snap {
				doc, err = json.Marshal(w.View().Reported)
			} else {
				if ch == nil {
					ch = &TwinChange{}
				}
				doc, err = json.Marshal(ch)
			}
			if err != nil {
				return err
			}
			docs, snapshot = append(docs, string(doc)), append(snapshot, snap)
		}
		if len(ids) == 0 {
			return nil
		}
		tx.Batch.Queue(`INSERT INTO fleet_twins (locker_id, version, reported, desired, desired_version, updated_at)
			SELECT u.id, u.v, u.r, u.d, u.dv, $6 FROM unnest($1::text[], $2::bigint[], $3::jsonb[], $4::jsonb[], $5::bigint[]) AS u(id, v, r, d, dv)
			ON CONFLICT (locker_id) DO UPDATE SET version = excluded.version, reported = excluded.reported,
				desired = excluded.desired, desired_version = excluded.desired_version, updated_at = excluded.updated_at`,
			ids, versions, reported, desired, dversions, now)
		tx.Batch.Queue(`INSERT INTO fleet_twin_history (locker_id, version, at, snapshot, doc)
			SELECT u.id, u.v, $5, u.s, u.d FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::jsonb[]) AS u(id, v, s, d)`,
			ids, versions, snapshot, docs, now)
		t.notify.queue(tx.Batch, clusterMsg{Twins: ids})
		return nil
	}(pg.Queue{Batch: b})
	if err != nil {
		return err
	}
	if hasEvents || b.Len() > 0 {
		if err := p.Send(ctx, b, true); err != nil {
			return fmt.Errorf("store twins: %w", err)
		}
	}
	t.m.commitSeconds.Observe(time.Since(start).Seconds())
	t.m.batchSize.Observe(float64(len(batch)))

	// Committed: now the twins change, observers hear of it, PUBACKs go out.
	t.mu.Lock()
	for id, w := range work {
		if ch := changes[id]; (ch != nil && !ch.empty()) || desiredChanged[id] {
			t.twins[id] = w
		}
	}
	t.mu.Unlock()
	for _, after := range afters {
		after()
	}
	for id, w := range work {
		ch := changes[id]
		if (ch != nil && !ch.empty()) || desiredChanged[id] {
			if ch == nil {
				ch = &TwinChange{}
			}
			for _, o := range t.observers {
				o(w, *ch)
			}
		}
	}
	if len(t.eventObservers) > 0 {
		for _, it := range batch {
			if it.event != nil && fresh[eventKey{it.in.LockerID, it.event.ID}] {
				for _, fn := range t.eventObservers {
					fn(it.in.LockerID, *it.event)
				}
			}
		}
	}
	for i, it := range batch {
		if it.desired != nil {
			it.desired.result <- results[i]
			continue
		}
		t.m.messages.WithLabelValues(string(it.in.Kind), "stored").Inc()
		it.in.Done(nil)
	}
	return nil
}

// dropUnknownCells removes the cells a locker does not have from its report.
func (t *Twins) dropUnknownCells(lockerID string, s *protocol.State) {
	if t.hasCell == nil {
		return
	}
	for name := range s.Cells {
		if !t.hasCell(lockerID, name) {
			t.m.unknownCells.Inc()
			t.log.Warn("state names a cell the locker does not have; ignored", "locker", lockerID, "cell", name)
			delete(s.Cells, name)
		}
	}
}

// queueEvents queues the insert of the batch's events on b and reports
// whether there are any; the insert's callback marks the events that were
// new in fresh. With a nil b it only reports.
func queueEvents(b *pgx.Batch, batch []item, fresh map[eventKey]bool) bool {
	var lockers, ids, types, cells, causes []string
	var boots, seqs []int64
	var ts, received []time.Time
	var data []*string
	for _, it := range batch {
		e := it.event
		if e == nil {
			continue
		}
		if b == nil {
			return true
		}
		lockers, ids, types, cells, causes = append(lockers, it.in.LockerID), append(ids, e.ID), append(types, e.Type), append(cells, e.Cell), append(causes, e.Cause)
		boots, seqs = append(boots, int64(e.Boot)), append(seqs, int64(e.Seq))
		ts, received = append(ts, time.UnixMilli(e.TS).UTC()), append(received, it.in.Received.UTC())
		var d *string
		if len(e.Data) > 0 {
			s := string(e.Data)
			d = &s
		}
		data = append(data, d)
	}
	if len(ids) == 0 {
		return false
	}
	b.Queue(`INSERT INTO fleet_events (locker_id, event_id, boot, seq, ts, type, cell, cause, data, received_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::timestamptz[])
		ON CONFLICT (locker_id, event_id) DO NOTHING RETURNING locker_id, event_id`,
		lockers, ids, boots, seqs, ts, types, cells, causes, data, received).Query(func(rows pgx.Rows) error {
		var l, id string
		_, err := pgx.ForEachRow(rows, []any{&l, &id}, func() error {
			fresh[eventKey{l, id}] = true
			return nil
		})
		return err
	})
	return true
}

type twinMetrics struct {
	messages      *prometheus.CounterVec
	failures      prometheus.Counter
	commitSeconds prometheus.Histogram
	batchSize     prometheus.Histogram
	unknownCells  prometheus.Counter
}

func newTwinMetrics(reg prometheus.Registerer, depth func() float64) *twinMetrics {
	m := &twinMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_fleet_device_messages_total", Help: "State and event messages by kind and result (stored, invalid, overloaded)."},
			[]string{"kind", "result"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_commit_failures_total", Help: "Failed transactions of the twin writer (retried)."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lockerhub_fleet_commit_seconds", Help: "Duration of one twin writer transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lockerhub_fleet_batch_messages", Help: "Messages per twin writer transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
	}
	m.unknownCells = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lockerhub_fleet_unknown_cells_total", Help: "Cells in state reports or events that the locker's layout does not have (ignored in the twin)."})
	reg.MustRegister(m.messages, m.failures, m.commitSeconds, m.batchSize, m.unknownCells,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lockerhub_fleet_ingest_queue_depth", Help: "Device messages waiting for the twin writer."}, depth))
	return m
}
