package web

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/lockerhub/lockerhub/fleet"
)

// Availability: which lockers near a point can take a parcel now (issue 13,
// integrations): for marketplaces and stores choosing a locker before they
// create a delivery.

func (a *API) availabilityRoutes() []route {
	return []route{{"GET", "/api/v1/availability", false, a.availability}}
}

// availableLocker is one locker of the answer.
type availableLocker struct {
	ID         string         `json:"id"`
	Address    string         `json:"address"`
	Lat        float64        `json:"lat"`
	Lon        float64        `json:"lon"`
	DistanceKm float64        `json:"distance_km"`
	FreeCells  map[string]int `json:"free_cells"`
}

var availabilityParams = map[string]bool{"lat": true, "lon": true, "radius_km": true, "size": true, "limit": true}

// availability serves GET /api/v1/availability?lat=&lon=[&radius_km=5][&size=M][&limit=20]:
// the online, enabled lockers within the radius that the caller may use and
// that have a free cell (of size, when given), nearest first.
func (a *API) availability(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if !availabilityParams[k] {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (lat, lon, radius_km, size, limit)", k))
			return
		}
	}
	num := func(name string, def float64, required bool) (float64, bool) {
		s := q.Get(name)
		if s == "" {
			if required {
				writeError(w, http.StatusBadRequest, "invalid", name+" is required")
				return 0, false
			}
			return def, true
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%s: %q is not a number", name, s))
			return 0, false
		}
		return v, true
	}
	lat, ok := num("lat", 0, true)
	if !ok {
		return
	}
	lon, ok := num("lon", 0, true)
	if !ok {
		return
	}
	radius, ok := num("radius_km", 5, false)
	if !ok {
		return
	}
	limit, ok := num("limit", 20, false)
	if !ok {
		return
	}
	if limit < 1 || limit > 100 || limit != float64(int(limit)) {
		writeError(w, http.StatusBadRequest, "invalid", "limit: a whole number from 1 to 100")
		return
	}
	size := q.Get("size")
	if size != "" && !slices.Contains(fleet.Sizes, size) {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("size: %q is not a cell size (%v)", size, fleet.Sizes))
		return
	}
	near, err := a.d.Registry.Near(r.Context(), lat, lon, radius, callerCarrier(r))
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	// The online lockers with a free cell (of size, when given); for a
	// caller limited to a carrier, counted as what that carrier may still
	// take (its quotas, and cells kept for others' quotas).
	var cand []availableLocker
	free := map[string]map[string]int{}
	for _, n := range near {
		row, ok := a.d.Overview.Row(n.ID)
		if !ok || !row.Online || freeOf(row.FreeCells, size) == 0 {
			continue
		}
		cand = append(cand, availableLocker{ID: n.ID, Address: n.Address, Lat: *n.Lat, Lon: *n.Lon,
			DistanceKm: float64(int(n.DistanceKm*1000+0.5)) / 1000, FreeCells: row.FreeCells})
		free[n.ID] = row.FreeCells
	}
	if c := callerCarrier(r); c != "" && a.d.Parcels != nil {
		room, err := a.d.Parcels.Usable(r.Context(), c, free)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		for i := range cand {
			cand[i].FreeCells = room[cand[i].ID]
		}
	}
	out := []availableLocker{}
	for _, l := range cand {
		if freeOf(l.FreeCells, size) == 0 {
			continue
		}
		out = append(out, l)
		if len(out) == int(limit) {
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"lockers": out})
}

// freeOf sums free cells of a size ("": of every size).
func freeOf(free map[string]int, size string) int {
	n := 0
	for s, c := range free {
		if size == "" || s == size {
			n += c
		}
	}
	return n
}
