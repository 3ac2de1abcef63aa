package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Cell is one cell of a locker or of a model's layout: its name as printed
// (A01), its size (S, M, L, XL) and its column (A = 1) and row (from 1).
type Cell struct {
	Name string `json:"name"`
	Size string `json:"size"`
	Col  int    `json:"col,omitempty"`
	Row  int    `json:"row,omitempty"`
	Hold string `json:"hold,omitempty"` // "returns": kept for returns, not free for loading
}

// Model is a locker model as the API returns it.
type Model struct {
	ID           string    `json:"id"`
	Manufacturer string    `json:"manufacturer"`
	Name         string    `json:"name"`
	Layout       []Cell    `json:"layout"`
	Cells        int       `json:"cells"`
	Capabilities []string  `json:"capabilities"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// NewModel is the body of POST /api/v1/models and PUT /api/v1/models/{id}.
type NewModel struct {
	ID           string   `json:"id,omitempty"`
	Manufacturer string   `json:"manufacturer"`
	Name         string   `json:"name"`
	Layout       []Cell   `json:"layout"`
	Capabilities []string `json:"capabilities"`
}

// LockerFilter selects lockers for ListLockers; empty fields select all.
type LockerFilter struct {
	Segment, Model, Carrier string
	Status                  string // "online" or "offline"
	Query                   string // substring of the ID or address, any case
	Limit, Offset           int    // Limit 0: the hub's default (100)
}

// LockerPage is one page of GET /api/v1/lockers.
type LockerPage struct {
	Lockers []Locker `json:"lockers"`
	Total   int      `json:"total"` // matching lockers in all pages
	Limit   int      `json:"limit"`
	Offset  int      `json:"offset"`
}

// ListLockers returns one page of the lockers that match f (GET /api/v1/lockers).
// listPath is a list route with its filters (empty ones left out) and page.
func listPath(route string, filters map[string]string, limit, offset int) string {
	q := url.Values{}
	for k, v := range filters {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	if len(q) > 0 {
		route += "?" + q.Encode()
	}
	return route
}

func (c *Client) ListLockers(ctx context.Context, f LockerFilter) (LockerPage, error) {
	path := listPath("/api/v1/lockers", map[string]string{"segment": f.Segment, "model": f.Model, "carrier": f.Carrier, "status": f.Status, "q": f.Query},
		f.Limit, f.Offset)
	var out LockerPage
	err := c.JSON(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// UpdateLocker changes a locker (PATCH /api/v1/lockers/{id}, JSON merge
// patch): keys left out stay, nil clears, a value replaces. Keys: model, cells,
// address, time_zone, lat, lon, segments, carriers, enabled.
func (c *Client) UpdateLocker(ctx context.Context, id string, patch map[string]any) (Locker, error) {
	var out Locker
	err := c.JSON(ctx, http.MethodPatch, "/api/v1/lockers/"+url.PathEscape(id), patch, &out)
	return out, err
}

// DeleteLocker removes a locker, revoking its certificates and closing its
// connection (DELETE /api/v1/lockers/{id}); it returns how many certificates
// were revoked.
func (c *Client) DeleteLocker(ctx context.Context, id string) (int, error) {
	var out struct {
		Revoked int `json:"revoked"`
	}
	err := c.JSON(ctx, http.MethodDelete, "/api/v1/lockers/"+url.PathEscape(id), nil, &out)
	return out.Revoked, err
}

// LockerCells returns a locker's cells (GET /api/v1/lockers/{id}/cells).
func (c *Client) LockerCells(ctx context.Context, id string) ([]Cell, error) {
	var out struct {
		Cells []Cell `json:"cells"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/lockers/"+url.PathEscape(id)+"/cells", nil, &out)
	return out.Cells, err
}

// ImportLockers registers the lockers of a CSV, all or none
// (POST /api/v1/lockers/import), and returns how many were created.
func (c *Client) ImportLockers(ctx context.Context, csv []byte) (int, error) {
	data, _, err := c.DoContent(ctx, http.MethodPost, "/api/v1/lockers/import", "text/csv", csv)
	if err != nil {
		return 0, err
	}
	var out struct {
		Created int `json:"created"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, fmt.Errorf("POST /api/v1/lockers/import: decoding response: %w", err)
	}
	return out.Created, nil
}

// Models lists the locker models (GET /api/v1/models).
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	var out struct {
		Models []Model `json:"models"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/models", nil, &out)
	return out.Models, err
}

// Model returns one model (GET /api/v1/models/{id}).
func (c *Client) Model(ctx context.Context, id string) (Model, error) {
	var out Model
	err := c.JSON(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateModel adds a model (POST /api/v1/models).
func (c *Client) CreateModel(ctx context.Context, m NewModel) (Model, error) {
	var out Model
	err := c.JSON(ctx, http.MethodPost, "/api/v1/models", m, &out)
	return out, err
}

// UpdateModel replaces a model's definition (PUT /api/v1/models/{id}).
func (c *Client) UpdateModel(ctx context.Context, id string, m NewModel) (Model, error) {
	var out Model
	err := c.JSON(ctx, http.MethodPut, "/api/v1/models/"+url.PathEscape(id), m, &out)
	return out, err
}

// DeleteModel removes a model no locker uses (DELETE /api/v1/models/{id}).
func (c *Client) DeleteModel(ctx context.Context, id string) error {
	return c.JSON(ctx, http.MethodDelete, "/api/v1/models/"+url.PathEscape(id), nil, nil)
}
