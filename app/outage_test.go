package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// TestTelemetrySurvivesDatabaseOutage cuts the hub's connections to
// PostgreSQL (a proxy in between) for 10 s while 20 mTLS lockers publish QoS 1
// telemetry: the lockers stay connected, no PUBACK goes out while the
// database is away, /readyz says not ready, and once it is back every sample
// is stored exactly once and acknowledged.
func TestTelemetrySurvivesDatabaseOutage(t *testing.T) {
	var proxy *pgtest.Proxy
	h := hubtest.Start(t, func(c *app.Config) { c.DatabaseURL, proxy = pgtest.Proxied(t, c.DatabaseURL) })
	runOutage(t, h, 10*time.Second, proxy.Cut, proxy.Restore)
}

// runOutage runs lockers against h and calls cut once samples are flowing,
// restore after the outage, then counts.
func runOutage(t *testing.T, h *hubtest.Hub, outage time.Duration, cut, restore func()) {
	const lockers, total = 20, 6000
	var db func(sql string) int64
	{
		direct, err := pg.Connect(context.Background(), h.DBURL, 2)
		require.NoError(t, err)
		t.Cleanup(direct.Close)
		db = func(sql string) int64 {
			var n int64
			require.NoError(t, direct.QueryRow(context.Background(), sql).Scan(&n))
			return n
		}
	}
	cfg := lockersim.DefaultBenchConfig()
	cfg.Broker, cfg.TLS, cfg.Prefix, cfg.Connections = h.MQTTAddr, true, "OUT-", lockers
	cfg.Identity = lockersim.IdentityOptions{Dir: t.TempDir(), CAFile: h.CAFile(), Admin: h.HTTPURL, AdminToken: h.AdminToken,
		API: h.DeviceURL, Cells: 10, Segment: "outage", ServerAddr: h.MQTTAddr, Concurrency: 8}
	cfg.Rate, cfg.MaxMessages, cfg.Size = 300, total, 0
	cfg.Duration, cfg.Drain = outage+50*time.Second, 40*time.Second
	type outcome struct {
		res lockersim.BenchResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		r, err := lockersim.Bench(context.Background(), cfg, slog.New(slog.DiscardHandler))
		done <- outcome{r, err}
	}()
	hubtest.Eventually(t, 60*time.Second, "samples stored before the outage", func() bool {
		return h.Metric("lockerhub_telemetry_samples_stored_total") >= 1000
	})
	connects := h.Metric("lockerhub_broker_connects_total")
	require.EqualValues(t, lockers, connects)

	cut()
	cutAt := time.Now()
	hubtest.Eventually(t, 10*time.Second, "/readyz says not ready", func() bool { return readyz(t, h) == http.StatusServiceUnavailable })
	// The telemetry's own probe may notice a moment after /readyz.
	hubtest.Eventually(t, 10*time.Second, "lockerhub_telemetry_db_up 0", func() bool { return h.Metric("lockerhub_telemetry_db_up") == 0 })
	// Whatever was committed before the cut gets its PUBACK: wait until the
	// count stays still for a second (bounded); from then on no PUBACK may go
	// out until the database is back.
	acks := h.Metric("lockerhub_broker_acks_sent_total")
	for settle := time.Now().Add(10 * time.Second); time.Now().Before(settle); {
		time.Sleep(time.Second)
		now := h.Metric("lockerhub_broker_acks_sent_total")
		if now == acks {
			break
		}
		acks = now
	}
	hubtest.Eventually(t, outage, "samples waiting for the database", func() bool {
		return h.Metric("lockerhub_broker_unacked_messages") >= lockers
	})
	for time.Since(cutAt) < outage {
		require.Equal(t, acks, h.Metric("lockerhub_broker_acks_sent_total"), "a PUBACK went out while the database was away")
		require.EqualValues(t, lockers, h.App.Broker.Connected(), "a locker was disconnected during the outage")
		time.Sleep(200 * time.Millisecond)
	}
	restore()
	hubtest.Eventually(t, 30*time.Second, "/readyz ready again", func() bool { return readyz(t, h) == http.StatusOK })

	var o outcome
	select {
	case o = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the generator did not finish")
	}
	require.NoError(t, o.err)
	require.Zero(t, o.res.Errors, "generator errors, first: %s", o.res.FirstError)
	require.GreaterOrEqual(t, o.res.Sent, int64(total)) // each connection checks the limit on its own: a few more
	require.Equal(t, o.res.Sent, o.res.Acked, "every sample acknowledged once the database was back")
	require.Equal(t, o.res.Acked, db(`SELECT count(*) FROM telemetry_samples WHERE locker_id LIKE 'OUT-%'`), "every acknowledged sample stored once")
	require.EqualValues(t, connects, h.Metric("lockerhub_broker_connects_total"), "no locker reconnected")
}

func readyz(t *testing.T, h *hubtest.Hub) int {
	resp, err := http.Get(h.HTTPURL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
