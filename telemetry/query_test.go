package telemetry_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/telemetry"
)

func TestSeriesPicksItsSource(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	store := telemetry.NewStore(r.pool, testConfig().Retention)
	ctx := context.Background()
	now := time.Now().UTC()
	base := now.Truncate(time.Hour).Add(-3 * time.Hour)
	// L1: temp_c every 20 s for two hours, rising by 1 a minute.
	seq := 0
	for m := range 120 {
		for s := range 3 {
			seq++
			require.NoError(t, r.send("L1", sample(1, seq, base.Add(time.Duration(m)*time.Minute+time.Duration(s*20)*time.Second),
				`"temp_c":`+strconv.Itoa(m)+`,"battery_v":12`)))
		}
	}

	// Raw samples as they are over a short range.
	s, err := store.Series(ctx, "L1", "temp_c", base, base.Add(2*time.Minute), 0)
	require.NoError(t, err)
	require.Equal(t, "raw", s.Source)
	require.Zero(t, s.Step)
	require.Len(t, s.Points, 6)
	require.Equal(t, telemetry.Point{T: base.Add(20 * time.Second), Avg: 0, Min: 0, Max: 0, N: 1}, s.Points[1])

	// Buckets below a minute come from raw samples.
	s, err = store.Series(ctx, "L1", "temp_c", base, base.Add(2*time.Minute), 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, "raw", s.Source)
	require.Len(t, s.Points, 4)
	require.Equal(t, telemetry.Point{T: base, Avg: 0, Min: 0, Max: 0, N: 2}, s.Points[0])

	// Minute steps come from the 1-minute rollups, and before the roller
	// ran, from the raw samples after the newest rollup.
	s, err = store.Series(ctx, "L1", "temp_c", base, base.Add(2*time.Hour), 10*time.Minute)
	require.NoError(t, err)
	require.Equal(t, "1m", s.Source)
	require.Len(t, s.Points, 12)
	require.Equal(t, telemetry.Point{T: base.Add(10 * time.Minute), Avg: 14.5, Min: 10, Max: 19, N: 30}, s.Points[1])
	before := s
	r.rollUp(now)
	require.Zero(t, r.count(`SELECT count(*) FROM telemetry_rollup_dirty`))
	require.Equal(t, 120, r.count(`SELECT count(*) FROM telemetry_rollup_1m WHERE locker_id = 'L1'`), "one row per minute with both metrics")
	s, err = store.Series(ctx, "L1", "temp_c", base, base.Add(2*time.Hour), 10*time.Minute)
	require.NoError(t, err)
	require.Equal(t, before, s, "rollups and raw samples give the same series")

	// Hour steps come from the 1-hour rollups.
	s, err = store.Series(ctx, "L1", "temp_c", base, base.Add(2*time.Hour), time.Hour)
	require.NoError(t, err)
	require.Equal(t, "1h", s.Source)
	require.Equal(t, []telemetry.Point{
		{T: base, Avg: 29.5, Min: 0, Max: 59, N: 180},
		{T: base.Add(time.Hour), Avg: 89.5, Min: 60, Max: 119, N: 180},
	}, s.Points)

	// Step 0 over a day: at most about 1,000 points, from the 1-minute rollups.
	s, err = store.Series(ctx, "L1", "battery_v", now.Add(-24*time.Hour), now, 0)
	require.NoError(t, err)
	require.Equal(t, "1m", s.Source)
	require.Equal(t, 2*time.Minute, s.Step)
	require.Len(t, s.Points, 60)
	require.Equal(t, 12.0, s.Points[0].Avg)
	// Over 30 days: hourly.
	s, err = store.Series(ctx, "L1", "battery_v", now.Add(-30*24*time.Hour), now, 0)
	require.NoError(t, err)
	require.Equal(t, "1h", s.Source)
	require.Equal(t, time.Hour, s.Step)
	require.Len(t, s.Points, 2)

	// Unknown locker or metric: no points, not an error.
	s, err = store.Series(ctx, "L9", "temp_c", base, now, 0)
	require.NoError(t, err)
	require.Empty(t, s.Points)
	require.NotNil(t, s.Points)

	names, err := store.Metrics(ctx, "L1")
	require.NoError(t, err)
	require.Equal(t, []string{"battery_v", "temp_c"}, names)
	names, err = store.Metrics(ctx, "L9")
	require.NoError(t, err)
	require.Empty(t, names)
}

func TestSeriesRefusesBadQueries(t *testing.T) {
	store := telemetry.NewStore(newPool(t), telemetry.Retention{})
	now := time.Now()
	for name, q := range map[string]struct {
		from, to time.Time
		step     time.Duration
		metric   string
	}{
		"empty range":     {now, now, 0, "temp_c"},
		"reversed range":  {now, now.Add(-time.Hour), 0, "temp_c"},
		"over 400 days":   {now.Add(-401 * 24 * time.Hour), now, 0, "temp_c"},
		"too many points": {now.Add(-7 * 24 * time.Hour), now, time.Minute, "temp_c"},
		"negative step":   {now.Add(-time.Hour), now, -time.Minute, "temp_c"},
		"bad metric":      {now.Add(-time.Hour), now, 0, "temp-c; DROP TABLE x"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := store.Series(context.Background(), "L1", q.metric, q.from, q.to, q.step)
			require.ErrorIs(t, err, telemetry.ErrBadQuery)
		})
	}
}

// TestSeriesBeyondTheMinuteRetention: a range that starts before the
// 1-minute rollups' retention is read from the 1-hour rollups (at least
// hourly), one that starts before the raw retention from the 1-minute ones.
func TestSeriesBeyondTheMinuteRetention(t *testing.T) {
	r := start(t, newPool(t), testConfig())
	ret := telemetry.Retention{Raw: 24 * time.Hour, Rollup1m: 2 * 24 * time.Hour}
	store := telemetry.NewStore(r.pool, ret)
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.Truncate(time.Hour).Add(-36 * time.Hour) // raw and 1-minute partitions exist; 1-hour rollups are the long range
	for i := range 120 {
		require.NoError(t, r.send("L1", sample(1, i+1, old.Add(time.Duration(i)*time.Minute), `"temp_c":`+strconv.Itoa(i))))
	}
	r.rollUp(now)
	for _, tc := range []struct {
		name     string
		from, to time.Time
		step     time.Duration
		source   string
		wantStep time.Duration
	}{
		{"inside the raw retention", now.Add(-6 * time.Hour), now, 0, "raw", 0},
		{"raw steps inside it", now.Add(-6 * time.Hour), now, 30 * time.Second, "raw", 30 * time.Second},
		{"1-minute steps inside the 1-minute retention", now.Add(-47 * time.Hour), now, 10 * time.Minute, "1m", 10 * time.Minute},
		{"before the raw retention", old, old.Add(2 * time.Hour), 0, "1m", time.Minute},
		{"raw steps before the raw retention", old, old.Add(2 * time.Hour), 30 * time.Second, "1m", time.Minute},
		{"before the 1-minute retention", now.Add(-3 * 24 * time.Hour), now, 10 * time.Minute, "1h", time.Hour},
		{"auto step before the 1-minute retention", now.Add(-50 * time.Hour), now.Add(-44 * time.Hour), 0, "1h", time.Hour},
		{"coarse steps", now.Add(-3 * 24 * time.Hour), now, 2 * time.Hour, "1h", 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Series(ctx, "L1", "temp_c", tc.from, tc.to, tc.step)
			require.NoError(t, err)
			require.Equal(t, tc.source, s.Source)
			require.Equal(t, tc.wantStep, s.Step)
		})
	}
	s, err := store.Series(ctx, "L1", "temp_c", now.Add(-3*24*time.Hour), now, 0)
	require.NoError(t, err)
	require.Equal(t, "1h", s.Source)
	require.Equal(t, []telemetry.Point{
		{T: old, Avg: 29.5, Min: 0, Max: 59, N: 60},
		{T: old.Add(time.Hour), Avg: 89.5, Min: 60, Max: 119, N: 60},
	}, s.Points, "the hours from the 1-hour rollups")
}
