package web

import (
	"net/http"

	"github.com/lockerhub/lockerhub/fleet"
)

func (a *API) overviewRoutes() []route {
	return []route{
		{"GET", "/api/v1/fleet/summary", false, a.fleetSummary},
		{"GET", "/api/v1/fleet/overview", false, a.fleetOverview},
	}
}

func rowFilter(r *http.Request) (fleet.RowFilter, bool) {
	q := r.URL.Query()
	f := fleet.RowFilter{Segment: q.Get("segment"), Model: q.Get("model"), Carrier: scopeCarrier(r, q.Get("carrier")), Status: q.Get("status"), Query: q.Get("q")}
	switch f.Status {
	case "", fleet.PresenceOnline, fleet.PresenceOffline, fleet.PresenceUnknown:
		return f, true
	}
	return f, false
}

// fleetSummary counts lockers online, offline, unknown (not back yet since the
// hub started), on battery, open doors and free cells by size, for a filter.
func (a *API) fleetSummary(w http.ResponseWriter, r *http.Request) {
	f, ok := rowFilter(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", "status must be online, offline or unknown")
		return
	}
	writeJSON(w, http.StatusOK, a.d.Overview.Summary(f))
}

// fleetOverview lists the rows of a filter (each with its free cells by size,
// open doors, power and presence) with their summary.
func (a *API) fleetOverview(w http.ResponseWriter, r *http.Request) {
	f, ok := rowFilter(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", "status must be online, offline or unknown")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"summary": a.d.Overview.Summary(f), "rows": a.d.Overview.Rows(f)})
}
