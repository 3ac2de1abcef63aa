package web

import (
	"errors"
	"fmt"
	"net/http"

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
	}
}

// outboxError maps outbox errors to HTTP; anything else is a 500.
func (a *API) outboxError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, outbox.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, outbox.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
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
		URL string `json:"url"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	e, err := a.d.Webhooks.Set(r.Context(), id, in.URL)
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
	if a.d.Webhooks == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "webhooks are not wired in this hub")
		return
	}
	name := access.NormalizeUsername(r.PathValue("name"))
	cs, err := a.d.Access.Clients(r.Context())
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	for _, c := range cs {
		if c.Name != name {
			continue
		}
		e, err := a.d.Webhooks.Get(r.Context(), c.ID)
		if err != nil {
			a.outboxError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, e)
		return
	}
	a.accessError(w, r, fmt.Errorf("%w: client %s", access.ErrNotFound, name))
}
