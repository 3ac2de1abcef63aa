package web

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/video"
)

// Video (video/, docs/video.md): WHEP viewers of a locker's camera (POST an
// SDP offer, 201 with the answer and the resource in Location; DELETE the
// resource to leave), the locker's video state, and the clips recorded on
// alarms.

func (a *API) videoRoutes() []route {
	return []route{
		{"POST", "/api/v1/lockers/{id}/video/whep", false, a.whepOffer},
		{"DELETE", "/api/v1/lockers/{id}/video/whep/{viewer}", false, a.whepLeave},
		{"GET", "/api/v1/lockers/{id}/video", false, a.lockerVideo},
		{"GET", "/api/v1/recordings", false, a.listRecordings},
		{"GET", "/api/v1/recordings/{id}", false, a.getRecording},
		{"GET", "/api/v1/recordings/{id}/file", false, a.recordingFile},
	}
}

func (a *API) videoReady(w http.ResponseWriter) bool {
	if a.d.Video == nil || a.d.Recordings == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "video is not wired in this hub")
		return false
	}
	return true
}

func (a *API) videoError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, video.ErrBadOffer):
		writeError(w, http.StatusBadRequest, "bad_offer", err.Error())
	case errors.Is(err, video.ErrTooManyViewers):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "too_many_viewers", err.Error())
	case errors.Is(err, video.ErrTooManyStreams), errors.Is(err, video.ErrTooManyRecording), errors.Is(err, video.ErrClosed):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "video_busy", err.Error())
	case errors.Is(err, video.ErrOffline):
		writeError(w, http.StatusConflict, "offline", err.Error())
	case errors.Is(err, video.ErrNoAnswer):
		writeError(w, http.StatusGatewayTimeout, "no_answer", err.Error())
	case errors.Is(err, video.ErrLocker), errors.Is(err, video.ErrStreamEnded):
		writeError(w, http.StatusBadGateway, "locker_refused", err.Error())
	case errors.Is(err, video.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, video.ErrNotOwner):
		writeError(w, http.StatusForbidden, "forbidden", err.Error()+": only they or an admin may end it")
	default:
		a.internal(w, r, err)
	}
}

// whepOffer answers a WHEP player's SDP offer (Content-Type application/sdp).
func (a *API) whepOffer(w http.ResponseWriter, r *http.Request) {
	if !a.videoReady(w) {
		return
	}
	id := r.PathValue("id")
	if _, err := a.d.Registry.Get(r.Context(), id); err != nil {
		a.domainError(w, r, err)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/sdp" {
		writeError(w, http.StatusUnsupportedMediaType, "bad_offer", "a WHEP offer is an SDP document: send Content-Type application/sdp")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, video.MaxSDP+1))
	var tooBig *http.MaxBytesError
	if len(body) > video.MaxSDP || errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("an SDP offer is at most %d bytes", video.MaxSDP))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_offer", "reading the offer: "+err.Error())
		return
	}
	p, _ := principalFrom(r.Context())
	v, err := a.d.Video.AddViewer(r.Context(), id, string(body), p.Name, streamOwner(p))
	if err != nil {
		a.videoError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/api/v1/lockers/"+id+"/video/whep/"+v.ID)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, v.Answer)
}

func (a *API) whepLeave(w http.ResponseWriter, r *http.Request) {
	if !a.videoReady(w) {
		return
	}
	// The WHEP resource is the caller's own: only they, or an admin, end it.
	p, _ := principalFrom(r.Context())
	owner := streamOwner(p)
	if p.Role == access.RoleAdmin {
		owner = ""
	}
	if err := a.d.Video.RemoveViewer(r.Context(), r.PathValue("id"), r.PathValue("viewer"), owner); err != nil {
		a.videoError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) lockerVideo(w http.ResponseWriter, r *http.Request) {
	if !a.videoReady(w) {
		return
	}
	id := r.PathValue("id")
	if _, err := a.d.Registry.Get(r.Context(), id); err != nil {
		a.domainError(w, r, err)
		return
	}
	recs, err := a.d.Recordings.List(r.Context(), video.Filter{LockerID: id, Limit: 20})
	if err != nil {
		a.videoError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"locker_id": id, "status": a.d.Video.Status(id),
		"whep": "/api/v1/lockers/" + id + "/video/whep", "recordings": recs})
}

func (a *API) listRecordings(w http.ResponseWriter, r *http.Request) {
	if !a.videoReady(w) {
		return
	}
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var alarm int64
	if s := q.Get("alarm"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "invalid", "alarm must be an alarm id")
			return
		}
		alarm = n
	}
	list, err := a.d.Recordings.List(r.Context(), video.Filter{LockerID: q.Get("locker"), AlarmID: alarm, Limit: limit})
	if err != nil {
		a.videoError(w, r, err)
		return
	}
	out := list[:0]
	for _, rec := range list {
		if a.inCallerScope(r, rec.LockerID) {
			out = append(out, rec)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"recordings": out})
}

// recording reads the {id} recording the caller may see.
func (a *API) recording(w http.ResponseWriter, r *http.Request) (video.Recording, bool) {
	id, ok := pathID(w, r, "recording")
	if !ok {
		return video.Recording{}, false
	}
	rec, err := a.d.Recordings.Get(r.Context(), id)
	if err == nil && !a.inCallerScope(r, rec.LockerID) {
		err = video.ErrNotFound
	}
	if err != nil {
		a.videoError(w, r, err)
		return video.Recording{}, false
	}
	return rec, true
}

func (a *API) getRecording(w http.ResponseWriter, r *http.Request) {
	if !a.videoReady(w) {
		return
	}
	rec, ok := a.recording(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recording": rec, "file": "/api/v1/recordings/" + strconv.FormatInt(rec.ID, 10) + "/file"})
}

// recordingFile serves the clip (WebM, VP8) with range requests, so a
// <video> element can seek. The file is found by the recording's id only.
func (a *API) recordingFile(w http.ResponseWriter, r *http.Request) {
	if !a.videoReady(w) {
		return
	}
	rec, ok := a.recording(w, r)
	if !ok {
		return
	}
	f, rec, err := a.d.Recordings.Open(r.Context(), rec.ID)
	if err != nil {
		a.videoError(w, r, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		a.internal(w, r, err)
		return
	}
	name := strings.ReplaceAll(rec.LockerID, "\"", "") + "-" + strconv.FormatInt(rec.ID, 10) + ".webm"
	w.Header().Set("Content-Type", "video/webm")
	w.Header().Set("Content-Disposition", `inline; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	http.ServeContent(w, r, "", st.ModTime(), f)
}
