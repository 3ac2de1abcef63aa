package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/telemetry"
)

// testConfig keeps partitions few (fast tests) and the background loops off
// (tests call Maintain and RollUp).
func testConfig() telemetry.Config {
	return telemetry.Config{
		Retention:     telemetry.Retention{Raw: 2 * 24 * time.Hour, Rollup1m: 2 * 24 * time.Hour, Rollup1h: 2 * 24 * time.Hour, Ahead: 24 * time.Hour},
		MaintainEvery: -1,
		RollEvery:     -1,
		Grace:         time.Second,
	}
}

type rig struct {
	t    testing.TB
	pool *pgxpool.Pool
	in   *telemetry.Ingest
	reg  *prometheus.Registry
	stop func()
}

func newPool(t testing.TB) *pgxpool.Pool { return pgtest.Pool(t, telemetry.Migrations()) }

// start builds, starts and runs an ingest on pool until the test ends (or stop).
func start(t testing.TB, pool *pgxpool.Pool, cfg telemetry.Config, observe ...func(string, telemetry.Sample)) *rig {
	t.Helper()
	r := &rig{t: t, pool: pool, reg: prometheus.NewRegistry()}
	in, err := telemetry.NewIngest(pool, slog.New(slog.NewTextHandler(io.Discard, nil)), r.reg, cfg)
	require.NoError(t, err)
	for _, o := range observe {
		in.OnStored(o)
	}
	require.NoError(t, in.Start(context.Background()))
	r.in = in
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	return r
}

// result is a settled submission.
type result struct {
	err error
	at  time.Time
}

// submit hands a payload to the ingest and returns a channel that receives
// its verdict.
func (r *rig) submit(locker, payload string) <-chan result {
	ch := make(chan result, 1)
	r.in.Submit(telemetry.Inbound{LockerID: locker, Payload: []byte(payload), Received: time.Now(),
		Done: func(err error) { ch <- result{err: err, at: time.Now()} }})
	return ch
}

// send submits and waits for the verdict.
func (r *rig) send(locker, payload string) error {
	r.t.Helper()
	return r.wait(r.submit(locker, payload), 10*time.Second)
}

func (r *rig) wait(ch <-chan result, d time.Duration) error {
	r.t.Helper()
	select {
	case res := <-ch:
		return res.err
	case <-time.After(d):
		r.t.Fatalf("sample not settled within %v", d)
		return nil
	}
}

func sample(boot, seq int, ts time.Time, m string) string {
	return fmt.Sprintf(`{"boot":%d,"seq":%d,"ts":%d,"m":{%s}}`, boot, seq, ts.UnixMilli(), m)
}

func (r *rig) count(sql string, args ...any) int {
	r.t.Helper()
	var n int
	require.NoError(r.t, r.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: "+msg, append([]any{d}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxiedPool returns a pool on a fresh database reached through a proxy,
// and a direct pool on the same database for the test's own checks.
func proxiedPool(t *testing.T) (*pgxpool.Pool, *pgxpool.Pool, *pgtest.Proxy) {
	url := pgtest.NewDB(t, telemetry.Migrations())
	direct, err := pg.Connect(context.Background(), url, 4)
	require.NoError(t, err)
	t.Cleanup(direct.Close)
	purl, p := pgtest.Proxied(t, url)
	pool, err := pg.Connect(context.Background(), purl, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, direct, p
}

func (r *rig) countOn(pool *pgxpool.Pool, sql string) int {
	r.t.Helper()
	var n int
	require.NoError(r.t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// metric returns the value of a counter or gauge of the ingest's registry,
// picking the series whose first label has value label (if given).
func (r *rig) metric(name string, label ...string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(r.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) > 0 && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label[0]) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
