package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestHubMetrics: what an operator's Prometheus reads without a single
// locker connected: the fleet's totals, PostgreSQL's reachability and pool,
// when the certificates end, the build, and the API's requests by route and
// status class (docs/metrics.md).
func TestHubMetrics(t *testing.T) {
	h := hubtest.Start(t)
	h.AddLocker("MET-1")
	h.AddLocker("MET-2")

	require.Equal(t, 2.0, h.Metric("lockerhub_fleet_lockers"), "every registered locker in one presence or another")
	for _, presence := range []string{"online", "offline", "unknown"} {
		require.True(t, hasSeries(t, h, "lockerhub_fleet_lockers", "presence", presence), presence)
	}
	require.Equal(t, 0.0, h.Metric("lockerhub_fleet_lockers", "presence", "online"))
	for _, size := range []string{"S", "M", "L", "XL"} {
		require.True(t, hasSeries(t, h, "lockerhub_fleet_free_cells", "size", size), "a series for every standard size, zero included: %s", size)
	}
	require.Equal(t, 0.0, h.Metric("lockerhub_fleet_free_cells", "size", "M"))
	require.Equal(t, 1.0, h.Metric("lockerhub_pg_up"))
	require.Equal(t, 16.0, h.Metric("lockerhub_pg_pool_max_connections"))
	ca := h.Metric("lockerhub_certificate_expiry_timestamp_seconds", "cert", "ca")
	require.Greater(t, ca, float64(time.Now().AddDate(5, 0, 0).Unix()), "the CA lasts ten years")
	server := h.Metric("lockerhub_certificate_expiry_timestamp_seconds", "cert", "server")
	require.Greater(t, server, float64(time.Now().Unix()))
	require.Equal(t, 1.0, h.Metric("lockerhub_build_info", "version", "dev"))

	get := func(token string) int {
		req, err := http.NewRequest("GET", h.HTTPURL+"/api/v1/lockers", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	before := h.Metric("lockerhub_http_requests_total", "route", "GET /api/v1/lockers", "code", "2xx")
	require.Equal(t, http.StatusOK, get(h.AdminToken))
	require.Equal(t, http.StatusUnauthorized, get(""))
	require.Equal(t, before+1, h.Metric("lockerhub_http_requests_total", "route", "GET /api/v1/lockers", "code", "2xx"))
	require.Equal(t, 1.0, h.Metric("lockerhub_http_requests_total", "route", "GET /api/v1/lockers", "code", "4xx"))
}

// hasSeries says whether the hub's registry has a series of name with the
// label (h.Metric answers 0 for one that is missing as for one at 0).
func hasSeries(t *testing.T, h *hubtest.Hub, name, label, value string) bool {
	t.Helper()
	mfs, err := h.App.Metrics.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}
