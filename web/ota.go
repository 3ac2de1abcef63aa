package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/lockerhub/lockerhub/ota"
)

// Firmware updates (ota/, docs/ota.md): artifacts, rollouts and their
// progress on the API listener; the download of an artifact and the signing
// key on the device listener (web/device.go).

func (a *API) otaRoutes() []route {
	return []route{
		{"POST", "/api/v1/ota/artifacts", false, a.uploadArtifact},
		{"GET", "/api/v1/ota/artifacts", false, a.listArtifacts},
		{"GET", "/api/v1/ota/artifacts/{id}", false, a.getArtifact},
		{"POST", "/api/v1/ota/rollouts", false, a.createRollout},
		{"GET", "/api/v1/ota/rollouts", false, a.listRollouts},
		{"GET", "/api/v1/ota/rollouts/{id}", false, a.rolloutStatus},
		{"GET", "/api/v1/ota/rollouts/{id}/lockers", false, a.rolloutLockers},
		{"POST", "/api/v1/ota/rollouts/{id}/start", false, a.rolloutAction("start")},
		{"POST", "/api/v1/ota/rollouts/{id}/pause", false, a.rolloutAction("pause")},
		{"POST", "/api/v1/ota/rollouts/{id}/resume", false, a.rolloutAction("resume")},
		{"POST", "/api/v1/ota/rollouts/{id}/cancel", false, a.rolloutAction("cancel")},
		{"POST", "/api/v1/ota/rollouts/{id}/approve", false, a.rolloutAction("approve")},
		{"POST", "/api/v1/ota/rollouts/{id}/rollback", false, a.rolloutAction("rollback")},
	}
}

// artifactUploadPath is the route whose body is a firmware file (bodyLimit).
const artifactUploadPath = "/api/v1/ota/artifacts"

func (a *API) otaReady(w http.ResponseWriter) bool {
	if a.d.OTA == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "firmware updates are not wired in this hub")
		return false
	}
	return true
}

func (a *API) otaError(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig), errors.Is(err, ota.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, ota.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, ota.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ota.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		a.internal(w, r, err)
	}
}

// uploadArtifact takes the file as the request body (any content type) and
// its description as query parameters: version, model (repeated or
// comma-separated), notes.
func (a *API) uploadArtifact(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	q := r.URL.Query()
	art, err := a.d.OTA.Upload(r.Context(), ota.NewArtifact{Version: q.Get("version"), Models: q["model"], Notes: q.Get("notes")}, r.Body)
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, art)
}

func (a *API) listArtifacts(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	list, err := a.d.OTA.Artifacts(r.Context())
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"artifacts": list})
}

func (a *API) getArtifact(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	id, ok := pathID(w, r, "artifact")
	if !ok {
		return
	}
	art, err := a.d.OTA.Artifact(r.Context(), id)
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, art)
}

func (a *API) createRollout(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	var in ota.NewRollout
	if !readJSON(w, r, &in) {
		return
	}
	ro, err := a.d.OTA.Create(r.Context(), in)
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ro)
}

func (a *API) listRollouts(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	list, err := a.d.OTA.Rollouts(r.Context(), limit)
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rollouts": list})
}

func (a *API) rolloutStatus(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	id, ok := pathID(w, r, "rollout")
	if !ok {
		return
	}
	s, err := a.d.OTA.Status(r.Context(), id)
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (a *API) rolloutLockers(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	id, ok := pathID(w, r, "rollout")
	if !ok {
		return
	}
	q := r.URL.Query()
	f := ota.LockerFilter{State: q.Get("state")}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"wave", &f.Wave}, {"limit", &f.Limit}} {
		if s := q.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "invalid", p.name+" must be a non-negative number")
				return
			}
			*p.dst = n
		}
	}
	list, err := a.d.OTA.Lockers(r.Context(), id, f)
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"lockers": list})
}

// rolloutAction is start, pause (optional {"reason"}), resume, cancel,
// approve or rollback (201 with the new rollout).
func (a *API) rolloutAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.otaReady(w) {
			return
		}
		id, ok := pathID(w, r, "rollout")
		if !ok {
			return
		}
		var in struct {
			Reason string `json:"reason"`
		}
		if r.ContentLength != 0 && !readJSON(w, r, &in) {
			return
		}
		var ro ota.Rollout
		var err error
		u := a.d.OTA
		switch action {
		case "start":
			ro, err = u.Start(r.Context(), id)
		case "pause":
			ro, err = u.Pause(r.Context(), id, in.Reason)
		case "resume":
			ro, err = u.Resume(r.Context(), id)
		case "cancel":
			ro, err = u.Cancel(r.Context(), id)
		case "approve":
			ro, err = u.Approve(r.Context(), id)
		case "rollback":
			ro, err = u.Rollback(r.Context(), id)
		}
		if err != nil {
			a.otaError(w, r, err)
			return
		}
		status := http.StatusOK
		if action == "rollback" {
			status = http.StatusCreated
		}
		writeJSON(w, status, ro)
	}
}

// countingWriter counts the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// otaDownload serves an artifact to a locker that presents its client
// certificate and is updating to it in a running rollout, with Range
// requests (resume) through http.ServeContent, at most --ota-max-downloads at once.
func (a *API) otaDownload(w http.ResponseWriter, r *http.Request) {
	if !a.otaReady(w) {
		return
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		writeError(w, http.StatusUnauthorized, "certificate_required", "downloads need the locker's client certificate")
		return
	}
	lockerID := r.TLS.VerifiedChains[0][0].Subject.CommonName
	id, ok := pathID(w, r, "artifact")
	if !ok {
		return
	}
	d, err := a.d.OTA.OpenDownload(r.Context(), lockerID, id)
	if errors.Is(err, ota.ErrConflict) {
		writeError(w, http.StatusForbidden, "not_in_rollout", err.Error())
		return
	}
	if err != nil {
		a.otaError(w, r, err)
		return
	}
	defer d.File.Close()
	release, ok := a.d.OTA.AcquireDownload()
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.d.OTA.RetryAfter().Seconds())))
		writeError(w, http.StatusServiceUnavailable, "busy", "too many downloads at once; retry later")
		return
	}
	defer release()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+d.Artifact.SHA256+`"`)
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", d.Artifact.CreatedAt, d.File)
	result := "complete"
	switch {
	case r.Header.Get("Range") != "":
		result = "partial"
	case cw.n < d.Artifact.Size && r.Method == http.MethodGet:
		result = "aborted"
	}
	a.d.OTA.Served(result, cw.n)
}

// otaKey serves the public half of the artifact signing key (PEM).
func (a *API) otaKey(w http.ResponseWriter, _ *http.Request) {
	if !a.otaReady(w) {
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(a.d.OTA.PublicKey())
}
