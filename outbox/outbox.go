// Package outbox delivers what the hub tells the outside world: signed
// webhooks to API clients, SMS (through an HTTP gateway) and e-mail (SMTP)
// to recipients. Domain packages Enqueue a message inside the transaction of
// the change it reports, so it is sent if and only if that transaction
// commits; a Dispatcher claims due messages, sends them and retries with
// exponential backoff. Delivery is at least once: a crash between a send
// and its bookkeeping repeats that send, and receivers deduplicate on the
// message's ID (DESIGN decision 13). See docs/outbox.md.
package outbox

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/pg"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema.
func Migrations() pg.Migrations { return pg.Embedded("outbox", migrationsFS, "migrations") }

// Channels.
const (
	ChannelWebhook = "webhook"
	ChannelSMS     = "sms"
	ChannelEmail   = "email"
	// ChannelHTTP posts Data as the JSON body to the URL in To, signed
	// with Secret when one is set (alarm receivers: webhooks, chat).
	ChannelHTTP = "http"
	// ChannelFiscal posts Data (a receipt) to the fiscal service with the
	// message id as Idempotency-Key (FiscalConfig).
	ChannelFiscal = "fiscal"
)

// Channels lists every channel.
var Channels = []string{ChannelWebhook, ChannelSMS, ChannelEmail, ChannelHTTP, ChannelFiscal}

// Errors.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
)

// notifyChannel is the PostgreSQL NOTIFY channel that wakes the dispatchers.
const notifyChannel = "outbox"

// Message is one thing to send.
type Message struct {
	ID       string         // stable, unique: a receiver deduplicates on it (DESIGN decision 13). Enqueue of an existing ID is a no-op.
	Channel  string         // "webhook" | "sms" | "email"
	ClientID int64          // webhook: the API client (access package) whose endpoint receives it
	To       string         // sms: phone number (E.164), email: address
	Template string         // webhook: the event type, e.g. "parcel.deposited"; sms/email: a template name, e.g. "parcel_ready"
	Data     map[string]any // webhook: the event's data object; sms/email: the template's variables; http: the body
	Secret   string         // http: signs the body (Lockerhub-Signature) when set
	// sms/email: the parcel's carrier and the recipient's language (BCP 47)
	// choose the template override (TemplateStore.Resolve); both optional.
	Carrier  string
	Language string
	// About is the object the message tells of (a parcel id): a parcel's
	// notifications are listed by it (ByAbout).
	About string
}

var (
	e164RE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// maxData bounds a message's data (JSON bytes).
const maxData = 64 << 10

// Validate checks m without storing it.
func (m Message) Validate() error {
	switch {
	case m.ID == "" || len(m.ID) > 200 || strings.ContainsAny(m.ID, "\r\n"):
		return fmt.Errorf("%w: a message needs an id of 1 to 200 characters without line breaks", ErrInvalid)
	case len(m.About) > 200 || len(m.Carrier) > 64 || len(m.Language) > 35:
		return fmt.Errorf("%w: about, carrier or language too long", ErrInvalid)
	case !nameRE.MatchString(m.Template):
		return fmt.Errorf("%w: template %q must be 1 to 64 of a-z, 0-9, '.', '_', '-'", ErrInvalid, m.Template)
	}
	switch m.Channel {
	case ChannelWebhook:
		if m.ClientID <= 0 {
			return fmt.Errorf("%w: a webhook needs the client id", ErrInvalid)
		}
	case ChannelSMS:
		if !e164RE.MatchString(m.To) {
			return fmt.Errorf("%w: an SMS needs a phone number in E.164 form (+4917012345678), got %q", ErrInvalid, m.To)
		}
	case ChannelEmail:
		a, err := mail.ParseAddress(m.To)
		if err != nil || a.Address != m.To || strings.ContainsAny(m.To, "\r\n") {
			return fmt.Errorf("%w: an e-mail needs a plain address (name@example.com), got %q", ErrInvalid, m.To)
		}
	case ChannelHTTP:
		if err := ValidURL(m.To); err != nil {
			return err
		}
	case ChannelFiscal:
		if m.To != "" {
			return fmt.Errorf("%w: a fiscal receipt goes to the configured service (no to)", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: channel must be webhook, sms, email, http or fiscal, got %q", ErrInvalid, m.Channel)
	}
	return nil
}

// Enqueue stores m in the caller's transaction: it is sent only if that transaction commits.
func Enqueue(ctx context.Context, tx pgx.Tx, m Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	data := m.Data
	if data == nil {
		data = map[string]any{}
	}
	js, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("%w: message %s: data: %v", ErrInvalid, m.ID, err)
	}
	if len(js) > maxData {
		return fmt.Errorf("%w: message %s: data is %d bytes, at most %d", ErrInvalid, m.ID, len(js), maxData)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO outbox_messages (id, channel, client_id, "to", template, data, secret, carrier, language, about)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
		m.ID, m.Channel, m.ClientID, m.To, m.Template, js, m.Secret, m.Carrier, m.Language, m.About)
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", m.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return nil // enqueued before: a no-op
	}
	// Delivered to the dispatchers' LISTEN at commit, not before; repeated
	// notifications in one transaction are folded into one by PostgreSQL.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
		return fmt.Errorf("enqueue %s: notify: %w", m.ID, err)
	}
	return nil
}

// Delivery is the state of one message as a sender sees it.
type Delivery struct {
	ID        string     `json:"id"`
	Channel   string     `json:"channel"`
	State     string     `json:"state"` // pending, sent, failed; "gone" once deleted after the retention
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
}

// Deliveries returns the state of the messages with the given ids.
func Deliveries(ctx context.Context, q Querier, ids []string) (map[string]Delivery, error) {
	rows, err := q.Query(ctx, `SELECT id, channel, state, attempts, coalesce(last_error, ''), sent_at FROM outbox_messages WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	out := map[string]Delivery{}
	for rows.Next() {
		var d Delivery
		if err := rows.Scan(&d.ID, &d.Channel, &d.State, &d.Attempts, &d.LastError, &d.SentAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("deliveries: %w", err)
		}
		out[d.ID] = d
	}
	return out, rows.Err()
}

// Querier is a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Notification is a sent (or pending, or failed) message as a parcel page
// shows it: what, to whom, through which channel, and whether it went out.
type Notification struct {
	ID        string     `json:"id"`
	Channel   string     `json:"channel"`
	Template  string     `json:"template"`
	To        string     `json:"to"`
	Carrier   string     `json:"carrier,omitempty"`
	Language  string     `json:"language,omitempty"`
	State     string     `json:"state"` // pending, sent, failed
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	NextAt    *time.Time `json:"next_attempt_at,omitempty"` // pending only
	Subject   string     `json:"subject,omitempty"`         // e-mail, once rendered
	Text      string     `json:"text,omitempty"`            // as rendered when sent
}

// CodeMask stands for the pickup code in texts shown back (what was sent,
// previews with a parcel's data).
const CodeMask = "********"

// ByAbout returns the sms, email and webhook messages about an object (a
// parcel), oldest first, the pickup code masked in their texts. Messages
// deleted after the retention are gone.
func ByAbout(ctx context.Context, q Querier, about string) ([]Notification, error) {
	rows, err := q.Query(ctx, `SELECT id, channel, template, "to", carrier, language, state, attempts, coalesce(last_error, ''),
		created_at, sent_at, CASE WHEN state = 'pending' THEN next_attempt_at END, coalesce(rendered, ''),
		CASE WHEN channel IN ('sms', 'email') THEN coalesce(data->>'code', '') ELSE '' END
		FROM outbox_messages WHERE about = $1 ORDER BY created_at, id`, about)
	if err != nil {
		return nil, fmt.Errorf("notifications of %s: %w", about, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var n Notification
		var rendered, code string
		err := r.Scan(&n.ID, &n.Channel, &n.Template, &n.To, &n.Carrier, &n.Language, &n.State, &n.Attempts, &n.LastError,
			&n.CreatedAt, &n.SentAt, &n.NextAt, &rendered, &code)
		if code != "" {
			// The pickup code is never in an API answer: masked as in a preview.
			rendered = strings.ReplaceAll(rendered, code, CodeMask)
		}
		n.CreatedAt = n.CreatedAt.UTC()
		if n.Channel == ChannelEmail {
			n.Subject, n.Text, _ = strings.Cut(rendered, "\n")
		} else {
			n.Text = rendered
		}
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("notifications of %s: %w", about, err)
	}
	if out == nil {
		out = []Notification{}
	}
	return out, nil
}
