package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Carrier is a transport company (GET /api/v1/carriers).
type Carrier struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Contact   string    `json:"contact"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CarrierQuota is a carrier's quota of cells of a size at a locker.
type CarrierQuota struct {
	Carrier string `json:"carrier"`
	Locker  string `json:"locker"`
	Size    string `json:"size"`
	Cells   int    `json:"cells"`
}

// CarrierDetail is a carrier with its share of the network: the lockers
// that name it, its segments and its quotas.
type CarrierDetail struct {
	Carrier
	Lockers  []string       `json:"lockers"`
	Segments []string       `json:"segments"`
	Quotas   []CarrierQuota `json:"quotas"`
}

// NewCarrier adds a carrier.
type NewCarrier struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Contact string `json:"contact,omitempty"`
}

// CarrierSizeUse is a carrier's use of one cell size.
type CarrierSizeUse struct {
	Used      int  `json:"used"`
	Quota     *int `json:"quota,omitempty"`
	QuotaUsed *int `json:"quota_used,omitempty"`
}

// CarrierQuotaUse is one quota with the cells held and still free for the carrier.
type CarrierQuotaUse struct {
	Locker string `json:"locker"`
	Size   string `json:"size"`
	Cells  int    `json:"cells"`
	Used   int    `json:"used"`
	Free   int    `json:"free"`
}

// CarrierUse is one carrier in GET /api/v1/carriers/usage.
type CarrierUse struct {
	Carrier
	Lockers  int                       `json:"lockers"`
	Segments []string                  `json:"segments"`
	Sizes    map[string]CarrierSizeUse `json:"sizes"`
	Quotas   []CarrierQuotaUse         `json:"quotas"`
}

func carrierPath(id string, rest ...string) string {
	p := "/api/v1/carriers/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// Carriers lists the carriers.
func (c *Client) Carriers(ctx context.Context) ([]Carrier, error) {
	var out struct {
		Carriers []Carrier `json:"carriers"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/carriers", nil, &out)
	return out.Carriers, err
}

// Carrier returns a carrier with its share of the network.
func (c *Client) Carrier(ctx context.Context, id string) (CarrierDetail, error) {
	var out CarrierDetail
	err := c.JSON(ctx, http.MethodGet, carrierPath(id), nil, &out)
	return out, err
}

// CreateCarrier adds a carrier.
func (c *Client) CreateCarrier(ctx context.Context, n NewCarrier) (Carrier, error) {
	var out Carrier
	err := c.JSON(ctx, http.MethodPost, "/api/v1/carriers", n, &out)
	return out, err
}

// UpdateCarrier changes a carrier's name or contact (fields left nil stay).
func (c *Client) UpdateCarrier(ctx context.Context, id string, name, contact *string) (CarrierDetail, error) {
	in := map[string]any{}
	if name != nil {
		in["name"] = *name
	}
	if contact != nil {
		in["contact"] = *contact
	}
	var out CarrierDetail
	err := c.JSON(ctx, http.MethodPatch, carrierPath(id), in, &out)
	return out, err
}

// DeleteCarrier removes a carrier with its segments and quotas.
func (c *Client) DeleteCarrier(ctx context.Context, id string) error {
	return c.JSON(ctx, http.MethodDelete, carrierPath(id), nil, nil)
}

// AssignCarrier gives a carrier a whole locker (kind "lockers") or a
// segment (kind "segments"); UnassignCarrier takes it back.
func (c *Client) AssignCarrier(ctx context.Context, id, kind, name string) (CarrierDetail, error) {
	var out CarrierDetail
	err := c.JSON(ctx, http.MethodPut, carrierPath(id, kind, name), nil, &out)
	return out, err
}

// UnassignCarrier takes a whole locker or a segment from a carrier.
func (c *Client) UnassignCarrier(ctx context.Context, id, kind, name string) (CarrierDetail, error) {
	var out CarrierDetail
	err := c.JSON(ctx, http.MethodDelete, carrierPath(id, kind, name), nil, &out)
	return out, err
}

// SetCarrierQuotas replaces a carrier's quotas at a locker (cells per size);
// an empty map removes them.
func (c *Client) SetCarrierQuotas(ctx context.Context, id, locker string, cells map[string]int) (CarrierDetail, error) {
	var out CarrierDetail
	if len(cells) == 0 {
		err := c.JSON(ctx, http.MethodDelete, carrierPath(id, "quotas", locker), nil, &out)
		return out, err
	}
	err := c.JSON(ctx, http.MethodPut, carrierPath(id, "quotas", locker), map[string]any{"cells": cells}, &out)
	return out, err
}

// CarrierUsage returns each carrier's use of the network.
func (c *Client) CarrierUsage(ctx context.Context) ([]CarrierUse, error) {
	var out struct {
		Carriers []CarrierUse `json:"carriers"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/carriers/usage", nil, &out)
	return out.Carriers, err
}
