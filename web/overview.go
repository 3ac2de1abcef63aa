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
	sum := a.d.Overview.Summary(f)
	if callerCarrier(r) != "" {
		rows, ok := a.narrowFree(w, r, a.d.Overview.Rows(f))
		if !ok {
			return
		}
		sum.FreeCells = sumFree(rows)
	}
	writeJSON(w, http.StatusOK, sum)
}

// fleetOverview lists the rows of a filter (each with its free cells by size,
// open doors, power and presence) with their summary.
func (a *API) fleetOverview(w http.ResponseWriter, r *http.Request) {
	f, ok := rowFilter(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", "status must be online, offline or unknown")
		return
	}
	sum, rows := a.d.Overview.Summary(f), a.d.Overview.Rows(f)
	if callerCarrier(r) != "" {
		if rows, ok = a.narrowFree(w, r, rows); !ok {
			return
		}
		sum.FreeCells = sumFree(rows)
	}
	writeJSON(w, http.StatusOK, map[string]any{"summary": sum, "rows": rows})
}

// narrowFree counts the rows' free cells, for a caller limited to a carrier,
// as what the carrier may still take (its quotas, less the cells kept for
// other carriers' quotas: parcels.Store.Usable). It answers the error itself.
func (a *API) narrowFree(w http.ResponseWriter, r *http.Request, rows []fleet.Row) ([]fleet.Row, bool) {
	if a.d.Parcels == nil || len(rows) == 0 {
		return rows, true
	}
	free := make(map[string]map[string]int, len(rows))
	for _, row := range rows {
		free[row.ID] = row.FreeCells
	}
	room, err := a.d.Parcels.Usable(r.Context(), callerCarrier(r), free)
	if err != nil {
		a.internal(w, r, err)
		return nil, false
	}
	for i := range rows {
		rows[i].FreeCells = room[rows[i].ID]
	}
	return rows, true
}

func sumFree(rows []fleet.Row) map[string]int {
	out := map[string]int{}
	for _, s := range fleet.Sizes {
		out[s] = 0
	}
	for _, row := range rows {
		for s, n := range row.FreeCells {
			out[s] += n
		}
	}
	return out
}
