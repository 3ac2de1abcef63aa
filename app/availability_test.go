package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestAvailabilityNearAPoint: a partner asks which lockers near a point can
// take a parcel: the online ones within the radius with a free cell of the
// size, nearest first; a locker that goes offline drops out; bad parameters
// get a 400 with a code.
func TestAvailabilityNearAPoint(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	sim := startLockers(t, h, "AV", 3)
	// Berlin Alexanderplatz, ~1.1 km west of it, ~30 km away.
	for id, ll := range map[string][2]float64{"AV00001": {52.5219, 13.4132}, "AV00002": {52.5200, 13.3970}, "AV00003": {52.3900, 13.0650}} {
		_, err := h.Admin.UpdateLocker(ctx, id, map[string]any{"lat": ll[0], "lon": ll[1]})
		require.NoError(t, err)
	}
	type answer struct {
		Lockers []struct {
			ID         string         `json:"id"`
			DistanceKm float64        `json:"distance_km"`
			FreeCells  map[string]int `json:"free_cells"`
		} `json:"lockers"`
	}
	ask := func(query string) (answer, int, string) {
		req, err := http.NewRequestWithContext(ctx, "GET", h.HTTPURL+"/api/v1/availability?"+query, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var a answer
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.Unmarshal(body, &a))
		}
		return a, resp.StatusCode, string(body)
	}
	ids := func(a answer) []string {
		out := []string{}
		for _, l := range a.Lockers {
			out = append(out, l.ID)
		}
		return out
	}

	a, status, body := ask("lat=52.5215&lon=13.4110&radius_km=5&size=M")
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, []string{"AV00001", "AV00002"}, ids(a), "nearest first; the one 30 km away is outside the radius")
	require.Less(t, a.Lockers[0].DistanceKm, 0.3)
	require.InDelta(t, 0.95, a.Lockers[1].DistanceKm, 0.2)
	require.Equal(t, 4, a.Lockers[0].FreeCells["M"])

	a, _, _ = ask("lat=52.5215&lon=13.4110&radius_km=50&limit=1")
	require.Equal(t, []string{"AV00001"}, ids(a))
	a, _, _ = ask("lat=52.5215&lon=13.4110&radius_km=5&size=XL")
	require.Empty(t, a.Lockers, "no free XL cell")

	sim.Locker("AV00001").GoOffline(time.Minute)
	hubtest.Eventually(t, 10*time.Second, "AV00001 offline", func() bool { return !h.App.Broker.Online("AV00001") })
	a, _, _ = ask("lat=52.5215&lon=13.4110&radius_km=5")
	require.Equal(t, []string{"AV00002"}, ids(a), "an offline locker cannot take a parcel now")

	for _, q := range []string{"lon=13.4", "lat=91&lon=13.4", "lat=52&lon=13&radius_km=500", "lat=52&lon=13&size=XXL", "lat=52&lon=13&limit=0", "lat=x&lon=13", "lat=52&lon=13&near=1"} {
		_, status, body := ask(q)
		require.Equal(t, http.StatusBadRequest, status, q)
		require.Contains(t, body, `"code": "invalid"`, q)
	}
}
