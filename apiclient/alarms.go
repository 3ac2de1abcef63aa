package apiclient

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Alarm is an alarm as the API returns it (docs/alarms.md).
type Alarm struct {
	ID          int64      `json:"id"`
	Fingerprint string     `json:"fingerprint"`
	Kind        string     `json:"kind"`
	Severity    string     `json:"severity"`
	LockerID    string     `json:"locker_id"`
	Cell        string     `json:"cell,omitempty"`
	Segments    []string   `json:"segments"`
	State       string     `json:"state"` // firing, acknowledged, resolved
	Summary     string     `json:"summary"`
	Occurrences int        `json:"occurrences"`
	Muted       bool       `json:"muted"`
	Silenced    bool       `json:"silenced"`
	Inhibited   bool       `json:"inhibited"`
	StartedAt   time.Time  `json:"started_at"`
	AckedAt     *time.Time `json:"acked_at,omitempty"`
	AckedBy     string     `json:"acked_by,omitempty"`
	AckNote     string     `json:"ack_note,omitempty"`
	ResolvedAt  *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy  string     `json:"resolved_by,omitempty"`
}

// AlarmFilter selects alarms; empty fields match all.
type AlarmFilter struct {
	State, Locker, Kind string // state: open, firing, acknowledged, resolved
	Limit               int
}

// Alarms lists alarms, newest first.
func (c *Client) Alarms(ctx context.Context, f AlarmFilter) ([]Alarm, error) {
	var out struct {
		Alarms []Alarm `json:"alarms"`
	}
	err := c.JSON(ctx, http.MethodGet, listPath("/api/v1/alarms", map[string]string{"state": f.State, "locker": f.Locker, "kind": f.Kind}, f.Limit, 0), nil, &out)
	return out.Alarms, err
}

// AckAlarm acknowledges a firing alarm with a note.
func (c *Client) AckAlarm(ctx context.Context, id int64, note string) (Alarm, error) {
	var out Alarm
	err := c.JSON(ctx, http.MethodPost, "/api/v1/alarms/"+strconv.FormatInt(id, 10)+"/ack", map[string]string{"note": note}, &out)
	return out, err
}

// ResolveAlarm resolves an open alarm by hand.
func (c *Client) ResolveAlarm(ctx context.Context, id int64, note string) (Alarm, error) {
	var out Alarm
	err := c.JSON(ctx, http.MethodPost, "/api/v1/alarms/"+strconv.FormatInt(id, 10)+"/resolve", map[string]string{"note": note}, &out)
	return out, err
}

// AlarmMatcher selects alarms by a label: kind, severity, locker, cell,
// segment, carrier or model; op is =, !=, =~ or !~.
type AlarmMatcher struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

// Silence suppresses the notifications of matching alarms for a time.
type Silence struct {
	ID        int64          `json:"id,omitempty"`
	Matchers  []AlarmMatcher `json:"matchers"`
	StartsAt  *time.Time     `json:"starts_at,omitempty"`
	EndsAt    time.Time      `json:"ends_at"`
	Comment   string         `json:"comment,omitempty"`
	CreatedBy string         `json:"created_by,omitempty"`
	Active    bool           `json:"active,omitempty"`
}

// CreateSilence creates a silence.
func (c *Client) CreateSilence(ctx context.Context, s Silence) (Silence, error) {
	in := struct {
		Matchers []AlarmMatcher `json:"matchers"`
		StartsAt *time.Time     `json:"starts_at,omitempty"`
		EndsAt   time.Time      `json:"ends_at"`
		Comment  string         `json:"comment,omitempty"`
	}{s.Matchers, s.StartsAt, s.EndsAt, s.Comment}
	var out Silence
	err := c.JSON(ctx, http.MethodPost, "/api/v1/alarms/silences", in, &out)
	return out, err
}

// Silences lists the silences that have not ended.
func (c *Client) Silences(ctx context.Context) ([]Silence, error) {
	var out struct {
		Silences []Silence `json:"silences"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/alarms/silences", nil, &out)
	return out.Silences, err
}

// ExpireSilence ends a silence now.
func (c *Client) ExpireSilence(ctx context.Context, id int64) error {
	return c.JSON(ctx, http.MethodDelete, "/api/v1/alarms/silences/"+strconv.FormatInt(id, 10), nil, nil)
}
