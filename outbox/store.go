package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// TemplateStore keeps the operators' templates of recipient notifications
// in PostgreSQL (outbox_templates) over the defaults: the built-in texts and
// the --templates files. Which one a message is rendered from is decided at
// send time: the most specific of carrier+language, carrier, language and
// the stored default wins, then the built-in default. A template is checked
// against its event's fields when saved, so an unknown field is refused
// then, not found when a recipient would read an empty gap.
type TemplateStore struct {
	pool     *pgxpool.Pool
	defaults *Templates
}

// NewTemplateStore returns the store; defaults are the built-in texts and
// the --templates files (LoadTemplates).
func NewTemplateStore(pool *pgxpool.Pool, defaults *Templates) *TemplateStore {
	return &TemplateStore{pool: pool, defaults: defaults}
}

// StoredTemplate is an override as stored.
type StoredTemplate struct {
	Draft
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Key names one template: event, channel, carrier ("" any), language ("" any).
type Key struct {
	Event, Channel, Carrier, Language string
}

const templateColumns = `event, channel, carrier, language, subject, body, updated_by, updated_at`

func scanTemplate(r pgx.Row) (StoredTemplate, error) {
	var t StoredTemplate
	err := r.Scan(&t.Event, &t.Channel, &t.Carrier, &t.Language, &t.Subject, &t.Body, &t.UpdatedBy, &t.UpdatedAt)
	t.UpdatedAt = t.UpdatedAt.UTC()
	return t, err
}

// List returns the overrides, optionally of one event.
func (s *TemplateStore) List(ctx context.Context, event string) ([]StoredTemplate, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+templateColumns+` FROM outbox_templates WHERE $1 = '' OR event = $1
		ORDER BY event, channel, carrier, language`, event)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredTemplate, error) { return scanTemplate(r) })
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return out, nil
}

func (k *Key) check() error {
	d := Draft{Event: k.Event, Channel: k.Channel, Carrier: k.Carrier, Language: k.Language, Body: "x"}
	if d.Channel == ChannelEmail {
		d.Subject = "x"
	}
	if _, err := d.check(); err != nil {
		return err
	}
	k.Language = d.Language
	return nil
}

// Get returns one override (ErrNotFound when there is none).
func (s *TemplateStore) Get(ctx context.Context, k Key) (StoredTemplate, error) {
	if err := k.check(); err != nil {
		return StoredTemplate{}, err
	}
	t, err := scanTemplate(s.pool.QueryRow(ctx, `SELECT `+templateColumns+` FROM outbox_templates
		WHERE event = $1 AND channel = $2 AND carrier = $3 AND language = $4`, k.Event, k.Channel, k.Carrier, k.Language))
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredTemplate{}, fmt.Errorf("%w: no template for %s", ErrNotFound, k)
	}
	if err != nil {
		return StoredTemplate{}, fmt.Errorf("template %s: %w", k, err)
	}
	return t, nil
}

func (k Key) String() string {
	s := k.Event + "/" + k.Channel
	if k.Carrier != "" {
		s += " carrier " + k.Carrier
	}
	if k.Language != "" {
		s += " language " + k.Language
	}
	return s
}

func (k Key) id() string { return k.Event + "/" + k.Channel + "/" + k.Carrier + "/" + k.Language }

// Put checks d and stores it (a *TemplateError, nothing stored, when it
// does not pass); created says whether it is new. Audited.
func (s *TemplateStore) Put(ctx context.Context, d Draft) (StoredTemplate, bool, error) {
	if _, err := d.check(); err != nil {
		return StoredTemplate{}, false, err
	}
	k := Key{d.Event, d.Channel, d.Carrier, d.Language}
	by := audit.ActorFrom(ctx).Name
	var out StoredTemplate
	var created bool
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		before, err := scanTemplate(tx.QueryRow(ctx, `SELECT `+templateColumns+` FROM outbox_templates
			WHERE event = $1 AND channel = $2 AND carrier = $3 AND language = $4 FOR UPDATE`, k.Event, k.Channel, k.Carrier, k.Language))
		created = errors.Is(err, pgx.ErrNoRows)
		if err != nil && !created {
			return err
		}
		out, err = scanTemplate(tx.QueryRow(ctx, `INSERT INTO outbox_templates (event, channel, carrier, language, subject, body, updated_by, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, now())
			ON CONFLICT (event, channel, carrier, language) DO UPDATE SET subject = EXCLUDED.subject, body = EXCLUDED.body,
				updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at
			RETURNING `+templateColumns, k.Event, k.Channel, k.Carrier, k.Language, d.Subject, d.Body, by))
		if err != nil {
			return err
		}
		entry := audit.Entry{Action: audit.ActionCreate, ObjectType: "template", ObjectID: k.id(), After: out.Draft}
		if !created {
			entry.Action, entry.Before = audit.ActionUpdate, before.Draft
		}
		return audit.Record(ctx, tx, entry)
	})
	if err != nil {
		return StoredTemplate{}, false, fmt.Errorf("save template %s: %w", k, err)
	}
	return out, created, nil
}

// Delete removes an override: the next more general template applies
// again. Audited.
func (s *TemplateStore) Delete(ctx context.Context, k Key) error {
	if err := k.check(); err != nil {
		return err
	}
	return pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		before, err := scanTemplate(tx.QueryRow(ctx, `DELETE FROM outbox_templates
			WHERE event = $1 AND channel = $2 AND carrier = $3 AND language = $4 RETURNING `+templateColumns, k.Event, k.Channel, k.Carrier, k.Language))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: no template for %s", ErrNotFound, k)
		}
		if err != nil {
			return fmt.Errorf("delete template %s: %w", k, err)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionDelete, ObjectType: "template", ObjectID: k.id(), Before: before.Draft})
	})
}

// Default returns the built-in (or --templates) text of an event and
// channel, as a draft.
func (s *TemplateStore) Default(event, channel string) (Draft, bool) {
	return s.defaults.draft(event, channel)
}

// Effective is the template a message of k would be rendered from and
// where it comes from: "carrier+language", "carrier", "language", "stored
// default" or "built-in".
type Effective struct {
	Draft
	Source string `json:"source"`
}

// Resolve returns the template that applies to a message of event and
// channel for a parcel of carrier and a recipient of language: the most
// specific stored one (carrier+language, carrier, language, default; a
// regional language "de-AT" also matches "de"), else the default text.
func (s *TemplateStore) Resolve(ctx context.Context, event, channel, carrier, language string) (Effective, error) {
	lang, err := NormalizeLanguage(language)
	if err != nil {
		lang = "" // a message with a tag we cannot read gets the general text
	}
	base, _, _ := strings.Cut(lang, "-")
	t, err := scanTemplate(s.pool.QueryRow(ctx, `SELECT `+templateColumns+` FROM outbox_templates
		WHERE event = $1 AND channel = $2 AND carrier IN ($3, '') AND language IN ($4, $5, '')
		ORDER BY carrier <> '' DESC, language = $4 AND language <> '' DESC, language <> '' DESC LIMIT 1`, event, channel, carrier, lang, base))
	switch {
	case err == nil:
		src := "stored default"
		switch {
		case t.Carrier != "" && t.Language != "":
			src = "carrier+language"
		case t.Carrier != "":
			src = "carrier"
		case t.Language != "":
			src = "language"
		}
		return Effective{Draft: t.Draft, Source: src}, nil
	case errors.Is(err, pgx.ErrNoRows):
		d, ok := s.defaults.draft(event, channel)
		if !ok {
			return Effective{}, fmt.Errorf("%w: no %s template %q", ErrNotFound, channel, event)
		}
		return Effective{Draft: d, Source: "built-in"}, nil
	default:
		return Effective{}, fmt.Errorf("resolve template %s/%s: %w", event, channel, err)
	}
}

// Preview checks d and renders it with data (nil: the event's sample
// values); data is restricted to the event's fields first, so the preview
// fails exactly as a send would.
func (s *TemplateStore) Preview(d Draft, data map[string]any) (Rendered, error) {
	c, err := d.check()
	if err != nil {
		return Rendered{}, err
	}
	if data == nil {
		data = c.event.Sample()
	} else {
		data = c.event.Restrict(data)
	}
	return c.render(data)
}

// render renders a message from the template that applies to it: a stored
// one for an event, else the default text. A template that does not render
// with the message's data is errTemplate (retrying cannot help); a database
// error is returned as is (retry).
func (s *TemplateStore) render(ctx context.Context, m claimed) (Rendered, error) {
	if _, ok := LookupEvent(m.Template); ok && s.pool != nil {
		eff, err := s.Resolve(ctx, m.Template, m.Channel, m.Carrier, m.Language)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Rendered{}, err
		}
		if err == nil && eff.Source != "built-in" {
			c, err := eff.Draft.check()
			if err != nil {
				return Rendered{}, fmt.Errorf("%w: stored template %s (%s): %v", errTemplate, eff.Event, eff.Source, err)
			}
			r, err := c.render(m.Data)
			if err != nil {
				return Rendered{}, fmt.Errorf("%w: %v", errTemplate, err)
			}
			return r, nil
		}
	}
	if m.Channel == ChannelEmail {
		subj, body, err := s.defaults.Email(m.Template, m.Data)
		return Rendered{Subject: subj, Text: body}, err
	}
	text, err := s.defaults.SMS(m.Template, m.Data)
	return Rendered{Text: text}, err
}

// Notifications lists the messages about a parcel (ByAbout).
func (s *TemplateStore) Notifications(ctx context.Context, parcelID string) ([]Notification, error) {
	return ByAbout(ctx, s.pool, parcelID)
}
