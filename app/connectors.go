package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lockerhub/lockerhub/connectors"
	"github.com/lockerhub/lockerhub/outbox"
)

// connectorFormat sends a parcel webhook to an endpoint of a connector's
// format (PUT /api/v1/webhook {"format":"xml-orders"}) as that connector's
// status callback: the outbound direction of the connector.
type connectorFormat struct{ c connectors.Connector }

// webhookFormats are the connectors as webhook formats, by name.
func webhookFormats(set connectors.Set) map[string]outbox.WebhookFormat {
	out := make(map[string]outbox.WebhookFormat, len(set))
	for name, c := range set {
		out[name] = connectorFormat{c}
	}
	return out
}

func (f connectorFormat) ContentType() string { return f.c.ContentType() }

// webhookParcel is what a status callback needs of the parcel in a parcel
// webhook's data (parcels.Parcel as JSON).
type webhookParcel struct {
	ID        string     `json:"id"`
	Reference string     `json:"reference"`
	State     string     `json:"state"`
	LockerID  string     `json:"locker_id"`
	Cell      string     `json:"cell"`
	ExpiresAt *time.Time `json:"expires_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

func (f connectorFormat) EncodeWebhook(e outbox.WebhookEvent) ([]byte, error) {
	raw, ok := e.Data["parcel"]
	if !ok {
		return nil, fmt.Errorf("%s: event %s carries no parcel: no status callback for it", f.c.Name(), e.Type)
	}
	js, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var p webhookParcel
	if err := json.Unmarshal(js, &p); err != nil || p.ID == "" {
		return nil, errors.Join(fmt.Errorf("%s: event %s: the parcel is not readable", f.c.Name(), e.Type), err)
	}
	return f.c.EncodeCallback(connectors.Callback{ID: e.ID, Event: e.Type, At: e.CreatedAt, Status: connectors.Status{
		OrderID: p.Reference, ParcelID: p.ID, State: p.State, LockerID: p.LockerID, Cell: p.Cell, ExpiresAt: p.ExpiresAt, UpdatedAt: p.UpdatedAt,
	}})
}
