package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Locker is a registered locker as the API returns it.
type Locker struct {
	ID             string     `json:"id"`
	Model          string     `json:"model"`
	Cells          int        `json:"cells"`
	Address        string     `json:"address"`
	TimeZone       string     `json:"time_zone"`
	Lat            *float64   `json:"lat,omitempty"`
	Lon            *float64   `json:"lon,omitempty"`
	Segments       []string   `json:"segments"`
	Carriers       []string   `json:"carriers"`
	CarrierAccess  []string   `json:"carrier_access"` // every carrier that may use it
	Enabled        bool       `json:"enabled"`
	Online         bool       `json:"online"`
	ConnectedAt    *time.Time `json:"connected_at,omitempty"`
	DisconnectedAt *time.Time `json:"disconnected_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// NewLocker is the body of POST /api/v1/lockers. With a model that has a
// layout, Cells may be 0 (the model's cells).
type NewLocker struct {
	ID       string   `json:"id"`
	Model    string   `json:"model,omitempty"`
	Cells    int      `json:"cells,omitempty"`
	Address  string   `json:"address,omitempty"`
	TimeZone string   `json:"time_zone,omitempty"`
	Lat      *float64 `json:"lat,omitempty"`
	Lon      *float64 `json:"lon,omitempty"`
	Segments []string `json:"segments,omitempty"`
	Carriers []string `json:"carriers,omitempty"`
	// Segment is a shorthand for Segments: [Segment].
	Segment string `json:"segment,omitempty"`
}

// Certificate is a signed device certificate with the CA that issued it (PEM).
type Certificate struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate"`
	CA          string    `json:"ca"`
	NotAfter    time.Time `json:"not_after"`
}

// EnrollToken is a one-time token a locker exchanges for its certificate.
type EnrollToken struct {
	LockerID  string    `json:"locker_id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateLocker registers a locker (POST /api/v1/lockers). An existing ID is an
// error with code "exists".
func (c *Client) CreateLocker(ctx context.Context, l NewLocker) (Locker, error) {
	var out Locker
	err := c.JSON(ctx, http.MethodPost, "/api/v1/lockers", l, &out)
	return out, err
}

// Lockers returns every registered locker, page by page
// (GET /api/v1/lockers).
func (c *Client) Lockers(ctx context.Context) ([]Locker, error) {
	var all []Locker
	for {
		page, err := c.ListLockers(ctx, LockerFilter{Limit: 10000, Offset: len(all)})
		if err != nil {
			return nil, err
		}
		all = append(all, page.Lockers...)
		if len(page.Lockers) == 0 || len(all) >= page.Total {
			return all, nil
		}
	}
}

// Locker returns one locker (GET /api/v1/lockers/{id}).
func (c *Client) Locker(ctx context.Context, id string) (Locker, error) {
	var out Locker
	err := c.JSON(ctx, http.MethodGet, "/api/v1/lockers/"+url.PathEscape(id), nil, &out)
	return out, err
}

// IssueCertificate has the hub sign a CSR (PEM) for a locker
// (POST /api/v1/lockers/{id}/certificates).
func (c *Client) IssueCertificate(ctx context.Context, lockerID string, csrPEM []byte) (Certificate, error) {
	var out Certificate
	err := c.JSON(ctx, http.MethodPost, "/api/v1/lockers/"+url.PathEscape(lockerID)+"/certificates",
		map[string]string{"csr": string(csrPEM)}, &out)
	return out, err
}

// RevokeCertificates revokes every certificate of a locker and closes its
// connection (POST /api/v1/lockers/{id}/certificates/revoke). It returns how many
// certificates were revoked now.
func (c *Client) RevokeCertificates(ctx context.Context, lockerID string) (int, error) {
	var out struct {
		Revoked int `json:"revoked"`
	}
	err := c.JSON(ctx, http.MethodPost, "/api/v1/lockers/"+url.PathEscape(lockerID)+"/certificates/revoke", nil, &out)
	return out.Revoked, err
}

// CreateEnrollToken makes a one-time enrolment token for a locker
// (POST /api/v1/lockers/{id}/enroll-tokens). ttl 0 means the hub's default (24 h).
func (c *Client) CreateEnrollToken(ctx context.Context, lockerID string, ttl time.Duration) (EnrollToken, error) {
	var out EnrollToken
	err := c.JSON(ctx, http.MethodPost, "/api/v1/lockers/"+url.PathEscape(lockerID)+"/enroll-tokens",
		map[string]int64{"ttl_seconds": int64(ttl / time.Second)}, &out)
	return out, err
}

// Enroll exchanges a token and a CSR for a certificate (POST /api/v1/enroll on
// the device listener; no bearer token needed).
func (c *Client) Enroll(ctx context.Context, token string, csrPEM []byte) (Certificate, error) {
	var out Certificate
	err := c.JSON(ctx, http.MethodPost, "/api/v1/enroll", map[string]string{"token": token, "csr": string(csrPEM)}, &out)
	return out, err
}

// CA returns the hub's CA certificate (GET /api/v1/ca.crt, no authentication).
func (c *Client) CA(ctx context.Context) ([]byte, error) {
	data, _, err := c.Do(ctx, http.MethodGet, "/api/v1/ca.crt", nil)
	return data, err
}

// Renew exchanges a CSR for a new certificate on the device listener; the
// client must present the locker's current certificate (NewTLS with it).
func (c *Client) Renew(ctx context.Context, csrPEM []byte) (Certificate, error) {
	var out Certificate
	err := c.JSON(ctx, http.MethodPost, "/api/v1/renew", map[string]string{"csr": string(csrPEM)}, &out)
	return out, err
}
