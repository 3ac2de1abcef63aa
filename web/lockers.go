package web

import (
	"net/http"
	"time"

	"github.com/lockerhub/lockerhub/fleet"
)

func (a *API) lockerRoutes() []route {
	return []route{
		{"GET", "/api/v1/lockers", false, a.listLockers},
		{"POST", "/api/v1/lockers", false, a.createLocker},
		{"GET", "/api/v1/lockers/{id}", false, a.getLocker},
		{"POST", "/api/v1/lockers/{id}/certificates", false, a.issueCertificate},
		{"POST", "/api/v1/lockers/{id}/certificates/revoke", false, a.revokeCertificates},
		{"POST", "/api/v1/lockers/{id}/enroll-tokens", false, a.createEnrollToken},
	}
}

func (a *API) listLockers(w http.ResponseWriter, r *http.Request) {
	ls, err := a.d.Registry.List(r.Context())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if ls == nil {
		ls = []fleet.Locker{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"lockers": ls})
}

func (a *API) createLocker(w http.ResponseWriter, r *http.Request) {
	var n fleet.NewLocker
	if !readJSON(w, r, &n) {
		return
	}
	l, err := a.d.Registry.Create(r.Context(), n)
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, l)
}

func (a *API) getLocker(w http.ResponseWriter, r *http.Request) {
	l, err := a.d.Registry.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (a *API) issueCertificate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		CSR string `json:"csr"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	c, err := a.d.Registry.IssueCertificate(r.Context(), r.PathValue("id"), []byte(in.CSR))
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (a *API) revokeCertificates(w http.ResponseWriter, r *http.Request) {
	n, err := a.d.Registry.RevokeCertificates(r.Context(), r.PathValue("id"))
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (a *API) createEnrollToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		TTLSeconds int64 `json:"ttl_seconds"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &in) {
		return
	}
	t, err := a.d.Registry.CreateEnrollToken(r.Context(), r.PathValue("id"), time.Duration(in.TTLSeconds)*time.Second)
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}
