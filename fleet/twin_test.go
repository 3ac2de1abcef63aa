package fleet_test

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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/protocol"
)

type twinRig struct {
	t     *testing.T
	pool  *pgxpool.Pool
	twins *fleet.Twins
	stop  func()
	mu    sync.Mutex
	seen  []fleet.TwinChange
}

func startTwins(t *testing.T, pool *pgxpool.Pool) *twinRig {
	t.Helper()
	if pool == nil {
		pool = pgtest.Pool(t, audit.Migrations(), fleet.Migrations())
	}
	r := &twinRig{t: t, pool: pool}
	r.twins = fleet.NewTwins(pool, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), fleet.TwinsConfig{})
	require.NoError(t, r.twins.Load(context.Background()))
	r.twins.Observe(func(_ *fleet.Twin, ch fleet.TwinChange) { r.mu.Lock(); r.seen = append(r.seen, ch); r.mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.twins.Run(ctx); close(done) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	return r
}

// send submits a message and waits for it to be settled; it returns the error
// it was settled with. The twin row must be durable when it is settled with nil.
func (r *twinRig) send(id string, kind protocol.Kind, payload string) error {
	r.t.Helper()
	done := make(chan error, 1)
	r.twins.Submit(fleet.Inbound{LockerID: id, Kind: kind, Payload: []byte(payload), Received: time.Now(), Done: func(err error) { done <- err }})
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("message not settled within 5 s")
		return nil
	}
}

func state(boot, seq int, cells string) string {
	return fmt.Sprintf(`{"boot":%d,"seq":%d,"ts":1795389000000,"cells":{%s}}`, boot, seq, cells)
}

func TestTwinIgnoresStaleReportsPerCell(t *testing.T) {
	r := startTwins(t, nil)
	require.NoError(t, r.send("L1", protocol.KindState, state(3, 10, `"A01":{"door":"open","lock":"unlocked","occupied":true},"A02":{"door":"closed"}`)))
	// An older partial report (a delayed redelivery) must not move A01 back,
	// while a newer one about A02 does apply.
	require.NoError(t, r.send("L1", protocol.KindState, state(3, 5, `"A01":{"door":"closed"}`)))
	require.NoError(t, r.send("L1", protocol.KindState, state(3, 11, `"A02":{"door":"open"}`)))
	// A new boot is newer than any seq of the old one.
	require.NoError(t, r.send("L1", protocol.KindState, state(4, 1, `"A01":{"lock":"locked"}`)))

	v := r.twins.Get("L1").View()
	require.Equal(t, "open", v.Reported.Cells["A01"].Door)
	require.Equal(t, "locked", v.Reported.Cells["A01"].Lock)
	require.True(t, *v.Reported.Cells["A01"].Occupied)
	require.Equal(t, "open", v.Reported.Cells["A02"].Door)
	require.Equal(t, int64(3), v.Version, "the stale report made no version")

	// The stamps are durable: after a restart the same stale report still loses.
	r.stop()
	r2 := startTwins(t, r.pool)
	require.NoError(t, r2.send("L1", protocol.KindState, state(3, 9, `"A01":{"door":"closed"}`)))
	require.Equal(t, "open", r2.twins.Get("L1").View().Reported.Cells["A01"].Door)
}

func TestEventsAreStoredOnceAndMoveTheTwin(t *testing.T) {
	r := startTwins(t, nil)
	ev := `{"id":"e-1","boot":2,"seq":7,"ts":1795389000200,"type":"door_opened","cell":"B03","cause":"command:c-1"}`
	require.NoError(t, r.send("L1", protocol.KindEvents, ev))
	require.NoError(t, r.send("L1", protocol.KindEvents, ev), "a redelivery is acknowledged again")
	var n int
	require.NoError(t, r.pool.QueryRow(context.Background(), `SELECT count(*) FROM fleet_events WHERE locker_id = 'L1'`).Scan(&n))
	require.Equal(t, 1, n, "stored once")
	tw := r.twins.Get("L1")
	require.Equal(t, "open", tw.View().Reported.Cells["B03"].Door)
	require.Equal(t, int64(1), tw.Version, "the duplicate did not change the twin again")
	evs, err := r.twins.Events(context.Background(), "L1", 10)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "command:c-1", evs[0].Cause)

	require.NoError(t, r.send("L1", protocol.KindEvents, `{"id":"e-2","boot":2,"seq":8,"ts":1795389000300,"type":"power_lost"}`))
	require.False(t, *r.twins.Get("L1").View().Reported.Power.Mains)
}

func TestInvalidMessagesAreRefusedAndChangeNothing(t *testing.T) {
	r := startTwins(t, nil)
	for _, bad := range []string{`nonsense`, `{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"door":"ajar"}}}`, `{"seq":1}`} {
		err := r.send("L1", protocol.KindState, bad)
		require.True(t, errors.Is(err, protocol.ErrInvalid), "%s: %v", bad, err)
	}
	require.Nil(t, r.twins.Get("L1"))
	var n int
	require.NoError(t, r.pool.QueryRow(context.Background(), `SELECT count(*) FROM fleet_twins`).Scan(&n))
	require.Zero(t, n)
}

func TestSettledOnlyOnceDurable(t *testing.T) {
	r := startTwins(t, nil)
	done := make(chan int64, 1)
	r.twins.Submit(fleet.Inbound{LockerID: "L1", Kind: protocol.KindState, Payload: []byte(state(1, 1, `"A01":{"door":"open"}`)),
		Received: time.Now(), Done: func(err error) {
			require.NoError(t, err)
			var v int64
			// Read from another connection: the row must already be committed.
			require.NoError(t, r.pool.QueryRow(context.Background(), `SELECT version FROM fleet_twins WHERE locker_id = 'L1'`).Scan(&v))
			done <- v
		}})
	select {
	case v := <-done:
		require.Equal(t, int64(1), v)
	case <-time.After(5 * time.Second):
		t.Fatal("not settled")
	}
}

func TestHistoryAnswersWhatTheLockerLookedLike(t *testing.T) {
	r := startTwins(t, nil)
	require.NoError(t, r.send("L1", protocol.KindState, state(1, 1, `"A01":{"door":"closed","occupied":false}`)))
	time.Sleep(20 * time.Millisecond) // history is by commit time: make the moments distinct
	before := time.Now()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, r.send("L1", protocol.KindState, state(1, 2, `"A01":{"door":"open"}`)))
	require.NoError(t, r.send("L1", protocol.KindState, state(1, 3, `"A01":{"occupied":true}`)))

	ctx := context.Background()
	then, err := r.twins.At(ctx, "L1", before)
	require.NoError(t, err)
	require.Equal(t, "closed", then.Reported.Cells["A01"].Door)
	require.False(t, *then.Reported.Cells["A01"].Occupied)
	now, err := r.twins.At(ctx, "L1", time.Now())
	require.NoError(t, err)
	require.Equal(t, "open", now.Reported.Cells["A01"].Door)
	require.True(t, *now.Reported.Cells["A01"].Occupied)
	require.Equal(t, int64(3), now.Version)
	_, err = r.twins.At(ctx, "L1", before.Add(-time.Hour))
	require.ErrorIs(t, err, fleet.ErrNotFound)
}

func TestDesiredNeedsTheCurrentVersion(t *testing.T) {
	r := startTwins(t, nil)
	ctx := context.Background()
	v, err := r.twins.SetDesired(ctx, "L1", 0, json.RawMessage(`{"display":"hello"}`))
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
	_, err = r.twins.SetDesired(ctx, "L1", 0, json.RawMessage(`{"display":"stale"}`))
	require.ErrorIs(t, err, fleet.ErrStale)
	tw := r.twins.Get("L1")
	require.JSONEq(t, `{"display":"hello"}`, string(tw.Desired))
	require.Equal(t, map[string]int64{"desired": 1, "reported": 0}, tw.View().Delta["desired_version"])
	require.NoError(t, r.send("L1", protocol.KindState, `{"boot":1,"seq":1,"ts":1,"desired_version":1}`))
	require.Empty(t, r.twins.Get("L1").View().Delta, "applied: no delta")
}
