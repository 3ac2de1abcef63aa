package web

import (
	"errors"
	"net/http"

	"github.com/lockerhub/lockerhub/fleet"
)

func (a *API) modelRoutes() []route {
	return []route{
		{"GET", "/api/v1/models", false, a.listModels},
		{"POST", "/api/v1/models", false, a.createModel},
		{"GET", "/api/v1/models/{id}", false, a.getModel},
		{"PUT", "/api/v1/models/{id}", false, a.putModel},
		{"DELETE", "/api/v1/models/{id}", false, a.deleteModel},
	}
}

func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	ms, err := a.d.Registry.Models(r.Context())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": ms})
}

func (a *API) createModel(w http.ResponseWriter, r *http.Request) {
	var n fleet.NewModel
	if !readJSON(w, r, &n) {
		return
	}
	m, _, err := a.d.Registry.CreateModel(r.Context(), n)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, m)
}

func (a *API) getModel(w http.ResponseWriter, r *http.Request) {
	m, err := a.d.Registry.GetModel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *API) putModel(w http.ResponseWriter, r *http.Request) {
	var n fleet.NewModel
	if !readJSON(w, r, &n) {
		return
	}
	m, _, err := a.d.Registry.UpdateModel(r.Context(), r.PathValue("id"), n)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *API) deleteModel(w http.ResponseWriter, r *http.Request) {
	if _, err := a.d.Registry.DeleteModel(r.Context(), r.PathValue("id")); err != nil {
		a.fleetError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fleetError maps the fleet model's errors (in use: 409; a CSV import error
// with its line and column) and passes the others to domainError.
func (a *API) fleetError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *fleet.ImportError
	switch {
	case errors.As(err, &ie):
		status, code := http.StatusBadRequest, "invalid"
		if errors.Is(err, fleet.ErrExists) {
			status, code = http.StatusConflict, "exists"
		} else if !errors.Is(err, fleet.ErrInvalid) {
			a.internal(w, r, err)
			return
		}
		writeJSON(w, status, importError{Code: code, Message: err.Error(), Line: ie.Line, Column: ie.Column})
	case errors.Is(err, fleet.ErrInUse):
		writeError(w, http.StatusConflict, "in_use", err.Error())
	default:
		a.domainError(w, r, err)
	}
}

// importError is the error of a CSV import: where in the file it is.
type importError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Line    int    `json:"line"`
	Column  string `json:"column,omitempty"`
}
