package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/lockerhub/lockerhub/alarms"
)

// Alarms (alarms/, docs/alarms.md): the list and one alarm with its history
// and notifications; acknowledge, resolve and mute; silences; the rules and
// the routing (receivers, on-call schedules, the route tree).

func (a *API) alarmRoutes() []route {
	return []route{
		{"GET", "/api/v1/alarms", false, a.listAlarms},
		{"GET", "/api/v1/alarms/kinds", false, a.alarmKinds},
		{"GET", "/api/v1/alarms/notifications", false, a.alarmNotifications},
		{"GET", "/api/v1/alarms/{id}", false, a.getAlarm},
		{"POST", "/api/v1/alarms/{id}/ack", false, a.alarmAction("ack")},
		{"POST", "/api/v1/alarms/{id}/resolve", false, a.alarmAction("resolve")},
		{"POST", "/api/v1/alarms/{id}/mute", false, a.alarmAction("mute")},
		{"GET", "/api/v1/alarms/silences", false, a.listSilences},
		{"POST", "/api/v1/alarms/silences", false, a.createSilence},
		{"DELETE", "/api/v1/alarms/silences/{id}", false, a.expireSilence},
		{"GET", "/api/v1/alarms/rules", false, a.getAlarmRules},
		{"PUT", "/api/v1/alarms/rules", false, a.putAlarmRules},
		{"GET", "/api/v1/alarms/routing", false, a.getAlarmRouting},
		{"PUT", "/api/v1/alarms/routing", false, a.putAlarmRouting},
		{"GET", "/api/v1/lockers/{id}/alarms", false, a.lockerAlarms},
	}
}

// alarmsReady answers 503 when alarms are not wired.
func (a *API) alarmsReady(w http.ResponseWriter) bool {
	if a.d.Alarms == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "alarms are not wired in this hub")
		return false
	}
	return true
}

func (a *API) alarmsError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, alarms.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, alarms.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, alarms.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		a.internal(w, r, err)
	}
}

func pathID(w http.ResponseWriter, r *http.Request, what string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%s id must be a positive number, got %q", what, r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1000 {
		writeError(w, http.StatusBadRequest, "invalid", "limit must be 1 to 1000")
		return 0, false
	}
	return n, true
}

func (a *API) listAlarms(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	list, err := a.d.Alarms.List(r.Context(), alarms.Filter{State: q.Get("state"), LockerID: q.Get("locker"), Kind: q.Get("kind"), Limit: limit})
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarms": list})
}

func (a *API) lockerAlarms(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	list, err := a.d.Alarms.List(r.Context(), alarms.Filter{LockerID: r.PathValue("id"), State: r.URL.Query().Get("state"), Limit: limit})
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarms": list})
}

func (a *API) alarmKinds(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"kinds": alarms.Kinds, "severities": alarms.Severities, "matcher_names": alarms.MatcherNames})
}

func (a *API) getAlarm(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	id, ok := pathID(w, r, "alarm")
	if !ok {
		return
	}
	al, err := a.d.Alarms.Get(r.Context(), id)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	hist, err := a.d.Alarms.History(r.Context(), id)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	ns, err := a.d.Alarms.Notifications(r.Context(), id, 100)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alarm": al, "history": hist, "notifications": ns})
}

func (a *API) alarmAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.alarmsReady(w) {
			return
		}
		id, ok := pathID(w, r, "alarm")
		if !ok {
			return
		}
		var in struct {
			Note string `json:"note"`
		}
		if r.ContentLength != 0 && !readJSON(w, r, &in) {
			return
		}
		var al alarms.Alarm
		var err error
		switch action {
		case "ack":
			al, err = a.d.Alarms.Acknowledge(r.Context(), id, in.Note)
		case "resolve":
			al, err = a.d.Alarms.Resolve(r.Context(), id, in.Note)
		default:
			al, err = a.d.Alarms.Mute(r.Context(), id)
		}
		if err != nil {
			a.alarmsError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, al)
	}
}

func (a *API) alarmNotifications(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	ns, err := a.d.Alarms.Notifications(r.Context(), 0, limit)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"notifications": ns})
}

func (a *API) listSilences(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	list, err := a.d.Alarms.Silences(r.Context(), r.URL.Query().Get("all") == "true")
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"silences": list})
}

func (a *API) createSilence(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	var in alarms.Silence
	if !readJSON(w, r, &in) {
		return
	}
	s, err := a.d.Alarms.CreateSilence(r.Context(), in)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

func (a *API) expireSilence(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	id, ok := pathID(w, r, "silence")
	if !ok {
		return
	}
	if err := a.d.Alarms.ExpireSilence(r.Context(), id); err != nil {
		a.alarmsError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) getAlarmRules(w http.ResponseWriter, _ *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": a.d.Alarms.Rules(), "kinds": alarms.Kinds})
}

func (a *API) putAlarmRules(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	var in struct {
		Rules []alarms.Rule `json:"rules"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.Rules == nil {
		writeError(w, http.StatusBadRequest, "invalid", `body must be {"rules": [...]} (an empty list removes every rule)`)
		return
	}
	rules, err := a.d.Alarms.SetRules(r.Context(), in.Rules)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules})
}

func (a *API) getAlarmRouting(w http.ResponseWriter, _ *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	writeJSON(w, http.StatusOK, a.d.Alarms.Routing())
}

func (a *API) putAlarmRouting(w http.ResponseWriter, r *http.Request) {
	if !a.alarmsReady(w) {
		return
	}
	var in alarms.Routing
	if !readJSON(w, r, &in) {
		return
	}
	rt, err := a.d.Alarms.SetRouting(r.Context(), in)
	if err != nil {
		a.alarmsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rt)
}
