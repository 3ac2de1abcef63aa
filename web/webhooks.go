package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/outbox"
)

// Webhook endpoints (outbox/webhook.go, docs/outbox.md): an API client sets,
// reads and deletes its own; PUT returns the signing secret, this once.
// Admins read any client's endpoint, never its secret.

func (a *API) webhookRoutes() []route {
	return []route{
		{"PUT", "/api/v1/webhook", false, a.putWebhook},
		{"GET", "/api/v1/webhook", false, a.getWebhook},
		{"DELETE", "/api/v1/webhook", false, a.deleteWebhook},
		{"GET", "/api/v1/clients/{name}/webhook", false, a.clientWebhook},
		{"GET", "/api/v1/webhook/deliveries", false, a.ownDeliveries},
		{"POST", "/api/v1/webhook/deliveries/{delivery}/replay", false, a.replayOwnDelivery},
		{"GET", "/api/v1/clients/{name}/webhook-deliveries", false, a.clientDeliveries},
		{"POST", "/api/v1/clients/{name}/webhook-deliveries/{delivery}/replay", false, a.replayClientDelivery},
	}
}

// outboxError maps outbox errors to HTTP; anything else is a 500.
func (a *API) outboxError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, outbox.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, outbox.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, outbox.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		a.internal(w, r, err)
	}
}

// webhookClient is the calling API client's id, or answers itself: 503 when
// webhooks are not wired, 400 for a caller that is not an API client.
func (a *API) webhookClient(w http.ResponseWriter, r *http.Request) (int64, bool) {
	if a.d.Webhooks == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "webhooks are not wired in this hub")
		return 0, false
	}
	p, _ := principalFrom(r.Context())
	if p.Role != access.RoleClient || p.ClientID == 0 {
		writeError(w, http.StatusBadRequest, "not_a_client",
			"only an API client has a webhook endpoint of its own; admins read one with GET /api/v1/clients/{name}/webhook")
		return 0, false
	}
	return p.ClientID, true
}

func (a *API) putWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := a.webhookClient(w, r)
	if !ok {
		return
	}
	var in struct {
		URL    string `json:"url"`
		Format string `json:"format"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	e, err := a.d.Webhooks.Set(r.Context(), id, in.URL, in.Format)
	if err != nil {
		a.outboxError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, e)
}

func (a *API) getWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := a.webhookClient(w, r)
	if !ok {
		return
	}
	e, err := a.d.Webhooks.Get(r.Context(), id)
	if err != nil {
		a.outboxError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (a *API) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := a.webhookClient(w, r)
	if !ok {
		return
	}
	if err := a.d.Webhooks.Delete(r.Context(), id); err != nil {
		a.outboxError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) clientWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := a.namedClient(w, r)
	if !ok {
		return
	}
	e, err := a.d.Webhooks.Get(r.Context(), id)
	if err != nil {
		a.outboxError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// namedClient is the id of the API client named in the path, or answers
// itself (503 without webhooks, 404 for no such client).
func (a *API) namedClient(w http.ResponseWriter, r *http.Request) (int64, bool) {
	if a.d.Webhooks == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "webhooks are not wired in this hub")
		return 0, false
	}
	name := access.NormalizeUsername(r.PathValue("name"))
	cs, err := a.d.Access.Clients(r.Context())
	if err != nil {
		a.accessError(w, r, err)
		return 0, false
	}
	for _, c := range cs {
		if c.Name == name {
			return c.ID, true
		}
	}
	a.accessError(w, r, fmt.Errorf("%w: client %s", access.ErrNotFound, name))
	return 0, false
}

// The delivery log: a client reads its own (GET /api/v1/webhook/deliveries),
// admins any client's; either replays one delivery.

var deliveryParams = map[string]bool{"state": true, "event": true, "parcel": true, "since": true, "until": true, "limit": true}

func (a *API) deliveries(w http.ResponseWriter, r *http.Request, clientID int64) {
	q := r.URL.Query()
	for k := range q {
		if !deliveryParams[k] {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (state, event, parcel, since, until, limit)", k))
			return
		}
	}
	f := outbox.DeliveryFilter{State: q.Get("state"), Event: q.Get("event"), Parcel: q.Get("parcel")}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(b.name); v != "" {
			t, err := parseTimeOrAgo(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid", b.name+": an RFC 3339 time or a duration (24h) ago")
				return
			}
			*b.t = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > outbox.MaxDeliveries {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("limit must be 1 to %d", outbox.MaxDeliveries))
			return
		}
		f.Limit = n
	}
	ds, err := a.d.Webhooks.Deliveries(r.Context(), clientID, f)
	if err != nil {
		a.outboxError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds})
}

func (a *API) replay(w http.ResponseWriter, r *http.Request, clientID int64) {
	d, err := a.d.Webhooks.Replay(r.Context(), clientID, r.PathValue("delivery"))
	if err != nil {
		a.outboxError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, d)
}

func (a *API) ownDeliveries(w http.ResponseWriter, r *http.Request) {
	if id, ok := a.webhookClient(w, r); ok {
		a.deliveries(w, r, id)
	}
}

func (a *API) replayOwnDelivery(w http.ResponseWriter, r *http.Request) {
	if id, ok := a.webhookClient(w, r); ok {
		a.replay(w, r, id)
	}
}

func (a *API) clientDeliveries(w http.ResponseWriter, r *http.Request) {
	if id, ok := a.namedClient(w, r); ok {
		a.deliveries(w, r, id)
	}
}

func (a *API) replayClientDelivery(w http.ResponseWriter, r *http.Request) {
	if id, ok := a.namedClient(w, r); ok {
		a.replay(w, r, id)
	}
}
