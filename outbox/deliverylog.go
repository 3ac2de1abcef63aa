package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// ErrConflict: the delivery's state does not allow the step (a replay of a
// delivery still pending).
var ErrConflict = errors.New("conflict")

// WebhookDelivery is one webhook to an API client as its delivery log shows
// it: the event, where it stands, and every attempt to deliver it.
type WebhookDelivery struct {
	ID            string     `json:"id"` // the stable event id (Lockerhub-Delivery), also after a replay
	Event         string     `json:"event"`
	Parcel        string     `json:"parcel,omitempty"`
	State         string     `json:"state"`    // pending, sent, failed
	Attempts      int        `json:"attempts"` // of the current delivery or replay
	Replays       int        `json:"replays"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	SentAt        *time.Time `json:"sent_at,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"` // pending only
	ReplayedAt    *time.Time `json:"replayed_at,omitempty"`
	Log           []Attempt  `json:"log"`
}

// Attempt is one try to deliver a webhook.
type Attempt struct {
	At         time.Time  `json:"at"`
	Replay     int        `json:"replay"`  // 0: the first delivery, n: the n-th replay
	Attempt    int        `json:"attempt"` // within it, from 1
	HTTPStatus int        `json:"http_status,omitempty"`
	Error      string     `json:"error,omitempty"`
	DurationMS int        `json:"duration_ms"`
	Outcome    string     `json:"outcome"` // sent, retry, failed, waiting
	NextTry    *time.Time `json:"next_attempt_at,omitempty"`
}

// DeliveryFilter selects a client's webhook deliveries; empty fields select all.
type DeliveryFilter struct {
	State  string // pending, sent, failed
	Event  string // parcel.deposited …
	Parcel string
	// Since and Until bound created_at: Since ≤ created_at < Until.
	Since, Until time.Time
	Limit        int // 1 … MaxDeliveries, default 50
}

// MaxDeliveries bounds a page of the delivery log.
const MaxDeliveries = 500

var deliveryStates = []string{"pending", "sent", "failed"}

const deliveryColumns = `id, template, about, state, attempts, replays, coalesce(last_error, ''), created_at, sent_at,
	CASE WHEN state = 'pending' THEN next_attempt_at END, replayed_at`

func scanDelivery(r pgx.Row) (WebhookDelivery, error) {
	var d WebhookDelivery
	err := r.Scan(&d.ID, &d.Event, &d.Parcel, &d.State, &d.Attempts, &d.Replays, &d.LastError, &d.CreatedAt, &d.SentAt, &d.NextAttemptAt, &d.ReplayedAt)
	d.CreatedAt = d.CreatedAt.UTC()
	for _, t := range []**time.Time{&d.SentAt, &d.NextAttemptAt, &d.ReplayedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return d, err
}

// Deliveries returns a client's webhook deliveries, newest first, each with
// its attempts (oldest first). Deliveries are kept as long as the outbox
// keeps messages (Config.Retention).
func (s *Endpoints) Deliveries(ctx context.Context, clientID int64, f DeliveryFilter) ([]WebhookDelivery, error) {
	if f.State != "" && !slices.Contains(deliveryStates, f.State) {
		return nil, fmt.Errorf("%w: state must be one of %s, got %q", ErrInvalid, strings.Join(deliveryStates, ", "), f.State)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return nil, fmt.Errorf("%w: since must be before until", ErrInvalid)
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, MaxDeliveries)
	conds := []string{"client_id = $1", "channel = 'webhook'"}
	args := []any{clientID}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.State != "" {
		add("state = ?", f.State)
	}
	if f.Event != "" {
		add("template = ?", f.Event)
	}
	if f.Parcel != "" {
		add("about = ?", f.Parcel)
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("created_at < ?", f.Until.UTC())
	}
	args = append(args, f.Limit)
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM outbox_messages WHERE `+strings.Join(conds, " AND ")+
		` ORDER BY created_at DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookDelivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("webhook deliveries: %w", err)
	}
	if out == nil {
		out = []WebhookDelivery{}
	}
	ids := make([]string, len(out))
	at := map[string]int{}
	for i, d := range out {
		ids[i], at[d.ID] = d.ID, i
		out[i].Log = []Attempt{}
	}
	rows, err = s.pool.Query(ctx, `SELECT message_id, at, replay, attempt, coalesce(http_status, 0), coalesce(error, ''), duration_ms, outcome, next_attempt_at
		FROM outbox_attempts WHERE message_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("webhook delivery attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var a Attempt
		if err := rows.Scan(&id, &a.At, &a.Replay, &a.Attempt, &a.HTTPStatus, &a.Error, &a.DurationMS, &a.Outcome, &a.NextTry); err != nil {
			return nil, fmt.Errorf("webhook delivery attempts: %w", err)
		}
		a.At = a.At.UTC()
		if a.NextTry != nil {
			u := a.NextTry.UTC()
			a.NextTry = &u
		}
		out[at[id]].Log = append(out[at[id]].Log, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("webhook delivery attempts: %w", err)
	}
	return out, nil
}

// Replay sends one of a client's webhooks again, with the same id (the
// receiver deduplicates on it, DESIGN decision 13) and the same body, signed
// anew: a delivery that was sent or failed for good becomes pending, its
// attempts count from 1 again, and its age for giving up counts from now.
// A delivery still pending and waiting for its next try (backoff, or no
// endpoint) is tried now instead, its attempts counting on. One being sent
// at this moment is ErrConflict. Audited (replay, retry_now).
func (s *Endpoints) Replay(ctx context.Context, clientID int64, id string) (WebhookDelivery, error) {
	var out WebhookDelivery
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		before, err := scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM outbox_messages
			WHERE id = $1 AND client_id = $2 AND channel = 'webhook' FOR UPDATE`, id, clientID))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: no webhook delivery %q for this client", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if before.State == "pending" {
			// Waiting for its next try when the last attempt logged set that
			// time; otherwise it is due or claimed by a dispatcher (in flight).
			var waits bool
			if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT a.next_attempt_at = m.next_attempt_at AND m.next_attempt_at > now()
				FROM outbox_attempts a WHERE a.message_id = m.id ORDER BY a.id DESC LIMIT 1), false)
				FROM outbox_messages m WHERE m.id = $1`, id).Scan(&waits); err != nil {
				return err
			}
			if !waits {
				return fmt.Errorf("%w: webhook delivery %s is being sent right now (attempt %d); look at its log again", ErrConflict, id, before.Attempts)
			}
			out, err = scanDelivery(tx.QueryRow(ctx, `UPDATE outbox_messages SET next_attempt_at = now() WHERE id = $1 RETURNING `+deliveryColumns, id))
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
				return err
			}
			return audit.Record(ctx, tx, audit.Entry{Action: "retry_now", ObjectType: "webhook_delivery", ObjectID: id,
				Before: map[string]any{"state": before.State, "next_attempt_at": before.NextAttemptAt, "client_id": clientID, "event": before.Event},
				After:  map[string]any{"state": out.State, "next_attempt_at": out.NextAttemptAt, "client_id": clientID, "event": out.Event}})
		}
		out, err = scanDelivery(tx.QueryRow(ctx, `UPDATE outbox_messages SET state = 'pending', attempts = 0, next_attempt_at = now(),
			last_error = NULL, sent_at = NULL, replays = replays + 1, replayed_at = now()
			WHERE id = $1 RETURNING `+deliveryColumns, id))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "replay", ObjectType: "webhook_delivery", ObjectID: id,
			Before: map[string]any{"state": before.State, "replays": before.Replays, "client_id": clientID, "event": before.Event},
			After:  map[string]any{"state": out.State, "replays": out.Replays, "client_id": clientID, "event": out.Event}})
	})
	if err != nil {
		return WebhookDelivery{}, fmt.Errorf("replay webhook delivery: %w", err)
	}
	out.Log = []Attempt{}
	return out, nil
}
