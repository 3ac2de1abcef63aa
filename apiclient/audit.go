package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AuditActor is who made an audited change.
type AuditActor struct {
	Kind      string `json:"kind"` // user, client, token, device, system, anonymous
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	Addr      string `json:"addr"`
	RequestID string `json:"request_id"`
}

// AuditRecord is one record of the audit log.
type AuditRecord struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Actor      AuditActor      `json:"actor"`
	Action     string          `json:"action"`
	ObjectType string          `json:"object_type"`
	ObjectID   string          `json:"object_id"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
}

// AuditFilter selects records; empty fields select all.
type AuditFilter struct {
	Actor, ObjectType, ObjectID, Action string
	From, To                            time.Time
	Limit                               int    // 0: the hub's default (50)
	Cursor                              string // NextCursor of the previous page
}

// AuditPage is one page of GET /api/v1/audit, newest first.
type AuditPage struct {
	Records    []AuditRecord `json:"records"`
	NextCursor string        `json:"next_cursor"` // "" on the last page
}

func (f AuditFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"actor": f.Actor, "object_type": f.ObjectType, "object_id": f.ObjectID,
		"action": f.Action, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// Audit returns one page of the audit log (admins only).
func (c *Client) Audit(ctx context.Context, f AuditFilter) (AuditPage, error) {
	var p AuditPage
	err := c.JSON(ctx, http.MethodGet, "/api/v1/audit?"+f.query().Encode(), nil, &p)
	return p, err
}

// AuditCSV returns the records matching f as CSV (up to 100,000).
func (c *Client) AuditCSV(ctx context.Context, f AuditFilter) ([]byte, error) {
	q := f.query()
	q.Set("format", "csv")
	body, _, err := c.Do(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil)
	return body, err
}
