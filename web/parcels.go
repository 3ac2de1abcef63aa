package web

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lockerhub/lockerhub/parcels"
)

// Parcels (parcels/, docs/parcels.md): deliveries for delivery services. A
// carrier's callers see only the carrier's parcels (another's is 404). The
// pickup code is never in an answer.

func (a *API) parcelRoutes() []route {
	return []route{
		{"POST", "/api/v1/parcels", false, a.createParcel},
		{"GET", "/api/v1/parcels", false, a.listParcels},
		{"GET", "/api/v1/parcels/{id}", false, a.getParcel},
		{"POST", "/api/v1/parcels/{id}/dropoff", false, a.parcelDropoff},
		{"POST", "/api/v1/parcels/{id}/collect", false, a.parcelCollect},
		{"POST", "/api/v1/parcels/{id}/cancel", false, a.cancelParcel},
		{"PATCH", "/api/v1/parcels/{id}", false, a.editParcel},
		{"POST", "/api/v1/parcels/{id}/move", false, a.moveParcel},
		{"GET", "/api/v1/returns", false, a.listReturns},
		{"POST", "/api/v1/returns", false, a.createReturn},
		{"POST", "/api/v1/lockers/{id}/cells/{cell}/service-open", false, a.serviceOpen},
		{"POST", "/api/v1/lockers/{id}/service-codes", false, a.serviceCode},
	}
}

func parcelCaller(r *http.Request) parcels.Caller {
	p, _ := principalFrom(r.Context())
	return parcels.Caller{Scope: callerScope(p), Name: p.Role + ":" + p.Name, Carrier: p.Carrier, ClientID: p.ClientID}
}

func (a *API) parcelsWired(w http.ResponseWriter) bool {
	if a.d.Parcels == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "parcels are not wired in this hub")
		return false
	}
	return true
}

// answerCreated answers a new parcel 201, or one an Idempotency-Key found
// again 200 with Idempotent-Replayed.
func answerCreated(w http.ResponseWriter, p parcels.Parcel, created bool) {
	w.Header().Set("Location", "/api/v1/parcels/"+p.ID)
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, p)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (a *API) createParcel(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	var n parcels.NewParcel
	if !readJSON(w, r, &n) {
		return
	}
	n.IdempotencyKey = r.Header.Get("Idempotency-Key")
	if n.LockerID != "" && !a.inCallerScope(r, n.LockerID) {
		writeError(w, http.StatusNotFound, "not_found", "locker "+n.LockerID+" not found")
		return
	}
	p, created, err := a.d.Parcels.Create(r.Context(), parcelCaller(r), n)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	answerCreated(w, p, created)
}

var parcelListParams = map[string]bool{"locker": true, "state": true, "carrier": true, "reference": true, "tracking": true,
	"barcode": true, "phone": true, "email": true, "from": true, "to": true, "limit": true, "offset": true}

func (a *API) listParcels(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	q := r.URL.Query()
	for k := range q {
		if !parcelListParams[k] {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (locker, state, carrier, reference, tracking, barcode, phone, email, from, to, limit, offset)", k))
			return
		}
	}
	f := parcels.Filter{LockerID: q.Get("locker"), State: q.Get("state"), Carrier: q.Get("carrier"), Reference: q.Get("reference"),
		Tracking: q.Get("tracking"), Barcode: q.Get("barcode"), Phone: q.Get("phone"), Email: q.Get("email"), Limit: DefaultPageSize}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		t, err := parseDateParam(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", b.name+": "+err.Error())
			return
		}
		*b.t = t
	}
	if !readPage(w, q, &f.Limit, &f.Offset, parcels.MaxPage) {
		return
	}
	ps, total, err := a.d.Parcels.List(r.Context(), parcelCaller(r), f)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Parcels []parcels.Parcel `json:"parcels"`
		Total   int              `json:"total"`
		Limit   int              `json:"limit"`
		Offset  int              `json:"offset"`
	}{ps, total, f.Limit, f.Offset})
}

func (a *API) getParcel(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	p, err := a.d.Parcels.Get(r.Context(), parcelCaller(r), r.PathValue("id"))
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// parcelOpen is the answer of dropoff and collect: the parcel and the
// cell.open command (GET /api/v1/commands/{id} follows it).
type parcelOpen struct {
	Parcel  parcels.Parcel `json:"parcel"`
	Command any            `json:"command"`
}

func (a *API) parcelDropoff(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	p, cmd, err := a.d.Parcels.Dropoff(r.Context(), parcelCaller(r), r.PathValue("id"))
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, parcelOpen{p, cmd})
}

func (a *API) parcelCollect(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	p, cmd, err := a.d.Parcels.Collect(r.Context(), parcelCaller(r), r.PathValue("id"))
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, parcelOpen{p, cmd})
}

func (a *API) cancelParcel(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &req) {
		return
	}
	p, err := a.d.Parcels.Cancel(r.Context(), parcelCaller(r), r.PathValue("id"), req.Reason)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// parseDateParam reads an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
func parseDateParam(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a date (2026-12-03)", v)
}

func (a *API) editParcel(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	var e parcels.Edit
	if !readJSON(w, r, &e) {
		return
	}
	p, err := a.d.Parcels.Edit(r.Context(), parcelCaller(r), r.PathValue("id"), e)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *API) moveParcel(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	var req struct {
		Cell string `json:"cell"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	p, cmd, err := a.d.Parcels.Move(r.Context(), parcelCaller(r), r.PathValue("id"), req.Cell)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, parcelOpen{p, cmd})
}

// listReturns: what couriers collect, per locker and carrier.
func (a *API) listReturns(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	q := r.URL.Query()
	for k := range q {
		if k != "locker" && k != "carrier" {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (locker, carrier)", k))
			return
		}
	}
	if l := q.Get("locker"); l != "" && !a.inCallerScope(r, l) {
		writeError(w, http.StatusNotFound, "not_found", "locker "+l+" not found")
		return
	}
	groups, err := a.d.Parcels.ToCollect(r.Context(), parcelCaller(r), q.Get("locker"), q.Get("carrier"))
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Groups []parcels.ReturnGroup `json:"groups"`
	}{groups})
}

// createReturn: a customer return; the sender gets the return code.
func (a *API) createReturn(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	var n parcels.NewReturn
	if !readJSON(w, r, &n) {
		return
	}
	n.IdempotencyKey = r.Header.Get("Idempotency-Key")
	if n.LockerID != "" && !a.inCallerScope(r, n.LockerID) {
		writeError(w, http.StatusNotFound, "not_found", "locker "+n.LockerID+" not found")
		return
	}
	p, created, err := a.d.Parcels.CreateReturn(r.Context(), parcelCaller(r), n)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	answerCreated(w, p, created)
}

// serviceOpen: a technician opens any cell in service mode (cause
// service:<user>, audited).
func (a *API) serviceOpen(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	id := r.PathValue("id")
	if !a.inCallerScope(r, id) {
		writeError(w, http.StatusNotFound, "not_found", "locker "+id+" not found")
		return
	}
	p, _ := principalFrom(r.Context())
	op, err := a.d.Parcels.ServiceOpen(r.Context(), parcelCaller(r), p.Name, id, r.PathValue("cell"))
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, op.Command)
}

// serviceCode: a one-time code that opens a cell once at the locker.
func (a *API) serviceCode(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) {
		return
	}
	id := r.PathValue("id")
	if !a.inCallerScope(r, id) {
		writeError(w, http.StatusNotFound, "not_found", "locker "+id+" not found")
		return
	}
	var req struct {
		Cell string `json:"cell"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	p, _ := principalFrom(r.Context())
	sc, err := a.d.Parcels.IssueServiceCode(r.Context(), p.Name, id, req.Cell)
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, sc)
}

func (a *API) parcelError(w http.ResponseWriter, r *http.Request, err error) {
	var refusal *parcels.Refusal
	switch {
	case errors.As(err, &refusal):
		writeError(w, http.StatusConflict, refusal.Code, refusal.Message)
	case errors.Is(err, parcels.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, parcels.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, parcels.ErrQuota):
		writeError(w, http.StatusConflict, "carrier_quota", err.Error())
	case errors.Is(err, parcels.ErrNoFreeCell):
		writeError(w, http.StatusConflict, "no_free_cell", err.Error())
	case errors.Is(err, parcels.ErrIdempotencyConflict):
		writeError(w, http.StatusConflict, "idempotency_conflict", err.Error())
	case errors.Is(err, parcels.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default: // fleet's errors of the cell.open command (disabled locker, …)
		a.commandError(w, r, err)
	}
}
