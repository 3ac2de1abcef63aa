package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/lockerhub/lockerhub/fleet"
)

// DefaultPageSize is how many lockers GET /api/v1/lockers returns without ?limit.
const DefaultPageSize = 100

func (a *API) lockerRoutes() []route {
	return []route{
		{"GET", "/api/v1/lockers", false, a.listLockers},
		{"POST", "/api/v1/lockers", false, a.createLocker},
		{"POST", "/api/v1/lockers/import", false, a.importLockers},
		{"GET", "/api/v1/lockers/{id}", false, a.getLocker},
		{"PATCH", "/api/v1/lockers/{id}", false, a.updateLocker},
		{"DELETE", "/api/v1/lockers/{id}", false, a.deleteLocker},
		{"GET", "/api/v1/lockers/{id}/cells", false, a.lockerCells},
		{"POST", "/api/v1/lockers/{id}/certificates", false, a.issueCertificate},
		{"POST", "/api/v1/lockers/{id}/certificates/revoke", false, a.revokeCertificates},
		{"POST", "/api/v1/lockers/{id}/enroll-tokens", false, a.createEnrollToken},
	}
}

// bodyLimit is the largest request body a route takes: MaxBody, except for
// the CSV import.
func bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && r.URL.Path == "/api/v1/lockers/import" {
		return fleet.MaxImportBytes
	}
	if r.Method == http.MethodPost && r.URL.Path == artifactUploadPath {
		return 1 << 40 // the updater applies its own limit (--ota-max-artifact-bytes: 413)
	}
	return MaxBody
}

var listParams = map[string]bool{"segment": true, "model": true, "carrier": true, "status": true, "q": true, "limit": true, "offset": true}

// readPage reads ?limit (1 to max) and ?offset into limit and offset, which
// keep their values when absent; false after a 400 for a bad one.
func readPage(w http.ResponseWriter, q url.Values, limit, offset *int, max int) bool {
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"limit", limit, 1, max}, {"offset", offset, 0, 1 << 30}} {
		s := q.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < p.min || n > p.max {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%s: must be a whole number between %d and %d, got %q", p.name, p.min, p.max, s))
			return false
		}
		*p.dst = n
	}
	return true
}

func (a *API) listLockers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if !listParams[k] {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (segment, model, carrier, status, q, limit, offset)", k))
			return
		}
	}
	f := fleet.LockerFilter{Segment: q.Get("segment"), Model: q.Get("model"), Carrier: scopeCarrier(r, q.Get("carrier")),
		Status: q.Get("status"), Query: q.Get("q"), Limit: DefaultPageSize}
	if !readPage(w, q, &f.Limit, &f.Offset, fleet.MaxPageSize) {
		return
	}
	ls, total, err := a.d.Registry.List(r.Context(), f)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Lockers []fleet.Locker `json:"lockers"`
		Total   int            `json:"total"`
		Limit   int            `json:"limit"`
		Offset  int            `json:"offset"`
	}{ls, total, f.Limit, f.Offset})
}

func (a *API) createLocker(w http.ResponseWriter, r *http.Request) {
	var n fleet.NewLocker
	if !readJSON(w, r, &n) {
		return
	}
	if c := callerCarrier(r); c != "" && !slices.Contains(n.Carriers, c) {
		n.Carriers = append(n.Carriers, c) // a carrier's technician installs lockers for the carrier
	}
	l, _, err := a.d.Registry.Create(r.Context(), n)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, l)
}

func (a *API) updateLocker(w http.ResponseWriter, r *http.Request) {
	var p fleet.LockerPatch
	if !readJSON(w, r, &p) {
		return
	}
	if c := callerCarrier(r); c != "" && p.Carriers.Set && !slices.Contains(p.Carriers.V, c) {
		writeError(w, http.StatusBadRequest, "invalid", "carriers: must keep "+c+" (a caller limited to "+c+" cannot give a locker away)")
		return
	}
	l, _, err := a.d.Registry.Update(r.Context(), r.PathValue("id"), p)
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (a *API) deleteLocker(w http.ResponseWriter, r *http.Request) {
	n, _, err := a.d.Registry.Delete(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (a *API) lockerCells(w http.ResponseWriter, r *http.Request) {
	cells, err := a.d.Registry.Cells(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cells": cells})
}

func (a *API) importLockers(w http.ResponseWriter, r *http.Request) {
	if c := callerCarrier(r); c != "" {
		writeError(w, http.StatusForbidden, "forbidden", "a caller limited to the carrier "+c+" may not import lockers; ask a user of the whole fleet")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "text/csv" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the CSV with Content-Type: text/csv")
		return
	}
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the CSV is larger than %d MiB; split it", fleet.MaxImportBytes>>20))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_body", "reading the request body: "+err.Error())
		return
	}
	changes, err := a.d.Registry.Import(r.Context(), bytes.NewReader(body))
	if err != nil {
		a.fleetError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int{"created": len(changes)})
}

func (a *API) getLocker(w http.ResponseWriter, r *http.Request) {
	l, err := a.d.Registry.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fleetError(w, r, err)
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
