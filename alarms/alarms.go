// Package alarms raises alarms from device events and derived conditions,
// deduplicates them by fingerprint (kind, locker, cell), keeps their
// lifecycle (firing → acknowledged → resolved) and history, and routes
// notifications to receivers through the durable outbox: grouped, silenced,
// inhibited, repeated while unacknowledged and escalated along an on-call
// schedule. See docs/alarms.md.
package alarms

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema. It needs fleet's (a trigger on
// fleet_events) and applies after it.
func Migrations() pg.Migrations { return pg.Embedded("alarms", migrationsFS, "migrations") }

// Errors.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Kinds of alarm.
const (
	KindDoorForced         = "door_forced"         // event: a door opened without a cause, or the locker said forced
	KindTamper             = "tamper"              // event
	KindLockJammed         = "lock_jammed"         // condition: a cell's lock reports jammed
	KindDoorOpen           = "door_open"           // condition: a door open longer than the rule's "for"
	KindOffline            = "offline"             // condition: offline longer than the rule's "for"
	KindMainsLost          = "mains_lost"          // condition: on battery longer than the rule's "for"
	KindBatteryLow         = "battery_low"         // condition: battery voltage below the threshold
	KindFreeCellsLow       = "free_cells_low"      // condition: free cells for loading below the threshold
	KindCommandUnconfirmed = "command_unconfirmed" // event: a command's door sensor did not confirm
	KindCodeBruteForce     = "code_brute_force"    // condition: wrong pickup codes at a locker within "for" reach the threshold
	KindTelemetryHigh      = "telemetry_high"      // condition: a telemetry metric (rule "metric") above the threshold
	KindTelemetryLow       = "telemetry_low"       // condition: a telemetry metric below the threshold
	KindClockOffset        = "clock_offset"        // condition: the locker's clock off by more than the threshold (s) for "for"
)

// Severities, most severe first.
const (
	SeverityCritical = "critical"
	SeverityMajor    = "major"
	SeverityMinor    = "minor"
	SeverityInfo     = "info"
)

// Severities lists every severity.
var Severities = []string{SeverityCritical, SeverityMajor, SeverityMinor, SeverityInfo}

// States of an alarm.
const (
	StateFiring       = "firing"
	StateAcknowledged = "acknowledged"
	StateResolved     = "resolved"
)

// Alarm is one alarm.
type Alarm struct {
	ID          int64      `json:"id"`
	Fingerprint string     `json:"fingerprint"`
	Kind        string     `json:"kind"`
	Severity    string     `json:"severity"`
	LockerID    string     `json:"locker_id"`
	Cell        string     `json:"cell,omitempty"`
	Segments    []string   `json:"segments"`
	Carriers    []string   `json:"carriers"`
	Model       string     `json:"model,omitempty"`
	State       string     `json:"state"`
	Summary     string     `json:"summary"`
	Source      string     `json:"source,omitempty"`
	Value       *float64   `json:"value,omitempty"`
	Occurrences int        `json:"occurrences"`
	Muted       bool       `json:"muted"`
	Silenced    bool       `json:"silenced"`  // an active silence matches it (computed)
	Inhibited   bool       `json:"inhibited"` // its locker's offline alarm fires (computed)
	StartedAt   time.Time  `json:"started_at"`
	LastSeenAt  time.Time  `json:"last_seen_at"`
	AckedAt     *time.Time `json:"acked_at,omitempty"`
	AckedBy     string     `json:"acked_by,omitempty"`
	AckNote     string     `json:"ack_note,omitempty"`
	ResolvedAt  *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy  string     `json:"resolved_by,omitempty"`
}

// label returns the value of a matcher or group-by label of the alarm; the
// multi-valued ones (segment, carrier) are joined with ",".
func (a *Alarm) label(name string) string {
	switch name {
	case "kind":
		return a.Kind
	case "severity":
		return a.Severity
	case "locker":
		return a.LockerID
	case "cell":
		return a.Cell
	case "model":
		return a.Model
	case "segment":
		return strings.Join(a.Segments, ",")
	case "carrier":
		return strings.Join(a.Carriers, ",")
	}
	return ""
}

// labelValues returns every value of a label (one per segment or carrier).
func (a *Alarm) labelValues(name string) []string {
	switch name {
	case "segment":
		return a.Segments
	case "carrier":
		return a.Carriers
	}
	return []string{a.label(name)}
}

// HistoryEntry is one step of an alarm.
type HistoryEntry struct {
	At     time.Time `json:"at"`
	Action string    `json:"action"`
	By     string    `json:"by,omitempty"`
	Note   string    `json:"note,omitempty"`
}

// Locker is what the alarms need to know of a locker.
type Locker struct {
	ID       string
	Model    string
	Segments []string
	Carriers []string
	Enabled  bool
	Presence string    // online, offline, unknown (after a start, within the reconnect window)
	Since    time.Time // of the current presence; zero when not known
	Mains    *bool
	BatteryV *float64
	// OpenDoors, JammedCells: cell names.
	OpenDoors   []string
	JammedCells []string
	FreeCells   int  // for loading, every size
	Cells       int  // in its layout
	Reported    bool // the locker has reported its state at least once
	// Metrics are the locker's latest telemetry sample (nil: none yet).
	Metrics map[string]float64
	// ClockOffset is the hub's estimate of the locker's clock offset in
	// seconds, positive ahead (nil: no recent message to estimate from).
	ClockOffset *float64
}

// Fleet is the alarms' view of the fleet (app wires the fleet to it).
type Fleet interface {
	// Lockers returns every locker as it is now.
	Lockers() []Locker
	// Locker returns one locker.
	Locker(id string) (Locker, bool)
}

// Config tunes the alarms; zero values take the defaults in brackets.
type Config struct {
	EvalInterval time.Duration // derived conditions are evaluated this often [2s]
	FlushPoll    time.Duration // notification groups are looked at at least this often [1s]
	MaxListed    int           // alarms listed in one notification (the rest counted) [50]
	ExternalURL  string        // the dashboard's address, named in notifications [""]
}

func (c *Config) defaults() {
	if c.EvalInterval <= 0 {
		c.EvalInterval = 2 * time.Second
	}
	if c.FlushPoll <= 0 {
		c.FlushPoll = time.Second
	}
	if c.MaxListed <= 0 {
		c.MaxListed = 50
	}
}

// Store keeps the alarms and runs their sources and notifications.
type Store struct {
	pool  *pgxpool.Pool
	fleet Fleet
	log   *slog.Logger
	cfg   Config
	m     *metrics

	mu      sync.RWMutex
	routing Routing  // validated
	rules   []Rule   // validated
	cond    condSeen // derived-condition bookkeeping (evaluator goroutine only)

	wakeFlush chan struct{}
	wakeInbox chan struct{}

	onFired []func(Alarm) // see OnFired
}

// OnFired registers fn to hear of every new alarm raised from a device
// event (door forced, tamper), after its transaction committed; app wires
// the camera recordings to it. fn runs on the alarms' consumer goroutine and
// must not block. Call it before Run.
func (s *Store) OnFired(fn func(Alarm)) { s.onFired = append(s.onFired, fn) }

func (s *Store) notifyFired(list []Alarm) {
	for _, a := range list {
		for _, fn := range s.onFired {
			fn(a)
		}
	}
}

// New returns a store; Load it, then Run it.
func New(pool *pgxpool.Pool, fleet Fleet, logger *slog.Logger, reg prometheus.Registerer, cfg Config) *Store {
	cfg.defaults()
	s := &Store{pool: pool, fleet: fleet, log: logger, cfg: cfg, routing: DefaultRouting(),
		wakeFlush: make(chan struct{}, 1), wakeInbox: make(chan struct{}, 1)}
	s.m = newMetrics(reg, pool)
	return s
}

// Load reads the rules and routing.
func (s *Store) Load(ctx context.Context) error {
	rules, err := loadRules(ctx, s.pool)
	if err != nil {
		return err
	}
	rt, err := loadRouting(ctx, s.pool)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.rules, s.routing = rules, rt
	s.mu.Unlock()
	return s.loadConditions(ctx)
}

// Run runs the event consumer, the condition evaluator and the
// notification flusher until ctx ends.
func (s *Store) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); s.listen(ctx) }()
	go func() { defer wg.Done(); s.consumeInbox(ctx) }()
	go func() { defer wg.Done(); s.evaluate(ctx) }()
	go func() { defer wg.Done(); s.flushLoop(ctx) }()
	wg.Wait()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// candidate is an alarm a source wants firing.
type candidate struct {
	Kind, Severity, LockerID, Cell, Summary, Source string
	Key                                             string // the fingerprint's last part when not the cell (a telemetry metric)
	Value                                           *float64
	At                                              time.Time
}

func fingerprint(kind, locker, cell string) string { return kind + "/" + locker + "/" + cell }

const alarmCols = `id, fingerprint, kind, severity, locker_id, cell, segments, carriers, model, state, summary, source, value,
	occurrences, muted, started_at, last_seen_at, acked_at, acked_by, ack_note, resolved_at, resolved_by`

func scanAlarm(r pgx.Row) (Alarm, error) {
	var a Alarm
	err := r.Scan(&a.ID, &a.Fingerprint, &a.Kind, &a.Severity, &a.LockerID, &a.Cell, &a.Segments, &a.Carriers, &a.Model, &a.State,
		&a.Summary, &a.Source, &a.Value, &a.Occurrences, &a.Muted, &a.StartedAt, &a.LastSeenAt, &a.AckedAt, &a.AckedBy, &a.AckNote,
		&a.ResolvedAt, &a.ResolvedBy)
	return a, err
}

// fire raises c in tx, or counts one more occurrence of the open alarm of
// its fingerprint. It reports the alarm and whether it is new.
func (s *Store) fire(ctx context.Context, tx pgx.Tx, c candidate) (Alarm, bool, error) {
	l, _ := s.fleet.Locker(c.LockerID)
	segs, cars := l.Segments, l.Carriers
	if segs == nil {
		segs = []string{}
	}
	if cars == nil {
		cars = []string{}
	}
	key := c.Cell
	if c.Key != "" {
		key = c.Key
	}
	fp := fingerprint(c.Kind, c.LockerID, key)
	var inserted bool
	var a Alarm
	row := tx.QueryRow(ctx, `INSERT INTO alarms_alarms (fingerprint, kind, severity, locker_id, cell, segments, carriers, model, state, summary, source, value, started_at, last_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'firing', $9, $10, $11, $12, $12)
		ON CONFLICT (fingerprint) WHERE state <> 'resolved'
		DO UPDATE SET occurrences = alarms_alarms.occurrences + 1, last_seen_at = excluded.last_seen_at, value = excluded.value
		RETURNING `+alarmCols+`, xmax = 0`,
		fp, c.Kind, c.Severity, c.LockerID, c.Cell, segs, cars, l.Model, c.Summary, c.Source, c.Value, c.At)
	err := row.Scan(&a.ID, &a.Fingerprint, &a.Kind, &a.Severity, &a.LockerID, &a.Cell, &a.Segments, &a.Carriers, &a.Model, &a.State,
		&a.Summary, &a.Source, &a.Value, &a.Occurrences, &a.Muted, &a.StartedAt, &a.LastSeenAt, &a.AckedAt, &a.AckedBy, &a.AckNote,
		&a.ResolvedAt, &a.ResolvedBy, &inserted)
	if err != nil {
		return Alarm{}, false, fmt.Errorf("fire %s: %w", fp, err)
	}
	action := "repeated"
	if inserted {
		action = "fired"
	}
	if _, err := tx.Exec(ctx, `INSERT INTO alarms_history (alarm_id, action, note) VALUES ($1, $2, $3)`, a.ID, action, c.Source); err != nil {
		return Alarm{}, false, fmt.Errorf("fire %s: history: %w", fp, err)
	}
	if inserted {
		if err := s.touch(ctx, tx, a); err != nil {
			return Alarm{}, false, err
		}
		s.m.fired.WithLabelValues(a.Kind, a.Severity).Inc()
	}
	return a, inserted, nil
}

// resolveTx resolves alarm id in tx ("by" empty: the condition cleared).
func (s *Store) resolveTx(ctx context.Context, tx pgx.Tx, id int64, by, note string) (Alarm, error) {
	a, err := scanAlarm(tx.QueryRow(ctx, `UPDATE alarms_alarms SET state = 'resolved', resolved_at = now(), resolved_by = $2
		WHERE id = $1 AND state <> 'resolved' RETURNING `+alarmCols, id, by))
	if errors.Is(err, pgx.ErrNoRows) {
		return Alarm{}, fmt.Errorf("%w: alarm %d is not open", ErrConflict, id)
	}
	if err != nil {
		return Alarm{}, fmt.Errorf("resolve alarm %d: %w", id, err)
	}
	if note == "" && by == "" {
		note = "the condition cleared"
	}
	if _, err := tx.Exec(ctx, `INSERT INTO alarms_history (alarm_id, action, by, note) VALUES ($1, 'resolved', $2, $3)`, id, by, note); err != nil {
		return Alarm{}, fmt.Errorf("resolve alarm %d: history: %w", id, err)
	}
	return a, s.touch(ctx, tx, a)
}

func actorName(ctx context.Context) string {
	a := audit.ActorFrom(ctx)
	if a.Name != "" {
		return a.Name
	}
	if a.Kind != "" {
		return a.Kind
	}
	return "system"
}

// Get returns one alarm with its computed silence and inhibition.
func (s *Store) Get(ctx context.Context, id int64) (Alarm, error) {
	a, err := scanAlarm(s.pool.QueryRow(ctx, `SELECT `+alarmCols+` FROM alarms_alarms WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Alarm{}, fmt.Errorf("%w: alarm %d", ErrNotFound, id)
	}
	if err != nil {
		return Alarm{}, fmt.Errorf("alarm %d: %w", id, err)
	}
	list := []Alarm{a}
	if err := s.annotate(ctx, s.pool, list); err != nil {
		return Alarm{}, err
	}
	return list[0], nil
}

// History returns the steps of one alarm, oldest first.
func (s *Store) History(ctx context.Context, id int64) ([]HistoryEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, action, by, note FROM alarms_history WHERE alarm_id = $1 ORDER BY at, ctid`, id)
	if err != nil {
		return nil, fmt.Errorf("alarm history: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (HistoryEntry, error) {
		var h HistoryEntry
		return h, r.Scan(&h.At, &h.Action, &h.By, &h.Note)
	})
}

// Filter selects alarms; empty fields match all.
type Filter struct {
	State    string // firing, acknowledged, resolved, or "open" (not resolved)
	LockerID string
	Kind     string
	Limit    int // [100], at most 1000
}

// List returns alarms, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Alarm, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		return nil, fmt.Errorf("%w: limit is at most 1000", ErrInvalid)
	}
	if f.State != "" && f.State != "open" && !slices.Contains([]string{StateFiring, StateAcknowledged, StateResolved}, f.State) {
		return nil, fmt.Errorf("%w: state must be open, firing, acknowledged or resolved, got %q", ErrInvalid, f.State)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+alarmCols+` FROM alarms_alarms
		WHERE ($1 = '' OR ($1 = 'open' AND state <> 'resolved') OR state = $1)
		AND ($2 = '' OR locker_id = $2) AND ($3 = '' OR kind = $3)
		ORDER BY started_at DESC, id DESC LIMIT $4`, f.State, f.LockerID, f.Kind, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alarm, error) { return scanAlarm(r) })
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	return list, s.annotate(ctx, s.pool, list)
}

// Acknowledge marks a firing alarm acknowledged by the caller with a note:
// its reminders and escalation stop.
func (s *Store) Acknowledge(ctx context.Context, id int64, note string) (Alarm, error) {
	if len(note) > 1000 {
		return Alarm{}, fmt.Errorf("%w: note is at most 1000 characters", ErrInvalid)
	}
	by := actorName(ctx)
	var a Alarm
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = scanAlarm(tx.QueryRow(ctx, `UPDATE alarms_alarms SET state = 'acknowledged', acked_at = now(), acked_by = $2, ack_note = $3
			WHERE id = $1 AND state = 'firing' RETURNING `+alarmCols, id, by, note))
		if errors.Is(err, pgx.ErrNoRows) {
			return s.notOpen(ctx, tx, id, "acknowledged")
		}
		if err != nil {
			return fmt.Errorf("acknowledge alarm %d: %w", id, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_history (alarm_id, action, by, note) VALUES ($1, 'acknowledged', $2, $3)`, id, by, note); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "acknowledge", ObjectType: "alarm", ObjectID: fmt.Sprint(id), After: map[string]string{"note": note}})
	})
	return a, err
}

// notOpen explains why alarm id cannot be changed.
func (s *Store) notOpen(ctx context.Context, tx pgx.Tx, id int64, want string) error {
	var state string
	err := tx.QueryRow(ctx, `SELECT state FROM alarms_alarms WHERE id = $1`, id).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: alarm %d", ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: alarm %d is %s and cannot be %s", ErrConflict, id, state, want)
}

// Resolve resolves an open alarm by hand.
func (s *Store) Resolve(ctx context.Context, id int64, note string) (Alarm, error) {
	if len(note) > 1000 {
		return Alarm{}, fmt.Errorf("%w: note is at most 1000 characters", ErrInvalid)
	}
	var a Alarm
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = s.resolveTx(ctx, tx, id, actorName(ctx), note)
		if errors.Is(err, ErrConflict) {
			return s.notOpen(ctx, tx, id, "resolved")
		}
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "resolve", ObjectType: "alarm", ObjectID: fmt.Sprint(id), After: map[string]string{"note": note}})
	})
	if err == nil {
		s.forget(a)
		signal(s.wakeFlush)
	}
	return a, err
}

// Mute silences one open alarm until it is resolved.
func (s *Store) Mute(ctx context.Context, id int64) (Alarm, error) {
	var a Alarm
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = scanAlarm(tx.QueryRow(ctx, `UPDATE alarms_alarms SET muted = true WHERE id = $1 AND state <> 'resolved' RETURNING `+alarmCols, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return s.notOpen(ctx, tx, id, "muted")
		}
		if err != nil {
			return fmt.Errorf("mute alarm %d: %w", id, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_history (alarm_id, action, by) VALUES ($1, 'muted', $2)`, id, actorName(ctx)); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "mute", ObjectType: "alarm", ObjectID: fmt.Sprint(id)})
	})
	return a, err
}

// annotate sets Silenced and Inhibited of open alarms.
func (s *Store) annotate(ctx context.Context, q querier, list []Alarm) error {
	if len(list) == 0 {
		return nil
	}
	sil, err := activeSilences(ctx, q)
	if err != nil {
		return err
	}
	var lockers []string
	for _, a := range list {
		lockers = append(lockers, a.LockerID)
	}
	off, err := offlineLockers(ctx, q, lockers)
	if err != nil {
		return err
	}
	for i := range list {
		a := &list[i]
		if a.State == StateResolved {
			continue
		}
		a.Silenced = silenced(sil, a)
		a.Inhibited = off[a.LockerID] && inhibitable(a.Kind)
	}
	return nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
