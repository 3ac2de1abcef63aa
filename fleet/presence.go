package fleet

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// presenceWriter records connect and disconnect times in batches. Pending
// updates are coalesced per locker (the latest time of each kind wins), so the
// memory it holds is bounded by the number of lockers, whatever the churn.
type presenceWriter struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]*presenceTimes
	wake    chan struct{}
}

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
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ids := make([]string, 0, len(batch))
	conn := make([]*time.Time, 0, len(batch))
	disc := make([]*time.Time, 0, len(batch))
	for id, p := range batch {
		ids = append(ids, id)
		conn = append(conn, nonZero(p.connected))
		disc = append(disc, nonZero(p.disconnected))
	}
	_, err := w.pool.Exec(ctx, `UPDATE fleet_lockers l SET
			connected_at = COALESCE(u.c, l.connected_at),
			disconnected_at = COALESCE(u.d, l.disconnected_at)
		FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS u(id, c, d)
		WHERE l.id = u.id`, ids, conn, disc)
	if err != nil {
		w.log.Warn("recording presence failed; will retry with the next change", "lockers", len(ids), "error", err)
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
