package telemetry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/telemetry"
)

func TestSampleIsStoredBeforeItsAck(t *testing.T) {
	pool := newPool(t)
	var mu sync.Mutex
	var observed []string
	r := start(t, pool, testConfig(), func(id string, s telemetry.Sample) {
		mu.Lock()
		observed = append(observed, fmt.Sprintf("%s %d/%d %v", id, s.Boot, s.Seq, s.M["temp_c"]))
		mu.Unlock()
	})
	ts := time.Now().Add(-time.Second).Truncate(time.Millisecond).UTC()
	require.NoError(t, r.send("L1", sample(17, 1041, ts, `"temp_c":4.5,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71`)))

	// Acked means durable: the row is there as soon as Done(nil) ran.
	var m []byte
	var gotTS time.Time
	var boot, seq int64
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT ts, boot, seq, m FROM telemetry_samples WHERE locker_id = 'L1'`).Scan(&gotTS, &boot, &seq, &m))
	require.True(t, ts.Equal(gotTS), "%v != %v", ts, gotTS)
	require.Equal(t, []int64{17, 1041}, []int64{boot, seq})
	var values map[string]float64
	require.NoError(t, json.Unmarshal(m, &values))
	require.Equal(t, map[string]float64{"temp_c": 4.5, "humidity_pct": 61, "battery_v": 12.6, "mains": 1, "rssi_dbm": -71}, values)

	s, ok := r.in.Latest("L1")
	require.True(t, ok)
	require.Equal(t, 12.6, s.M["battery_v"])
	require.True(t, ts.Equal(s.TS))

	// An older sample (by boot, seq) is stored but is not the latest.
	require.NoError(t, r.send("L1", sample(17, 1000, ts.Add(time.Second), `"temp_c":9`)))
	require.NoError(t, r.send("L2", sample(1, 1, ts, `"temp_c":7,"door_cycles":3`)))
	require.NoError(t, r.send("L1", sample(18, 1, ts.Add(-time.Second), `"temp_c":5`))) // new boot wins over a later ts
	s, _ = r.in.Latest("L1")
	require.Equal(t, 5.0, s.M["temp_c"])
	_, ok = r.in.Latest("L3")
	require.False(t, ok)
	fleet := r.in.FleetLatest("temp_c")
	require.Len(t, fleet, 2)
	require.Equal(t, telemetry.LatestValue{LockerID: "L1", TS: ts.Add(-time.Second), Value: 5}, fleet[0])
	require.Equal(t, "L2", fleet[1].LockerID)
	require.Len(t, r.in.FleetLatest("door_cycles"), 1)

	mu.Lock()
	require.Equal(t, []string{"L1 17/1041 4.5", "L2 1/1 7", "L1 18/1 5"}, observed, "observers hear of new latest samples only")
	mu.Unlock()
	require.Equal(t, 4, r.count(`SELECT count(*) FROM telemetry_samples`))
	require.Equal(t, 4.0, r.metric("lockerhub_telemetry_samples_stored_total"))
}

func TestInvalidSamplesAreRefusedAtOnce(t *testing.T) {
	pool := newPool(t)
	cfg := testConfig()
	cfg.UnknownMetrics = telemetry.UnknownRefuse
	r := start(t, pool, cfg)
	now := time.Now()
	for _, tc := range []struct {
		name, payload, reason string
		count                 float64
	}{
		{"not JSON", `{"boot":`, "payload", 1},
		{"unknown field", `{"boot":1,"seq":1,"ts":1795389000000,"m":{"temp_c":1},"x":1}`, "payload", 2},
		{"string value", sample(1, 1, now, `"temp_c":"4.5"`), "payload", 3},
		{"unknown metric", sample(1, 1, now, `"temp_c":4,"co2_ppm":400`), "unknown_metric", 1},
		{"ts ahead", sample(1, 1, now.Add(10*time.Minute), `"temp_c":4`), "future", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := r.submit("L1", tc.payload)
			select {
			case res := <-ch:
				require.ErrorIs(t, res.err, protocol.ErrInvalid)
			default:
				t.Fatal("an invalid sample must be settled before Submit returns")
			}
			require.Equal(t, tc.count, r.metric("lockerhub_telemetry_samples_rejected_total", tc.reason))
		})
	}
	// A little ahead (the locker's clock runs fast) is fine.
	require.NoError(t, r.send("L1", sample(1, 2, now.Add(time.Minute), `"temp_c":4`)))
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_samples`))
}

func TestUnknownMetricsAreKeptByDefault(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	require.NoError(t, r.send("L1", sample(1, 1, time.Now(), `"co2_ppm":412`)))
	s, _ := r.in.Latest("L1")
	require.Equal(t, 412.0, s.M["co2_ppm"])
}

func TestTooOldSamplesAreAckedNotStored(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	// Raw retention is 2 days in testConfig.
	require.NoError(t, r.send("L1", sample(1, 1, time.Now().Add(-3*24*time.Hour), `"temp_c":1`)))
	require.Equal(t, 0, r.count(`SELECT count(*) FROM telemetry_samples`))
	require.Equal(t, 1.0, r.metric("lockerhub_telemetry_samples_dropped_total", "too_old"))
	require.NoError(t, r.send("L1", sample(1, 2, time.Now().Add(-47*time.Hour), `"temp_c":1`)), "inside the retention")
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_samples`))
}

func TestRepublishedSampleIsStoredOnce(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	p := sample(3, 7, time.Now(), `"temp_c":4.5`)
	// Twice in one batch (submitted back to back) …
	a, b := r.submit("L1", p), r.submit("L1", p)
	require.NoError(t, r.wait(a, 5*time.Second))
	require.NoError(t, r.wait(b, 5*time.Second))
	// … and again in a later batch, as after a lost PUBACK.
	require.NoError(t, r.send("L1", p))
	require.Equal(t, 1, r.count(`SELECT count(*) FROM telemetry_samples`))
	require.Equal(t, 1.0, r.metric("lockerhub_telemetry_samples_stored_total"))
	require.Equal(t, 2.0, r.metric("lockerhub_telemetry_samples_duplicates_total"))
	// Another locker's sample with the same header is its own.
	require.NoError(t, r.send("L2", p))
	require.Equal(t, 2, r.count(`SELECT count(*) FROM telemetry_samples`))
}

func TestLatestIsLoadedAtStart(t *testing.T) {
	pool := newPool(t)
	r := start(t, pool, testConfig())
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	for i := 1; i <= 3; i++ {
		require.NoError(t, r.send("L1", sample(1, i, ts.Add(time.Duration(i)*time.Second), fmt.Sprintf(`"temp_c":%d`, i))))
	}
	require.NoError(t, r.send("L2", sample(1, 1, ts, `"battery_v":12.5`)))
	r.stop()

	r2 := start(t, pool, testConfig())
	s, ok := r2.in.Latest("L1")
	require.True(t, ok)
	require.Equal(t, map[string]float64{"temp_c": 3}, s.M)
	require.Equal(t, uint64(3), s.Seq)
	require.True(t, ts.Add(3*time.Second).Equal(s.TS))
	require.Equal(t, []telemetry.LatestValue{{LockerID: "L2", TS: ts, Value: 12.5}}, r2.in.FleetLatest("battery_v"))
}

// TestOutageWithholdsAcksUntilStored cuts the connection to PostgreSQL while
// lockers keep sending: nothing is acknowledged while it is cut, /readyz
// says why, the queue refuses what does not fit; once it is back, every
// pending sample is acknowledged and every acknowledged sample is stored
// exactly once.
func TestOutageWithholdsAcksUntilStored(t *testing.T) {
	pool, direct, px := proxiedPool(t)
	cfg := testConfig()
	cfg.QueueSamples = 300
	cfg.BatchMax = 50 // each writer holds one batch besides the queue
	cfg.CommitTimeout = 2 * time.Second
	r := start(t, pool, cfg)
	ctx := context.Background()

	var mu sync.Mutex
	acked := map[string]bool{}
	pending := map[string]<-chan result{}
	now := time.Now()
	send := func(i int) {
		id := fmt.Sprintf("L%d", i%20)
		p := sample(1, i, now.Add(time.Duration(i)*time.Millisecond), `"temp_c":1`)
		ch := r.submit(id, p)
		mu.Lock()
		pending[fmt.Sprintf("%s/%d", id, i)] = ch
		mu.Unlock()
	}
	collect := func() (ok, overloaded int) {
		mu.Lock()
		defer mu.Unlock()
		for k, ch := range pending {
			select {
			case res := <-ch:
				delete(pending, k)
				if res.err == nil {
					acked[k] = true
					ok++
				} else {
					require.ErrorIs(t, res.err, telemetry.ErrOverloaded)
					overloaded++
				}
			default:
			}
		}
		return ok, overloaded
	}
	for i := range 100 {
		send(i)
	}
	eventually(t, 5*time.Second, func() bool { collect(); return len(pending) == 0 }, "first samples acked")
	require.Len(t, acked, 100)
	require.NoError(t, r.in.Ready(ctx))

	px.Cut()
	ackedBefore := len(acked)
	overloaded := 0
	for i := 100; i < 600; i++ {
		send(i)
	}
	eventually(t, 10*time.Second, func() bool { return r.in.Ready(ctx) != nil }, "Ready reports the failing writes")
	require.Equal(t, 0.0, r.metric("lockerhub_telemetry_db_up"))
	// Hold the outage for a while: no sample may be acknowledged meanwhile.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		ok, over := collect()
		require.Zero(t, ok, "a sample was acknowledged while PostgreSQL was cut off")
		overloaded += over
	}
	require.Greater(t, overloaded, 0, "the queue is bounded: what did not fit was refused with ErrOverloaded")
	require.Greater(t, len(pending), 0)
	require.Greater(t, r.metric("lockerhub_telemetry_acks_withheld"), 0.0)
	require.Equal(t, ackedBefore, len(acked))

	px.Restore()
	eventually(t, 20*time.Second, func() bool { collect(); return len(pending) == 0 }, "pending samples acked after the outage")
	require.NoError(t, r.in.Ready(ctx))
	require.Equal(t, 1.0, r.metric("lockerhub_telemetry_db_up"))

	// Every acknowledged sample is stored exactly once; refused ones are not acked.
	require.Equal(t, len(acked), r.countOn(direct, `SELECT count(*) FROM telemetry_samples`))
	require.Equal(t, len(acked), r.countOn(direct, `SELECT count(DISTINCT (locker_id, ts, boot, seq)) FROM telemetry_samples`))
	require.Equal(t, 600, len(acked)+overloaded)
}

// TestShutdownSettlesWhatItCannotStore: when the hub stops while PostgreSQL
// is away, queued samples are settled with ErrOverloaded (never acked) after
// the grace.
func TestShutdownSettlesWhatItCannotStore(t *testing.T) {
	pool, direct, px := proxiedPool(t)
	cfg := testConfig()
	cfg.Grace = 300 * time.Millisecond
	r := start(t, pool, cfg)
	px.Cut()
	var chans []<-chan result
	for i := range 50 {
		chans = append(chans, r.submit("L1", sample(1, i, time.Now(), `"temp_c":1`)))
	}
	eventually(t, 10*time.Second, func() bool { return r.in.Ready(context.Background()) != nil }, "writes fail")
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its grace")
	}
	for _, ch := range chans {
		require.ErrorIs(t, r.wait(ch, time.Second), telemetry.ErrOverloaded)
	}
	// After Run, Submit refuses at once.
	require.ErrorIs(t, r.wait(r.submit("L1", sample(1, 99, time.Now(), `"temp_c":1`)), time.Second), telemetry.ErrOverloaded)
	require.Zero(t, r.countOn(direct, `SELECT count(*) FROM telemetry_samples`))
}

func TestConfigIsChecked(t *testing.T) {
	for _, cfg := range []telemetry.Config{
		{UnknownMetrics: "drop"},
		{Retention: telemetry.Retention{Raw: 100 * 24 * time.Hour}}, // longer than the 1-minute rollups
		{KnownMetrics: []string{"Temp"}},
	} {
		_, err := telemetry.NewIngest(nil, nil, nil, cfg)
		require.Error(t, err)
	}
}
