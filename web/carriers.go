package web

import (
	"net/http"
	"slices"

	"github.com/lockerhub/lockerhub/fleet"
)

// Carriers (fleet/carriers.go, docs/parcels.md "Carriers"): the transport
// companies and their share of the network: whole lockers, segments and
// quotas of cells per size in shared lockers. Admins divide the network;
// everybody reads it, a caller limited to a carrier only its own carrier
// (another is 404, as one that does not exist).

func (a *API) carrierRoutes() []route {
	return []route{
		{"GET", "/api/v1/carriers", false, a.listCarriers},
		{"POST", "/api/v1/carriers", false, a.createCarrier},
		{"GET", "/api/v1/carriers/usage", false, a.carrierUsage},
		{"GET", "/api/v1/carriers/{carrier}", false, a.getCarrier},
		{"PATCH", "/api/v1/carriers/{carrier}", false, a.patchCarrier},
		{"DELETE", "/api/v1/carriers/{carrier}", false, a.deleteCarrier},
		{"PUT", "/api/v1/carriers/{carrier}/lockers/{locker}", false, a.assignCarrierLocker},
		{"DELETE", "/api/v1/carriers/{carrier}/lockers/{locker}", false, a.unassignCarrierLocker},
		{"PUT", "/api/v1/carriers/{carrier}/segments/{segment}", false, a.assignCarrierSegment},
		{"DELETE", "/api/v1/carriers/{carrier}/segments/{segment}", false, a.unassignCarrierSegment},
		{"PUT", "/api/v1/carriers/{carrier}/quotas/{locker}", false, a.setCarrierQuotas},
		{"DELETE", "/api/v1/carriers/{carrier}/quotas/{locker}", false, a.deleteCarrierQuotas},
	}
}

// carrierVisible reports whether the caller may see carrier id.
func carrierVisible(r *http.Request, id string) bool {
	c := callerCarrier(r)
	return c == "" || c == id
}

func (a *API) listCarriers(w http.ResponseWriter, r *http.Request) {
	cs, err := a.d.Registry.Carriers(r.Context())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	cs = slices.DeleteFunc(cs, func(c fleet.Carrier) bool { return !carrierVisible(r, c.ID) })
	writeJSON(w, http.StatusOK, map[string]any{"carriers": cs})
}

func (a *API) createCarrier(w http.ResponseWriter, r *http.Request) {
	var n fleet.NewCarrier
	if !readJSON(w, r, &n) {
		return
	}
	c, err := a.d.Registry.CreateCarrier(r.Context(), n)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/carriers/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
}

func (a *API) getCarrier(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("carrier")
	if !carrierVisible(r, id) {
		writeError(w, http.StatusNotFound, "not_found", "not found: carrier "+id)
		return
	}
	d, err := a.d.Registry.Carrier(r.Context(), id)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (a *API) patchCarrier(w http.ResponseWriter, r *http.Request) {
	var p fleet.CarrierPatch
	if !readJSON(w, r, &p) {
		return
	}
	d, err := a.d.Registry.UpdateCarrier(r.Context(), r.PathValue("carrier"), p)
	a.carrierAnswer(w, r, d, err)
}

func (a *API) deleteCarrier(w http.ResponseWriter, r *http.Request) {
	if err := a.d.Registry.DeleteCarrier(r.Context(), r.PathValue("carrier")); err != nil {
		a.fleetError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) carrierAnswer(w http.ResponseWriter, r *http.Request, d fleet.CarrierDetail, err error) {
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (a *API) assignCarrierLocker(w http.ResponseWriter, r *http.Request) {
	d, err := a.d.Registry.AssignLocker(r.Context(), r.PathValue("carrier"), r.PathValue("locker"))
	a.carrierAnswer(w, r, d, err)
}

func (a *API) unassignCarrierLocker(w http.ResponseWriter, r *http.Request) {
	d, err := a.d.Registry.UnassignLocker(r.Context(), r.PathValue("carrier"), r.PathValue("locker"))
	a.carrierAnswer(w, r, d, err)
}

func (a *API) assignCarrierSegment(w http.ResponseWriter, r *http.Request) {
	d, err := a.d.Registry.AssignSegment(r.Context(), r.PathValue("carrier"), r.PathValue("segment"))
	a.carrierAnswer(w, r, d, err)
}

func (a *API) unassignCarrierSegment(w http.ResponseWriter, r *http.Request) {
	d, err := a.d.Registry.UnassignSegment(r.Context(), r.PathValue("carrier"), r.PathValue("segment"))
	a.carrierAnswer(w, r, d, err)
}

// quotaBody is the body of PUT …/quotas/{locker}: cells per size.
type quotaBody struct {
	Cells map[string]int `json:"cells"`
}

func (a *API) setCarrierQuotas(w http.ResponseWriter, r *http.Request) {
	var b quotaBody
	if !readJSON(w, r, &b) {
		return
	}
	if len(b.Cells) == 0 {
		writeError(w, http.StatusBadRequest, "invalid", `cells: give cells per size, e.g. {"cells":{"M":6,"L":2}} (DELETE removes the quota)`)
		return
	}
	d, err := a.d.Registry.SetQuotas(r.Context(), r.PathValue("carrier"), r.PathValue("locker"), b.Cells)
	a.carrierAnswer(w, r, d, err)
}

func (a *API) deleteCarrierQuotas(w http.ResponseWriter, r *http.Request) {
	d, err := a.d.Registry.SetQuotas(r.Context(), r.PathValue("carrier"), r.PathValue("locker"), nil)
	a.carrierAnswer(w, r, d, err)
}

// sizeUse is a carrier's use of one cell size: the cells its open parcels
// hold in all its lockers, and, where it has quotas of that size, their sum
// and the cells held in those lockers.
type sizeUse struct {
	Used      int  `json:"used"`
	Quota     *int `json:"quota,omitempty"`
	QuotaUsed *int `json:"quota_used,omitempty"`
}

// quotaUse is one quota with its use: cells held, and free cells the
// carrier may still take there.
type quotaUse struct {
	LockerID string `json:"locker"`
	Size     string `json:"size"`
	Cells    int    `json:"cells"`
	Used     int    `json:"used"`
	Free     int    `json:"free"`
}

type carrierUse struct {
	fleet.Carrier
	Lockers  int                `json:"lockers"` // lockers it may use
	Segments []string           `json:"segments"`
	Sizes    map[string]sizeUse `json:"sizes"`
	Quotas   []quotaUse         `json:"quotas"`
}

// carrierUsage serves GET /api/v1/carriers/usage: per carrier, the lockers
// it may use, the cells its parcels hold per size against its quotas, and
// each quota with what is held and still free for it.
func (a *API) carrierUsage(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, "invalid", "no query parameters")
		return
	}
	if !a.parcelsWired(w) {
		return
	}
	ctx := r.Context()
	cs, err := a.d.Registry.Carriers(ctx)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	qs, err := a.d.Registry.QuotasAt(ctx, nil, nil)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	uses, err := a.d.Parcels.Usage(ctx)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	held := map[[3]string]int{} // carrier, locker, size
	for _, u := range uses {
		held[[3]string{u.Carrier, u.LockerID, u.Size}] = u.Cells
	}
	out := []carrierUse{}
	for _, c := range cs {
		if !carrierVisible(r, c.ID) {
			continue
		}
		d, err := a.d.Registry.Carrier(ctx, c.ID)
		if err != nil {
			a.fleetError(w, r, err)
			return
		}
		cu := carrierUse{Carrier: c, Segments: d.Segments, Sizes: map[string]sizeUse{}, Quotas: []quotaUse{}}
		if a.d.Overview != nil {
			cu.Lockers = len(a.d.Overview.Rows(fleet.RowFilter{Carrier: c.ID}))
		}
		for _, u := range uses {
			if u.Carrier == c.ID {
				su := cu.Sizes[u.Size]
				su.Used += u.Cells
				cu.Sizes[u.Size] = su
			}
		}
		free := map[string]map[string]int{}
		for _, q := range qs {
			if q.Carrier != c.ID {
				continue
			}
			used := held[[3]string{c.ID, q.LockerID, q.Size}]
			cu.Quotas = append(cu.Quotas, quotaUse{LockerID: q.LockerID, Size: q.Size, Cells: q.Cells, Used: used})
			su := cu.Sizes[q.Size]
			if su.Quota == nil {
				su.Quota, su.QuotaUsed = new(int), new(int)
			}
			*su.Quota += q.Cells
			*su.QuotaUsed += used
			cu.Sizes[q.Size] = su
			if a.d.Overview != nil {
				if row, ok := a.d.Overview.Row(q.LockerID); ok {
					free[q.LockerID] = row.FreeCells
				}
			}
		}
		room, err := a.d.Parcels.Usable(ctx, c.ID, free)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		for i, q := range cu.Quotas {
			cu.Quotas[i].Free = room[q.LockerID][q.Size]
		}
		out = append(out, cu)
	}
	writeJSON(w, http.StatusOK, map[string]any{"carriers": out})
}
