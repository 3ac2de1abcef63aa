package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Silence suppresses the notifications of matching alarms between StartsAt
// and EndsAt. The alarms still fire and are listed (marked silenced).
type Silence struct {
	ID        int64     `json:"id"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
	CreatedAt time.Time `json:"created_at"`
	Active    bool      `json:"active"`
}

// maxSilence bounds how long one silence lasts.
const maxSilence = 90 * 24 * time.Hour

// CreateSilence stores a silence (StartsAt zero: now).
func (s *Store) CreateSilence(ctx context.Context, in Silence) (Silence, error) {
	now := time.Now()
	if in.StartsAt.IsZero() {
		in.StartsAt = now
	}
	switch {
	case len(in.Matchers) == 0:
		return Silence{}, fmt.Errorf("%w: a silence needs at least one matcher", ErrInvalid)
	case !in.EndsAt.After(in.StartsAt) || !in.EndsAt.After(now):
		return Silence{}, fmt.Errorf("%w: a silence must end after it starts and in the future", ErrInvalid)
	case in.EndsAt.Sub(in.StartsAt) > maxSilence:
		return Silence{}, fmt.Errorf("%w: a silence lasts at most %s", ErrInvalid, maxSilence)
	case len(in.Comment) > 1000:
		return Silence{}, fmt.Errorf("%w: comment is at most 1000 characters", ErrInvalid)
	}
	if err := compileAll(in.Matchers); err != nil {
		return Silence{}, err
	}
	in.CreatedBy = actorName(ctx)
	ms, _ := json.Marshal(in.Matchers)
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO alarms_silences (matchers, starts_at, ends_at, created_by, comment)
			VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`, ms, in.StartsAt, in.EndsAt, in.CreatedBy, in.Comment).Scan(&in.ID, &in.CreatedAt); err != nil {
			return fmt.Errorf("create silence: %w", err)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: "alarm_silence", ObjectID: strconv.FormatInt(in.ID, 10), After: in})
	})
	in.Active = !in.StartsAt.After(now)
	return in, err
}

// ExpireSilence ends a silence now.
func (s *Store) ExpireSilence(ctx context.Context, id int64) error {
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE alarms_silences SET ends_at = now() WHERE id = $1 AND ends_at > now()`, id)
		if err != nil {
			return fmt.Errorf("expire silence: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: no active silence %d", ErrNotFound, id)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionDelete, ObjectType: "alarm_silence", ObjectID: strconv.FormatInt(id, 10)})
	})
	if err == nil {
		s.retouchOpen(ctx)
	}
	return err
}

// Silences lists the silences that have not ended (all: also those that
// ended in the last 7 days).
func (s *Store) Silences(ctx context.Context, all bool) ([]Silence, error) {
	since := time.Now()
	if all {
		since = since.Add(-7 * 24 * time.Hour)
	}
	rows, err := s.pool.Query(ctx, `SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, starts_at <= now() AND ends_at > now()
		FROM alarms_silences WHERE ends_at > $1 ORDER BY id DESC LIMIT 1000`, since)
	if err != nil {
		return nil, fmt.Errorf("silences: %w", err)
	}
	return pgx.CollectRows(rows, scanSilence)
}

func scanSilence(r pgx.CollectableRow) (Silence, error) {
	var x Silence
	var ms []byte
	if err := r.Scan(&x.ID, &ms, &x.StartsAt, &x.EndsAt, &x.CreatedBy, &x.Comment, &x.CreatedAt, &x.Active); err != nil {
		return x, err
	}
	if err := json.Unmarshal(ms, &x.Matchers); err != nil {
		return x, err
	}
	return x, compileAll(x.Matchers)
}

func activeSilences(ctx context.Context, q querier) ([]Silence, error) {
	rows, err := q.Query(ctx, `SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, true
		FROM alarms_silences WHERE starts_at <= now() AND ends_at > now()`)
	if err != nil {
		return nil, fmt.Errorf("active silences: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanSilence)
	if err != nil && !errors.Is(err, ErrInvalid) {
		return nil, fmt.Errorf("active silences: %w", err)
	}
	return list, nil
}

func silenced(list []Silence, a *Alarm) bool {
	for i := range list {
		if matchAll(list[i].Matchers, a) {
			return true
		}
	}
	return false
}

// inhibitable kinds are suppressed while their locker's offline alarm fires.
func inhibitable(kind string) bool {
	switch kind {
	case KindDoorOpen, KindDoorForced, KindLockJammed, KindMainsLost, KindBatteryLow:
		return true
	}
	return false
}

// offlineLockers returns which of lockers have an open offline alarm.
func offlineLockers(ctx context.Context, q querier, lockers []string) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT locker_id FROM alarms_alarms WHERE kind = 'offline' AND state <> 'resolved' AND locker_id = ANY($1)`, lockers)
	if err != nil {
		return nil, fmt.Errorf("offline lockers: %w", err)
	}
	out := map[string]bool{}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error { out[id] = true; return nil })
	return out, err
}
