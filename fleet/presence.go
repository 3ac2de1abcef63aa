package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// presenceWriter records connect and disconnect times in batches: the
// latest times on the locker (coalesced per locker) and every transition in
// the connectivity history. The history waiting to be written is bounded
// (maxTransitions; beyond it the oldest are dropped and counted in the log).
type presenceWriter struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	node string // cluster mode: recorded with each connect and announced (fleet/cluster.go)

	mu          sync.Mutex
	pending     map[string]*presenceTimes
	transitions []transition
	dropped     int
	wake        chan struct{}
}

type transition struct {
	id     string
	at     time.Time
	online bool
}

const maxTransitions = 100_000

type presenceTimes struct {
	connected, disconnected time.Time
}

func newPresenceWriter(pool *pgxpool.Pool, log *slog.Logger) *presenceWriter {
	return &presenceWriter{pool: pool, log: log, pending: map[string]*presenceTimes{}, wake: make(chan struct{}, 1)}
}

func (w *presenceWriter) record(id string, at time.Time, connected bool) {
	w.mu.Lock()
	p := w.pending[id]
	if p == nil {
		p = &presenceTimes{}
		w.pending[id] = p
	}
	if connected {
		p.connected = at
	} else {
		p.disconnected = at
	}
	if len(w.transitions) >= maxTransitions {
		w.transitions = w.transitions[1:]
		w.dropped++
	}
	w.transitions = append(w.transitions, transition{id, at, connected})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *presenceWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			w.flush(flushCtx)
			cancel()
			return
		case <-w.wake:
		}
		// Let a burst (a reconnect storm) gather into one statement.
		select {
		case <-ctx.Done():
			continue // the final flush above, with a context of its own
		case <-time.After(200 * time.Millisecond):
		}
		w.flush(ctx)
	}
}

func (w *presenceWriter) flush(ctx context.Context) {
	w.mu.Lock()
	batch := w.pending
	w.pending = map[string]*presenceTimes{}
	trans, dropped := w.transitions, w.dropped
	w.transitions, w.dropped = nil, 0
	w.mu.Unlock()
	if dropped > 0 {
		w.log.Warn("connectivity history: transitions dropped while the database was slow", "dropped", dropped)
	}
	if len(trans) > 0 {
		ids, ats, ons := make([]string, len(trans)), make([]time.Time, len(trans)), make([]bool, len(trans))
		for i, t := range trans {
			ids[i], ats[i], ons[i] = t.id, t.at, t.online
		}
		if _, err := w.pool.Exec(ctx, `INSERT INTO fleet_connectivity (locker_id, at, online)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bool[])`, ids, ats, ons); err != nil {
			w.log.Warn("recording connectivity history failed; will retry", "transitions", len(trans), "error", err)
			w.mu.Lock()
			w.transitions = append(trans, w.transitions...)
			w.mu.Unlock()
		}
	}
	if len(batch) == 0 {
		return
	}
	// One statement per locker by primary key, all in one round trip: a
	// single UPDATE joined with unnest() kept a seq-scan plan made while the
	// registry was empty (see fleet/commands.go, updateCommands).
	b := &pgx.Batch{}
	var m clusterMsg
	for _, id := range slices.Sorted(maps.Keys(batch)) { // one lock order for every writer
		p := batch[id]
		if w.node == "" {
			b.Queue(`UPDATE fleet_lockers SET connected_at = COALESCE($2, connected_at),
				disconnected_at = COALESCE($3, disconnected_at) WHERE id = $1`, id, nonZero(p.connected), nonZero(p.disconnected))
			continue
		}
		b.Queue(`UPDATE fleet_lockers SET connected_at = COALESCE($2, connected_at),
			disconnected_at = COALESCE($3, disconnected_at),
			connected_node = CASE WHEN $2::timestamptz IS NULL THEN connected_node ELSE $4 END WHERE id = $1`,
			id, nonZero(p.connected), nonZero(p.disconnected), w.node)
		if p.connected.After(p.disconnected) {
			m.On = append(m.On, id)
		} else {
			m.Off = append(m.Off, id)
		}
	}
	if w.node != "" {
		(&notifier{node: w.node}).queue(b, m) // delivered with the batch's implicit commit
	}
	err := w.pool.SendBatch(ctx, b).Close()
	if err != nil {
		w.log.Warn("recording presence failed; will retry with the next change", "lockers", len(batch), "error", err)
		w.mu.Lock()
		for id, p := range batch {
			if _, newer := w.pending[id]; !newer {
				w.pending[id] = p
			}
		}
		w.mu.Unlock()
	}
}

func nonZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Period is a stretch of time a locker was connected or not; To is nil for
// the current one.
type Period struct {
	Online bool       `json:"online"`
	From   time.Time  `json:"from"`
	To     *time.Time `json:"to"`
}

// Connectivity returns a locker's latest connected and disconnected periods,
// newest first (the presence recorded in the last moments may not be written
// yet: it is batched every 200 ms).
func (r *Registry) Connectivity(ctx context.Context, lockerID string, limit int) ([]Period, error) {
	if limit <= 0 || limit > 1000 {
		return nil, invalid("limit", "must be between 1 and 1000, got %d", limit)
	}
	rows, err := r.pool.Query(ctx, `SELECT at, online FROM fleet_connectivity WHERE locker_id = $1 ORDER BY at DESC LIMIT $2`, lockerID, limit)
	if err != nil {
		return nil, fmt.Errorf("connectivity: %w", err)
	}
	out := []Period{}
	var at time.Time
	var online bool
	var next *time.Time
	_, err = pgx.ForEachRow(rows, []any{&at, &online}, func() error {
		out = append(out, Period{Online: online, From: at, To: next})
		t := at
		next = &t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("connectivity: %w", err)
	}
	return out, nil
}
