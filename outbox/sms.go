package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// SMSConfig is the HTTP gateway of the SMS channel: it takes
// POST {"to","text","id"} with an optional bearer token.
type SMSConfig struct {
	URL   string // empty: the channel is not configured and SMS wait
	Token string
}

func (d *Dispatcher) sendSMS(ctx context.Context, m *claimed) error {
	if d.cfg.SMS.URL == "" {
		return waiting("not_configured", "the SMS gateway is not configured (--sms-url)")
	}
	r, err := d.tpls.render(ctx, *m)
	if errors.Is(err, errTemplate) {
		return permanent("template", err)
	}
	if err != nil {
		return err
	}
	text := r.Text
	m.rendered = text
	body, _ := json.Marshal(map[string]string{"to": m.To, "text": text, "id": m.ID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.SMS.URL, bytes.NewReader(body))
	if err != nil {
		return permanent("config", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lockerhub-sms/1")
	req.Header.Set(DeliveryHeader, m.ID)
	if d.cfg.SMS.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.SMS.Token)
	}
	return d.post(d.http, req, &m.status)
}
