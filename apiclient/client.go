// Package apiclient is a small Go client of the hub's HTTP API, used by hubctl,
// lockersim and tests.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one hub. Token is sent as a bearer token when set.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Token   string
	HTTP    *http.Client
}

// New returns a client for baseURL with a 30 s timeout.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// NewTLS returns a client that trusts the given TLS configuration (for the device listener).
func NewTLS(baseURL, token string, cfg *tls.Config) *Client {
	c := New(baseURL, token)
	c.HTTP.Transport = &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	return c
}

// Error is an API error: the HTTP status and the JSON body {"code","message"}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

// IsCode reports whether err is an API error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Do sends a request with an optional JSON body and returns the raw response body.
// A status of 400 or more becomes an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	return c.DoContent(ctx, method, path, "application/json", body)
}

// DoContent is Do with a body of another content type (such as text/csv).
func (c *Client) DoContent(ctx context.Context, method, path, contentType string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Code = "http_" + fmt.Sprint(resp.StatusCode)
			e.Message = strings.TrimSpace(string(data))
			if e.Message == "" {
				e.Message = http.StatusText(resp.StatusCode)
			}
		}
		return data, resp.StatusCode, e
	}
	return data, resp.StatusCode, nil
}

// JSON sends in (if not nil) as JSON and decodes the response into out (if not nil).
func (c *Client) JSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	data, _, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
		}
	}
	return nil
}
