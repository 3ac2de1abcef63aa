package web

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/lockerhub/lockerhub/outbox"
)

// Notification templates (outbox/catalog.go, docs/outbox.md "Templates"):
// the events and their fields, the operators' overrides per event,
// channel, carrier and language, a preview, and each parcel's
// notifications. Saving checks the text against the event's fields; a
// refusal is a 400 whose code names the problem (template_unknown_field, …).

func (a *API) templateRoutes() []route {
	return []route{
		{"GET", "/api/v1/templates", false, a.listTemplates},
		{"POST", "/api/v1/templates/preview", false, a.previewTemplate},
		{"GET", "/api/v1/templates/{event}/{channel}", false, a.getTemplate},
		{"PUT", "/api/v1/templates/{event}/{channel}", false, a.putTemplate},
		{"DELETE", "/api/v1/templates/{event}/{channel}", false, a.deleteTemplate},
		{"GET", "/api/v1/parcels/{id}/notifications", false, a.parcelNotifications},
	}
}

func (a *API) templatesWired(w http.ResponseWriter) bool {
	if a.d.Templates == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "notification templates are not wired in this hub")
		return false
	}
	return true
}

func (a *API) templateError(w http.ResponseWriter, r *http.Request, err error) {
	var te *outbox.TemplateError
	switch {
	case errors.As(err, &te):
		writeJSON(w, http.StatusBadRequest, outbox.TemplateError{Code: te.Code, Part: te.Part, Message: te.Error()})
	case errors.Is(err, outbox.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, outbox.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	default:
		a.internal(w, r, err)
	}
}

// templateDefaults is an event's default text per channel.
type templateEvent struct {
	outbox.Event
	Defaults map[string]outbox.Draft `json:"defaults"` // channel → the built-in (or --templates) text
}

func (a *API) listTemplates(w http.ResponseWriter, r *http.Request) {
	if !a.templatesWired(w) {
		return
	}
	event := r.URL.Query().Get("event")
	stored, err := a.d.Templates.List(r.Context(), event)
	if err != nil {
		a.templateError(w, r, err)
		return
	}
	events := make([]templateEvent, 0, len(outbox.Events))
	for _, e := range outbox.Events {
		te := templateEvent{Event: e, Defaults: map[string]outbox.Draft{}}
		for _, ch := range []string{outbox.ChannelSMS, outbox.ChannelEmail} {
			if d, ok := a.d.Templates.Default(e.Name, ch); ok {
				te.Defaults[ch] = d
			}
		}
		events = append(events, te)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "templates": stored})
}

func templateKey(r *http.Request) outbox.Key {
	q := r.URL.Query()
	return outbox.Key{Event: r.PathValue("event"), Channel: r.PathValue("channel"), Carrier: q.Get("carrier"), Language: q.Get("language")}
}

var templateKeyParams = map[string]bool{"carrier": true, "language": true}

func checkTemplateParams(w http.ResponseWriter, r *http.Request) bool {
	for k := range r.URL.Query() {
		if !templateKeyParams[k] {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown query parameter %q (carrier, language)", k))
			return false
		}
	}
	return true
}

// getTemplate answers the override of exactly that key (null when there is
// none), the template a message with that carrier and language would be
// rendered from (effective, with its source) and the built-in default.
func (a *API) getTemplate(w http.ResponseWriter, r *http.Request) {
	if !a.templatesWired(w) || !checkTemplateParams(w, r) {
		return
	}
	k := templateKey(r)
	var override *outbox.StoredTemplate
	t, err := a.d.Templates.Get(r.Context(), k)
	switch {
	case err == nil:
		override = &t
	case errors.Is(err, outbox.ErrNotFound):
	default:
		a.templateError(w, r, err)
		return
	}
	eff, err := a.d.Templates.Resolve(r.Context(), k.Event, k.Channel, k.Carrier, k.Language)
	if err != nil {
		a.templateError(w, r, err)
		return
	}
	def, _ := a.d.Templates.Default(k.Event, k.Channel)
	writeJSON(w, http.StatusOK, map[string]any{"template": override, "effective": eff, "default": def})
}

func (a *API) putTemplate(w http.ResponseWriter, r *http.Request) {
	if !a.templatesWired(w) || !checkTemplateParams(w, r) {
		return
	}
	var in struct {
		Subject string `json:"subject"`
		Body    string `json:"body"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	k := templateKey(r)
	t, created, err := a.d.Templates.Put(r.Context(), outbox.Draft{Event: k.Event, Channel: k.Channel, Carrier: k.Carrier, Language: k.Language,
		Subject: in.Subject, Body: in.Body})
	if err != nil {
		a.templateError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, t)
}

func (a *API) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	if !a.templatesWired(w) || !checkTemplateParams(w, r) {
		return
	}
	if err := a.d.Templates.Delete(r.Context(), templateKey(r)); err != nil {
		a.templateError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// previewTemplate renders a draft with the event's sample values, or with
// the data of a parcel (its pickup code masked), and answers the text or the
// exact refusal a save would give. It changes nothing (not audited).
func (a *API) previewTemplate(w http.ResponseWriter, r *http.Request) {
	if !a.templatesWired(w) {
		return
	}
	var in struct {
		outbox.Draft
		Parcel string `json:"parcel"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	var data map[string]any
	if in.Parcel != "" {
		if !a.parcelsWired(w) {
			return
		}
		_, d, err := a.d.Parcels.NotificationData(r.Context(), parcelCaller(r), in.Parcel)
		if err != nil {
			a.parcelError(w, r, err)
			return
		}
		data = d
	}
	out, err := a.d.Templates.Preview(in.Draft, data)
	if err != nil {
		a.templateError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// parcelNotifications lists what the recipient (and the creating API
// client) was sent about a parcel: channel, template, state, attempts,
// last error, when it was sent and the text as sent.
func (a *API) parcelNotifications(w http.ResponseWriter, r *http.Request) {
	if !a.parcelsWired(w) || !a.templatesWired(w) {
		return
	}
	p, err := a.d.Parcels.Get(r.Context(), parcelCaller(r), r.PathValue("id"))
	if err != nil {
		a.parcelError(w, r, err)
		return
	}
	ns, err := a.d.Templates.Notifications(r.Context(), p.ID)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"parcel": p.ID, "notifications": ns})
}
