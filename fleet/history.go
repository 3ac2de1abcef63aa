package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// At rebuilds what a locker reported at a past moment: the latest snapshot of
// its twin history at or before at, with the changes after it up to at.
// ErrNotFound when the locker had reported nothing by then.
func (t *Twins) At(ctx context.Context, lockerID string, at time.Time) (TwinView, error) {
	rows, err := t.pool.Query(ctx, `SELECT version, snapshot, doc FROM fleet_twin_history
		WHERE locker_id = $1 AND at <= $2 AND version >= (
			SELECT coalesce(max(version), 0) FROM fleet_twin_history WHERE locker_id = $1 AND snapshot AND at <= $2)
		ORDER BY version`, lockerID, at)
	if err != nil {
		return TwinView{}, fmt.Errorf("twin history: %w", err)
	}
	v := TwinView{LockerID: lockerID, Delta: map[string]any{}}
	var version int64
	var snapshot bool
	var doc []byte
	seen := false
	_, err = pgx.ForEachRow(rows, []any{&version, &snapshot, &doc}, func() error {
		if snapshot {
			seen = true
			v.Reported = ReportedView{}
			if err := json.Unmarshal(doc, &v.Reported); err != nil {
				return err
			}
		} else if seen {
			var ch TwinChange
			if err := json.Unmarshal(doc, &ch); err != nil {
				return err
			}
			v.Reported.apply(ch)
		}
		v.Version = version
		return nil
	})
	if err != nil {
		return TwinView{}, fmt.Errorf("twin history: %w", err)
	}
	if !seen {
		return TwinView{}, fmt.Errorf("%w: locker %s had reported nothing by %s", ErrNotFound, lockerID, at.Format(time.RFC3339))
	}
	v.Desired.Config = json.RawMessage(`{}`)
	return v, nil
}

// apply replays a stored change onto a rebuilt view.
func (r *ReportedView) apply(ch TwinChange) {
	if r.Cells == nil {
		r.Cells = map[string]CellView{}
	}
	for name, fields := range ch.Cells {
		c := r.Cells[name]
		if v, ok := fields["door"].(string); ok {
			c.Door = v
		}
		if v, ok := fields["lock"].(string); ok {
			c.Lock = v
		}
		if v, ok := fields["occupied"].(bool); ok {
			c.Occupied = &v
		}
		r.Cells[name] = c
	}
	if v, ok := ch.Power["mains"].(bool); ok {
		r.Power.Mains = &v
	}
	if v, ok := ch.Power["battery_v"].(float64); ok {
		r.Power.BatteryV = &v
	}
	if ch.Firmware != nil {
		r.Firmware = *ch.Firmware
	}
	if ch.DesiredVersion != nil {
		r.DesiredVersion = *ch.DesiredVersion
	}
}

// EventRecord is a stored device event.
type EventRecord struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Cell       string          `json:"cell,omitempty"`
	Cause      string          `json:"cause,omitempty"`
	TS         time.Time       `json:"ts"`
	ReceivedAt time.Time       `json:"received_at"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// Events returns a locker's latest events, newest first.
func (t *Twins) Events(ctx context.Context, lockerID string, limit int) ([]EventRecord, error) {
	if limit <= 0 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be between 1 and 1000", ErrInvalid)
	}
	rows, err := t.pool.Query(ctx, `SELECT event_id, type, cell, cause, ts, received_at, data FROM fleet_events
		WHERE locker_id = $1 ORDER BY received_at DESC, boot DESC, seq DESC LIMIT $2`, lockerID, limit)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	out := []EventRecord{}
	var e EventRecord
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.Type, &e.Cell, &e.Cause, &e.TS, &e.ReceivedAt, &data}, func() error {
		e.Data = nil
		if data != nil {
			e.Data = append(json.RawMessage(nil), data...)
		}
		out = append(out, e)
		return nil
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}
