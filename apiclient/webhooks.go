package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// WebhookDelivery is one webhook to an API client with every attempt to
// deliver it (the delivery log).
type WebhookDelivery struct {
	ID            string           `json:"id"`
	Event         string           `json:"event"`
	Parcel        string           `json:"parcel,omitempty"`
	State         string           `json:"state"` // pending, sent, failed
	Attempts      int              `json:"attempts"`
	Replays       int              `json:"replays"`
	LastError     string           `json:"last_error,omitempty"`
	CreatedAt     time.Time        `json:"created_at"`
	SentAt        *time.Time       `json:"sent_at,omitempty"`
	NextAttemptAt *time.Time       `json:"next_attempt_at,omitempty"`
	ReplayedAt    *time.Time       `json:"replayed_at,omitempty"`
	Log           []WebhookAttempt `json:"log"`
}

// WebhookAttempt is one try to deliver a webhook.
type WebhookAttempt struct {
	At         time.Time  `json:"at"`
	Replay     int        `json:"replay"`
	Attempt    int        `json:"attempt"`
	HTTPStatus int        `json:"http_status,omitempty"`
	Error      string     `json:"error,omitempty"`
	DurationMS int        `json:"duration_ms"`
	Outcome    string     `json:"outcome"` // sent, retry, failed, waiting
	NextTry    *time.Time `json:"next_attempt_at,omitempty"`
}

// DeliveryFilter selects webhook deliveries; empty fields select all.
type DeliveryFilter struct {
	State, Event, Parcel string
	Since                string // RFC 3339 or a duration ago (24h)
	Limit                int
}

func (f DeliveryFilter) query() string {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "event": f.Event, "parcel": f.Parcel, "since": f.Since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// WebhookDeliveries lists an API client's webhook deliveries, newest first
// (GET /api/v1/clients/{name}/webhook-deliveries; admins).
func (c *Client) WebhookDeliveries(ctx context.Context, client string, f DeliveryFilter) ([]WebhookDelivery, error) {
	var out struct {
		Deliveries []WebhookDelivery `json:"deliveries"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/clients/"+url.PathEscape(client)+"/webhook-deliveries"+f.query(), nil, &out)
	return out.Deliveries, err
}

// ReplayWebhook sends one of an API client's webhooks again, same id
// (POST /api/v1/clients/{name}/webhook-deliveries/{delivery}/replay; admins).
func (c *Client) ReplayWebhook(ctx context.Context, client, delivery string) (WebhookDelivery, error) {
	var out WebhookDelivery
	err := c.JSON(ctx, http.MethodPost, "/api/v1/clients/"+url.PathEscape(client)+"/webhook-deliveries/"+url.PathEscape(delivery)+"/replay", nil, &out)
	return out, err
}
