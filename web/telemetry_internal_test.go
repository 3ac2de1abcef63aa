package web

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTelemetryNotWired: a hub without telemetry answers 503, not a panic.
func TestTelemetryNotWired(t *testing.T) {
	a := NewAPI(Deps{})
	for _, h := range []func(w *httptest.ResponseRecorder){
		func(w *httptest.ResponseRecorder) {
			a.telemetrySeries(w, httptest.NewRequest("GET", "/api/v1/lockers/L1/telemetry?metric=temp_c", nil))
		},
		func(w *httptest.ResponseRecorder) {
			a.telemetryMetrics(w, httptest.NewRequest("GET", "/api/v1/lockers/L1/telemetry/metrics", nil))
		},
		func(w *httptest.ResponseRecorder) {
			a.telemetryLatest(w, httptest.NewRequest("GET", "/api/v1/lockers/L1/telemetry/latest", nil))
		},
		func(w *httptest.ResponseRecorder) {
			a.fleetTelemetryLatest(w, httptest.NewRequest("GET", "/api/v1/fleet/telemetry/latest?metric=temp_c", nil))
		},
	} {
		w := httptest.NewRecorder()
		h(w)
		require.Equal(t, 503, w.Code)
		require.Contains(t, w.Body.String(), `"code": "unavailable"`)
	}
}

func TestParseStep(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "0": 0, "300": 5 * time.Minute, "1.5": 1500 * time.Millisecond, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute} {
		got, err := parseStep(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"-1", "-5m", "soon", "1e12", "NaN"} {
		_, err := parseStep(in)
		require.Error(t, err, in)
	}
}

func TestParseAPITime(t *testing.T) {
	want := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	for _, in := range []string{"2026-11-23T11:00:00Z", "2026-11-23T12:00:00+01:00", "2026-11-23T12:00:00 01:00", "2026-11-23T11:00:00.000Z"} {
		got, err := parseAPITime(in)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), in)
	}
	for _, in := range []string{"yesterday", "2026-11-23", "2026-11-23 11:00:00Z"} {
		_, err := parseAPITime(in)
		require.Error(t, err, in)
	}
}

func TestWantCSV(t *testing.T) {
	for _, c := range []struct {
		format, accept string
		csv, ok        bool
	}{
		{"", "", false, true},
		{"csv", "", true, true},
		{"json", "text/csv", false, true},
		{"", "text/csv", true, true},
		{"", "text/csv;q=0.9, application/json", true, true},
		{"", "application/json, text/csv", false, true},
		{"", "*/*", false, true},
		{"xml", "", false, false},
	} {
		r := httptest.NewRequest("GET", "/x?format="+c.format, nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		got, ok := wantCSV(httptest.NewRecorder(), r)
		require.Equal(t, c.ok, ok, "%+v", c)
		require.Equal(t, c.csv, got, "%+v", c)
	}
	require.Equal(t, "L_1-temp_c-x.csv", safeFilename("L/1-temp_c-x.csv"))
}
