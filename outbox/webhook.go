package outbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Headers of a webhook delivery.
const (
	DeliveryHeader  = "Lockerhub-Delivery"
	SignatureHeader = "Lockerhub-Signature"
)

// Endpoint is an API client's webhook endpoint. Secret is set only when the
// endpoint was just created or replaced (shown once).
type Endpoint struct {
	ClientID  int64     `json:"client_id"`
	URL       string    `json:"url"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Disabled  bool      `json:"disabled"`
	// Format of the bodies: "json" (the default), or a partner format (a
	// connector's name, e.g. "xml-orders") the events are translated to.
	Format string `json:"format"`
}

// FormatJSON is the default webhook format.
const FormatJSON = "json"

// Endpoints keeps the API clients' webhook endpoints and their delivery logs.
type Endpoints struct {
	pool    *pgxpool.Pool
	formats []string
}

// NewEndpoints returns the endpoint store on pool; formats are the partner
// formats an endpoint may ask for besides JSON (Config.WebhookFormats).
func NewEndpoints(pool *pgxpool.Pool, formats ...string) *Endpoints {
	return &Endpoints{pool: pool, formats: formats}
}

// ValidURL checks a webhook URL: absolute http or https with a host, no
// credentials or fragment.
func ValidURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "" || len(raw) > 2000:
		return fmt.Errorf("%w: url must be 1 to 2000 characters", ErrInvalid)
	case err != nil:
		return fmt.Errorf("%w: url: %v", ErrInvalid, err)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%w: url must be https:// (or http://), got %q", ErrInvalid, raw)
	case u.Host == "" || u.User != nil || u.Fragment != "":
		return fmt.Errorf("%w: url needs a host and no user info or fragment, got %q", ErrInvalid, raw)
	}
	return nil
}

// Set creates or replaces the endpoint of client with a new secret, which
// it returns (shown this once), and wakes the client's waiting webhooks.
// format is "" or "json" for JSON bodies, else one of the hub's partner
// formats.
func (s *Endpoints) Set(ctx context.Context, clientID int64, rawURL, format string) (Endpoint, error) {
	if err := ValidURL(rawURL); err != nil {
		return Endpoint{}, err
	}
	if format == FormatJSON {
		format = ""
	}
	if format != "" && !slices.Contains(s.formats, format) {
		return Endpoint{}, fmt.Errorf("%w: format must be %s, got %q", ErrInvalid, strings.Join(append([]string{FormatJSON}, s.formats...), " or "), format)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Endpoint{}, err
	}
	secret := "whsec_" + base64.RawURLEncoding.EncodeToString(b)
	var e Endpoint
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		before, err := endpoint(ctx, tx, clientID, true)
		had := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO outbox_webhook_endpoints (client_id, url, secret, format) VALUES ($1, $2, $3, $4)
			ON CONFLICT (client_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, format = excluded.format, created_at = now(), disabled = false
			RETURNING client_id, url, created_at, disabled, format`, clientID, rawURL, secret, format).Scan(&e.ClientID, &e.URL, &e.CreatedAt, &e.Disabled, &e.Format)
		if err != nil {
			return err
		}
		if e.Format == "" {
			e.Format = FormatJSON
		}
		// Webhooks that waited for an endpoint go now (not those in flight:
		// that would repeat a send).
		if _, err := tx.Exec(ctx, `UPDATE outbox_messages SET next_attempt_at = now()
			WHERE state = 'pending' AND channel = 'webhook' AND client_id = $1 AND last_error LIKE 'no_endpoint:%'`, clientID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
			return err
		}
		entry := audit.Entry{Action: audit.ActionCreate, ObjectType: "webhook_endpoint", ObjectID: strconv.FormatInt(clientID, 10), After: e}
		if had {
			entry.Action, entry.Before = audit.ActionUpdate, before
		}
		return audit.Record(ctx, tx, entry)
	})
	if err != nil {
		return Endpoint{}, fmt.Errorf("set webhook endpoint: %w", err)
	}
	e.Secret = secret
	return e, nil
}

// Get returns the endpoint of client, without its secret.
func (s *Endpoints) Get(ctx context.Context, clientID int64) (Endpoint, error) {
	return endpoint(ctx, s.pool, clientID, false)
}

// Delete removes the endpoint of client; its webhooks wait for a new one.
func (s *Endpoints) Delete(ctx context.Context, clientID int64) error {
	return pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		before, err := endpoint(ctx, tx, clientID, true)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM outbox_webhook_endpoints WHERE client_id = $1`, clientID); err != nil {
			return fmt.Errorf("delete webhook endpoint: %w", err)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionDelete, ObjectType: "webhook_endpoint", ObjectID: strconv.FormatInt(clientID, 10), Before: before})
	})
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func endpoint(ctx context.Context, q querier, clientID int64, lock bool) (Endpoint, error) {
	var e Endpoint
	sql := `SELECT client_id, url, created_at, disabled, coalesce(nullif(format, ''), 'json') FROM outbox_webhook_endpoints WHERE client_id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	err := q.QueryRow(ctx, sql, clientID).Scan(&e.ClientID, &e.URL, &e.CreatedAt, &e.Disabled, &e.Format)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, fmt.Errorf("%w: no webhook endpoint for this client", ErrNotFound)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook endpoint: %w", err)
	}
	return e, nil
}

// Sign returns the Lockerhub-Signature header value of body at time t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a Lockerhub-Signature header against body as a receiver
// does: the HMAC must match and t must be within tolerance of now.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("signature header malformed")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp %s is outside the tolerance of %s", time.Unix(sec, 0).UTC().Format(time.RFC3339), tolerance)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("signature does not match")
}

// webhookBody is what a receiver gets.
type webhookBody struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	CreatedAt string         `json:"created_at"`
	Data      map[string]any `json:"data"`
}

// maxResponse bounds what is read of a receiver's response.
const maxResponse = 4 << 10

func (d *Dispatcher) sendWebhook(ctx context.Context, m *claimed) error {
	var url, secret, format string
	err := d.pool.QueryRow(ctx, `SELECT url, secret, format FROM outbox_webhook_endpoints WHERE client_id = $1 AND NOT disabled`, m.ClientID).Scan(&url, &secret, &format)
	if errors.Is(err, pgx.ErrNoRows) {
		return waiting("no_endpoint", "API client has no webhook endpoint (PUT /api/v1/webhook)")
	}
	if err != nil {
		return fmt.Errorf("webhook endpoint: %w", err)
	}
	contentType := "application/json"
	var body []byte
	if format == "" {
		body, err = json.Marshal(webhookBody{ID: m.ID, Type: m.Template, CreatedAt: m.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Data: m.Data})
	} else {
		f, ok := d.cfg.WebhookFormats[format]
		if !ok {
			return waiting("no_format", fmt.Sprintf("this hub has no webhook format %q (the endpoint asks for it)", format))
		}
		contentType = f.ContentType()
		body, err = f.EncodeWebhook(WebhookEvent{ID: m.ID, Type: m.Template, CreatedAt: m.CreatedAt.UTC(), Data: m.Data})
	}
	if err != nil {
		return permanent("encode", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanent("url", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "lockerhub-webhook/1")
	req.Header.Set(DeliveryHeader, m.ID)
	req.Header.Set(SignatureHeader, Sign(secret, time.Now(), body))
	return d.post(d.hook, req, &m.status)
}

// WebhookEvent is a webhook as a WebhookFormat gets it: the stable id receivers
// deduplicate on, the event type (parcel.deposited), when it happened and
// its data (as the JSON webhook's "data").
type WebhookEvent struct {
	ID        string
	Type      string
	CreatedAt time.Time
	Data      map[string]any
}

// WebhookFormat renders webhooks for an endpoint that asked for a partner's
// own format (a connector's status callback) instead of the JSON body. The
// body is signed and sent like the JSON one. An error fails the delivery
// (retrying cannot help).
type WebhookFormat interface {
	ContentType() string
	EncodeWebhook(e WebhookEvent) ([]byte, error)
}

// sendHTTP posts an http-channel message: its data is the body, signed
// like a webhook when the message has a secret. The URL is the operator's
// (an alarm receiver), so private addresses are allowed.
func (d *Dispatcher) sendHTTP(ctx context.Context, m *claimed) error {
	body, err := json.Marshal(m.Data)
	if err != nil {
		return permanent("encode", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.To, bytes.NewReader(body))
	if err != nil {
		return permanent("url", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lockerhub-http/1")
	req.Header.Set(DeliveryHeader, m.ID)
	if m.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(m.Secret, time.Now(), body))
	}
	return d.post(d.http, req, &m.status)
}

// errPrivateAddr refuses a webhook to the hub's own networks.
var errPrivateAddr = errors.New("the address is loopback, private or link-local, and --webhook-deny-private is set")

// newHTTPClient follows no redirects and bounds each request; with
// denyPrivate its dialer refuses private addresses after resolution.
func newHTTPClient(timeout time.Duration, denyPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, DialContext: dialer.DialContext, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: timeout, TLSHandshakeTimeout: timeout}
	if denyPrivate {
		tr.Proxy = nil // the check is on the address dialled: a proxy would hide it
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%s: %w", address, errPrivateAddr)
			}
			ip := ap.Addr().Unmap()
			if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
				ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() || cgnat.Contains(ip) {
				return fmt.Errorf("%s: %w", address, errPrivateAddr)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     tr,
	}
}

// cgnat is the shared address space of RFC 6598 (carrier-grade NAT).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// post sends req, sets *status to the answer's HTTP status, and classifies the answer: 2xx delivered; 408, 429, 5xx and
// transport errors retry; any other status is refused (retried only a few
// times, Config.RefusedAttempts). Redirects are not followed.
func (d *Dispatcher) post(c *http.Client, req *http.Request, status *int) error {
	resp, err := c.Do(req)
	if errors.Is(err, errPrivateAddr) {
		return refused(fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err))
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	*status = resp.StatusCode
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(head)))
	default:
		return refused(fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(head))))
	}
}
