package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/protocol"
)

// Commands to lockers (fleet/commands.go): POST answers 202 with the command
// while it is not final (an offline locker's command waits, pending), 200 when
// it is; ?wait=10s waits up to that long for a final state (DESIGN decision
// 16). A repeated idempotency key answers with the first command and the
// header Idempotent-Replayed: true.

// MaxWait bounds ?wait.
const MaxWait = 60 * time.Second

func (a *API) commandRoutes() []route {
	return []route{
		{"POST", "/api/v1/lockers/{id}/commands", false, a.createCommand},
		{"POST", "/api/v1/lockers/{id}/cells/{cell}/open", false, a.openCell},
		{"GET", "/api/v1/commands", false, a.listCommands},
		{"GET", "/api/v1/commands/{id}", false, a.getCommand},
	}
}

// commandRequest is the body of POST /api/v1/lockers/{id}/commands.
type commandRequest struct {
	Method         string          `json:"method"`
	Params         json.RawMessage `json:"params"`
	IdempotencyKey string          `json:"idempotency_key"`
	NotAfter       *time.Time      `json:"not_after"`
	ValidFor       string          `json:"valid_for"` // a duration: "30s", "5m"
}

func (a *API) createCommand(w http.ResponseWriter, r *http.Request) {
	var req commandRequest
	if !readJSON(w, r, &req) {
		return
	}
	a.command(w, r, r.PathValue("id"), req)
}

// openCell is POST /api/v1/lockers/{id}/cells/{cell}/open: cell.open with an
// optional body {"idempotency_key","not_after"|"valid_for"}.
func (a *API) openCell(w http.ResponseWriter, r *http.Request) {
	var req commandRequest
	if r.ContentLength != 0 {
		if !readJSON(w, r, &req) {
			return
		}
	}
	if req.Method != "" || len(req.Params) > 0 {
		writeError(w, http.StatusBadRequest, "invalid", "this endpoint opens the cell of its path: give no method or params")
		return
	}
	req.Method = protocol.MethodCellOpen
	req.Params, _ = json.Marshal(protocol.CellOpenParams{Cell: r.PathValue("cell")})
	a.command(w, r, r.PathValue("id"), req)
}

func (a *API) command(w http.ResponseWriter, r *http.Request, lockerID string, req commandRequest) {
	if a.d.Commands == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "commands are not wired in this hub")
		return
	}
	wait, ok := waitParam(w, r)
	if !ok {
		return
	}
	if req.Method == "" {
		writeError(w, http.StatusBadRequest, "invalid", `method is required (cell.open, cell.status, locker.reboot, power.cycle, display.message)`)
		return
	}
	if _, known := fleet.CommandMethods[req.Method]; !known || fleet.HubOnlyMethods[req.Method] {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("method %q is not a command (cell.open, cell.status, locker.reboot, power.cycle, display.message)", req.Method))
		return
	}
	p, _ := principalFrom(r.Context())
	if (p.Role == access.RoleCourier || p.Role == access.RoleClient) && req.Method != protocol.MethodCellOpen {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the role %s may only send cell.open", p.Role))
		return
	}
	nc := fleet.NewCommand{LockerID: lockerID, Method: req.Method, Params: req.Params, IdempotencyKey: req.IdempotencyKey,
		Caller: callerScope(p), CreatedBy: p.Role + ":" + p.Name}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if nc.IdempotencyKey != "" && nc.IdempotencyKey != key {
			writeError(w, http.StatusBadRequest, "invalid", "the Idempotency-Key header and idempotency_key differ")
			return
		}
		nc.IdempotencyKey = key
	}
	if req.NotAfter != nil {
		nc.NotAfter = *req.NotAfter
	}
	if req.ValidFor != "" {
		d, err := time.ParseDuration(req.ValidFor)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("valid_for: a duration such as \"30s\", got %q", req.ValidFor))
			return
		}
		nc.ValidFor = d
	}
	cmd, created, err := a.d.Commands.Create(r.Context(), nc)
	if err != nil {
		a.commandError(w, r, err)
		return
	}
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	a.answerCommand(w, r, cmd, wait)
}

func (a *API) answerCommand(w http.ResponseWriter, r *http.Request, cmd fleet.Command, wait time.Duration) {
	if wait > 0 && !fleet.CommandFinal(cmd.State) {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		var err error
		if cmd, err = a.d.Commands.Wait(ctx, cmd.ID); err != nil {
			a.commandError(w, r, err)
			return
		}
	}
	status := http.StatusAccepted
	if fleet.CommandFinal(cmd.State) {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/api/v1/commands/"+cmd.ID)
	writeJSON(w, status, cmd)
}

// callerScope is the idempotency scope of a caller: one per user or API client.
func callerScope(p access.Principal) string {
	switch {
	case p.ClientID != 0:
		return "client:" + strconv.FormatInt(p.ClientID, 10)
	case p.UserID != 0:
		return "user:" + strconv.FormatInt(p.UserID, 10)
	case p.TokenID != 0:
		return "token:" + strconv.FormatInt(p.TokenID, 10)
	}
	return "name:" + p.Name
}

func waitParam(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	s := r.URL.Query().Get("wait")
	if s == "" {
		return 0, true
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		d, err = time.Duration(n)*time.Second, nerr
	}
	if err != nil || d < 0 || d > MaxWait {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("wait: a duration up to %s such as \"10s\", got %q", MaxWait, s))
		return 0, false
	}
	return d, true
}

func (a *API) getCommand(w http.ResponseWriter, r *http.Request) {
	if a.d.Commands == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "commands are not wired in this hub")
		return
	}
	wait, ok := waitParam(w, r)
	if !ok {
		return
	}
	cmd, err := a.d.Commands.Get(r.Context(), r.PathValue("id"))
	if err == nil && !a.inCallerScope(r, cmd.LockerID) {
		err = fmt.Errorf("%w: command %s", fleet.ErrNotFound, r.PathValue("id"))
	}
	if err != nil {
		a.commandError(w, r, err)
		return
	}
	if wait > 0 {
		a.answerCommand(w, r, cmd, wait)
		return
	}
	writeJSON(w, http.StatusOK, cmd)
}

var commandListParams = map[string]bool{"locker": true, "state": true, "limit": true}

func (a *API) listCommands(w http.ResponseWriter, r *http.Request) {
	if a.d.Commands == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "commands are not wired in this hub")
		return
	}
	q := r.URL.Query()
	for k := range q {
		if !commandListParams[k] {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (locker, state, limit)", k))
			return
		}
	}
	f := fleet.CommandFilter{LockerID: q.Get("locker"), State: q.Get("state"), Limit: DefaultPageSize}
	if c := callerCarrier(r); c != "" {
		f.Carrier = c
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > fleet.MaxPageSize {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("limit: must be a whole number between 1 and %d, got %q", fleet.MaxPageSize, s))
			return
		}
		f.Limit = n
	}
	cmds, err := a.d.Commands.List(r.Context(), f)
	if err != nil {
		a.commandError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Commands []fleet.Command `json:"commands"`
		Limit    int             `json:"limit"`
	}{cmds, f.Limit})
}

func (a *API) commandError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, fleet.ErrUnknownCell):
		writeError(w, http.StatusNotFound, "unknown_cell", err.Error())
	case errors.Is(err, fleet.ErrIdempotencyConflict):
		writeError(w, http.StatusConflict, "idempotency_conflict", err.Error())
	case errors.Is(err, fleet.ErrTooManyCommands):
		writeError(w, http.StatusServiceUnavailable, "overloaded", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the command was not stored in time; repeat it with the same idempotency key")
	case errors.Is(err, fleet.ErrNotStored):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the database did not take the command; repeat it with the same idempotency key")
	default:
		a.domainError(w, r, err)
	}
}
