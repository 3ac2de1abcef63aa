package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/fleet"
)

func (a *API) twinRoutes() []route {
	return []route{
		{"GET", "/api/v1/lockers/{id}/twin", false, a.getTwin},
		{"PUT", "/api/v1/lockers/{id}/desired", false, a.putDesired},
		{"GET", "/api/v1/lockers/{id}/events", false, a.listEvents},
		{"GET", "/api/v1/lockers/{id}/connectivity", false, a.listConnectivity},
	}
}

// getTwin answers the live twin, or with ?at=<RFC 3339> what the locker
// reported at that moment. The ETag is the desired version, for If-Match.
func (a *API) getTwin(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	l, err := a.d.Registry.Get(r.Context(), id)
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	if at := r.URL.Query().Get("at"); at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "at: want an RFC 3339 time such as 2026-11-23T03:12:00Z")
			return
		}
		v, err := a.d.Twins.At(r.Context(), id, t)
		if err != nil {
			a.domainError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	var v fleet.TwinView
	if tw := a.d.Twins.Get(id); tw != nil {
		v = tw.View()
	} else {
		v = (&fleet.Twin{LockerID: id}).View()
	}
	v.Connectivity.Online = l.Online
	if l.Online {
		v.Connectivity.Since = l.ConnectedAt
	} else {
		v.Connectivity.Since = l.DisconnectedAt
	}
	v.Connectivity.ClockOffsetMs = a.clockOffset(id)
	if a.d.Telemetry != nil {
		if s, ok := a.d.Telemetry.Latest(id); ok {
			v.Telemetry = &fleet.TelemetrySummary{TS: s.TS, Received: s.Received, M: s.M}
		}
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(v.Desired.Version, 10)))
	writeJSON(w, http.StatusOK, v)
}

// putDesired replaces the desired configuration. With If-Match, only when it
// names the current desired version (else 412 Precondition Failed).
func (a *API) putDesired(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.d.Registry.Get(r.Context(), id); err != nil {
		a.domainError(w, r, err)
		return
	}
	ifMatch := int64(-1)
	if h := r.Header.Get("If-Match"); h != "" && h != "*" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", `If-Match: want the ETag of the twin, e.g. "3"`)
			return
		}
		ifMatch = v
	}
	var in struct {
		Config json.RawMessage `json:"config"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if len(in.Config) == 0 || in.Config[0] != '{' {
		writeError(w, http.StatusBadRequest, "invalid", "config must be a JSON object")
		return
	}
	v, err := a.d.Twins.SetDesired(r.Context(), id, ifMatch, in.Config)
	if errors.Is(err, fleet.ErrStale) {
		writeError(w, http.StatusPreconditionFailed, "stale", err.Error())
		return
	}
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(v, 10)))
	writeJSON(w, http.StatusOK, map[string]int64{"version": v})
}

// lockerAndLimit checks the locker exists and reads ?limit= (default def).
func (a *API) lockerAndLimit(w http.ResponseWriter, r *http.Request, def int) (string, int, bool) {
	id := r.PathValue("id")
	if _, err := a.d.Registry.Get(r.Context(), id); err != nil {
		a.domainError(w, r, err)
		return "", 0, false
	}
	limit := def
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "limit must be a number")
			return "", 0, false
		}
		limit = n
	}
	return id, limit, true
}

func (a *API) listConnectivity(w http.ResponseWriter, r *http.Request) {
	id, limit, ok := a.lockerAndLimit(w, r, 50)
	if !ok {
		return
	}
	ps, err := a.d.Registry.Connectivity(r.Context(), id, limit)
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"periods": ps})
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	id, limit, ok := a.lockerAndLimit(w, r, 100)
	if !ok {
		return
	}
	evs, err := a.d.Twins.Events(r.Context(), id, limit)
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

// clockOffset is the locker's estimated clock offset in ms, nil when unknown.
func (a *API) clockOffset(id string) *int64 {
	d, ok := a.d.Twins.ClockOffset(id)
	if !ok {
		return nil
	}
	ms := d.Milliseconds()
	return &ms
}
