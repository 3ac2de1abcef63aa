package ota

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWaveSizes(t *testing.T) {
	p := Policy{}
	require.NoError(t, p.normalize())
	require.Equal(t, []int{10, 25, 25, 25, 15}, p.waveSizes(100))
	require.Equal(t, []int{3}, p.waveSizes(3))
	require.Nil(t, p.waveSizes(0))
	p = Policy{Canary: 20, Percent: 45}
	require.NoError(t, p.normalize())
	require.Equal(t, []int{20, 90, 90}, p.waveSizes(200))
	p = Policy{Canary: 5, Growth: GrowthExponential, Factor: 3}
	require.NoError(t, p.normalize())
	require.Equal(t, []int{5, 15, 45, 35}, p.waveSizes(100))
}

func TestPolicyInvalid(t *testing.T) {
	for _, p := range []Policy{
		{Canary: -1}, {Growth: "linear"}, {Percent: 120}, {Growth: GrowthExponential, Factor: 0.5}, {Order: "name"},
		{SuccessPct: -1}, {FailurePct: 101}, {Soak: Duration(-time.Second)}, {HealthFactor: 0.5}, {MaxInFlight: -1},
		{Window: &Window{Start: "25:00", End: "03:00"}}, {Window: &Window{Start: "01:00", End: "3"}},
	} {
		require.ErrorIs(t, p.normalize(), ErrInvalid, "%+v", p)
	}
}

func TestWindowContains(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	w := Window{Start: "01:00", End: "05:00"}
	require.True(t, w.Contains(at("2026-12-03T00:30:00Z"), berlin), "01:30 in Berlin")
	require.False(t, w.Contains(at("2026-12-03T04:30:00Z"), berlin), "05:30 in Berlin")
	require.True(t, w.Contains(at("2026-12-03T04:30:00Z"), time.UTC))
	night := Window{Start: "22:00", End: "02:00"}
	require.True(t, night.Contains(at("2026-12-03T23:00:00Z"), time.UTC))
	require.True(t, night.Contains(at("2026-12-03T01:59:00Z"), time.UTC))
	require.False(t, night.Contains(at("2026-12-03T02:00:00Z"), time.UTC))
	require.False(t, night.Contains(at("2026-12-03T12:00:00Z"), time.UTC))
}

func TestCompareHealth(t *testing.T) {
	others := HealthCounts{Lockers: 100, Reconnects: 10, CommandFailures: 5, Faults: 0}
	require.Empty(t, compareHealth(HealthCounts{Lockers: 10, Reconnects: 2}, others, 2, 0.2), "0.2 ≤ 2×0.1+0.2")
	v := compareHealth(HealthCounts{Lockers: 10, Reconnects: 5, Faults: 3}, others, 2, 0.2)
	require.Contains(t, v, "reconnects 0.50 per updated locker vs 0.10 per other")
	require.Contains(t, v, "door/lock faults 0.30")
	require.NotContains(t, v, "command failures")
	require.Empty(t, compareHealth(HealthCounts{Lockers: 10, Faults: 30}, HealthCounts{}, 2, 0.2), "nobody to compare with")
}

func TestReasonClass(t *testing.T) {
	require.Equal(t, "install", reasonClass("install: injected install failure"))
	require.Equal(t, "hash_mismatch", reasonClass("hash_mismatch: got 00"))
	require.Equal(t, "other", reasonClass("the locker \u00a0said something else"))
}

func TestDurationJSON(t *testing.T) {
	var p Policy
	require.NoError(t, json.Unmarshal([]byte(`{"soak":"1m30s"}`), &p))
	require.Equal(t, Duration(90*time.Second), p.Soak)
	require.NoError(t, json.Unmarshal([]byte(`{"soak":45}`), &p))
	require.Equal(t, Duration(45*time.Second), p.Soak)
	require.Error(t, json.Unmarshal([]byte(`{"soak":"soon"}`), &p))
	out, _ := json.Marshal(Policy{Soak: Duration(time.Minute)})
	require.Contains(t, string(out), `"soak":"1m0s"`)
}
