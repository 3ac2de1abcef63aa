package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// User is a dashboard user as the API returns it.
type User struct {
	Username   string     `json:"username"`
	Role       string     `json:"role"`
	Carrier    string     `json:"carrier,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	// Password is set only when the hub made the password up.
	Password string `json:"password,omitempty"`
}

// NewUser is the body of POST /api/v1/users; an empty Password has the hub
// make one up (returned in User.Password).
type NewUser struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Carrier  string `json:"carrier,omitempty"`
	Password string `json:"password,omitempty"`
}

// UserPatch is the body of PATCH /api/v1/users/{name}: what is set changes.
type UserPatch struct {
	Role     *string `json:"role,omitempty"`
	Carrier  *string `json:"carrier,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
}

// Users lists the users (GET /api/v1/users).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out struct {
		Users []User `json:"users"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/users", nil, &out)
	return out.Users, err
}

// CreateUser adds a user (POST /api/v1/users).
func (c *Client) CreateUser(ctx context.Context, u NewUser) (User, error) {
	var out User
	err := c.JSON(ctx, http.MethodPost, "/api/v1/users", u, &out)
	return out, err
}

// UpdateUser changes a user (PATCH /api/v1/users/{name}).
func (c *Client) UpdateUser(ctx context.Context, name string, p UserPatch) (User, error) {
	var out User
	err := c.JSON(ctx, http.MethodPatch, "/api/v1/users/"+url.PathEscape(name), p, &out)
	return out, err
}

// ResetPassword sets a user's password, or has the hub make one up when
// password is empty (POST /api/v1/users/{name}/password).
func (c *Client) ResetPassword(ctx context.Context, name, password string) (User, error) {
	var out User
	err := c.JSON(ctx, http.MethodPost, "/api/v1/users/"+url.PathEscape(name)+"/password", map[string]string{"password": password}, &out)
	return out, err
}

// APIClient is an API client of a delivery service or marketplace.
type APIClient struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Carrier    string     `json:"carrier"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// ReservationHours: the client's reservations expire when not dropped
	// off within this; 0: the hub's default (--reservation-time).
	ReservationHours int `json:"reservation_hours,omitempty"`
	// Token is set only in the answer of CreateAPIClient: shown once.
	Token string `json:"token,omitempty"`
}

// APIClients lists the API clients (GET /api/v1/clients).
func (c *Client) APIClients(ctx context.Context) ([]APIClient, error) {
	var out struct {
		Clients []APIClient `json:"clients"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/clients", nil, &out)
	return out.Clients, err
}

// CreateAPIClient adds an API client and returns it with its token
// (POST /api/v1/clients).
func (c *Client) CreateAPIClient(ctx context.Context, name, carrier string, scopes []string) (APIClient, error) {
	var out APIClient
	err := c.JSON(ctx, http.MethodPost, "/api/v1/clients", map[string]any{"name": name, "carrier": carrier, "scopes": scopes}, &out)
	return out, err
}

// SetClientReservation sets how long an API client's reservations wait for
// the drop-off, in hours (0: the hub's default) (PATCH /api/v1/clients/{name}).
func (c *Client) SetClientReservation(ctx context.Context, name string, hours int) (APIClient, error) {
	var out APIClient
	err := c.JSON(ctx, http.MethodPatch, "/api/v1/clients/"+url.PathEscape(name), map[string]any{"reservation_hours": hours}, &out)
	return out, err
}

// NewAPIClient is an API client to add with its settings.
type NewAPIClient struct {
	Name             string   `json:"name"`
	Carrier          string   `json:"carrier"`
	Scopes           []string `json:"scopes"`
	ReservationHours int      `json:"reservation_hours,omitempty"`
}

// AddAPIClient is CreateAPIClient with the client's settings.
func (c *Client) AddAPIClient(ctx context.Context, n NewAPIClient) (APIClient, error) {
	var out APIClient
	err := c.JSON(ctx, http.MethodPost, "/api/v1/clients", n, &out)
	return out, err
}

// RevokeAPIClient revokes an API client's token (DELETE /api/v1/clients/{name}).
func (c *Client) RevokeAPIClient(ctx context.Context, name string) (APIClient, error) {
	var out APIClient
	err := c.JSON(ctx, http.MethodDelete, "/api/v1/clients/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Token is an admin bearer token as the hub lists it (never the token).
type Token struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Token is set only in the answer of CreateToken: shown once.
	Token string `json:"token,omitempty"`
}

// Tokens lists the bearer tokens, revoked ones too (GET /api/v1/tokens).
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/tokens", nil, &out)
	return out.Tokens, err
}

// CreateToken makes another admin token and returns it with the token
// itself (POST /api/v1/tokens).
func (c *Client) CreateToken(ctx context.Context, name string) (Token, error) {
	var out Token
	err := c.JSON(ctx, http.MethodPost, "/api/v1/tokens", map[string]string{"name": name}, &out)
	return out, err
}

// RevokeToken revokes a bearer token for good (DELETE /api/v1/tokens/{id}).
func (c *Client) RevokeToken(ctx context.Context, id int64) (Token, error) {
	var out Token
	err := c.JSON(ctx, http.MethodDelete, "/api/v1/tokens/"+strconv.FormatInt(id, 10), nil, &out)
	return out, err
}
