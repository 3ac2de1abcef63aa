package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Duration is a time.Duration written as "30s", "5m" in JSON.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s", "5m", "1h30m" (or 0).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if json.Unmarshal(b, &n) == nil && n == 0 {
			*d = 0
			return nil
		}
		return fmt.Errorf("a duration is a string such as \"30s\" or \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// KindInfo describes a kind of alarm and its default rule.
type KindInfo struct {
	Kind      string   `json:"kind"`
	Source    string   `json:"source"` // event or condition
	Severity  string   `json:"severity"`
	Threshold *float64 `json:"threshold,omitempty"` // conditions with a threshold
	For       Duration `json:"for"`                 // conditions that must last
	Unit      string   `json:"unit,omitempty"`
	Doc       string   `json:"doc"`
}

func f(v float64) *float64 { return &v }

// Kinds lists every kind with its defaults.
var Kinds = []KindInfo{
	{Kind: KindDoorForced, Source: "event", Severity: SeverityCritical, Doc: "a door opened without a command, code or technician (or the locker reported it forced)"},
	{Kind: KindTamper, Source: "event", Severity: SeverityCritical, Doc: "the locker reported tampering"},
	{Kind: KindCommandUnconfirmed, Source: "event", Severity: SeverityMinor, Doc: "a cell.open command whose door sensor did not confirm"},
	{Kind: KindLockJammed, Source: "condition", Severity: SeverityMajor, Doc: "a cell's lock reports jammed"},
	{Kind: KindDoorOpen, Source: "condition", Severity: SeverityMajor, For: Duration(5 * time.Minute), Doc: "a door open longer than \"for\""},
	{Kind: KindOffline, Source: "condition", Severity: SeverityMajor, For: Duration(5 * time.Minute), Doc: "a locker offline longer than \"for\""},
	{Kind: KindMainsLost, Source: "condition", Severity: SeverityMajor, For: Duration(time.Minute), Doc: "a locker on battery longer than \"for\""},
	{Kind: KindBatteryLow, Source: "condition", Severity: SeverityMajor, Threshold: f(11.5), Unit: "V", Doc: "battery voltage below the threshold"},
	{Kind: KindFreeCellsLow, Source: "condition", Severity: SeverityMinor, Threshold: f(2), Unit: "cells", Doc: "free cells for loading below the threshold"},
	{Kind: KindCodeBruteForce, Source: "condition", Severity: SeverityMajor, Threshold: f(5), For: Duration(10 * time.Minute), Unit: "wrong codes",
		Doc: "wrong pickup codes typed at a locker within \"for\" (the window; the fleet-wide rule's) reach the threshold"},
	{Kind: KindTelemetryHigh, Source: "condition", Severity: SeverityMajor, Doc: "the telemetry metric of the rule above its threshold for \"for\" (rules need \"metric\")"},
	{Kind: KindTelemetryLow, Source: "condition", Severity: SeverityMajor, Doc: "the telemetry metric of the rule below its threshold for \"for\" (rules need \"metric\")"},
	{Kind: KindClockOffset, Source: "condition", Severity: SeverityMinor, Threshold: f(5), For: Duration(2 * time.Minute), Unit: "s",
		Doc: "the locker's clock is off from the hub's by more than the threshold, ahead or behind, for \"for\" (commands' not_after and pickup codes are checked on it)"},
}

// DefaultTelemetryRules apply until a fleet-wide rule of the same kind and
// metric replaces them: temperature and humidity out of range.
var DefaultTelemetryRules = []Rule{
	{Kind: KindTelemetryHigh, Metric: "temp_c", Enabled: true, Threshold: f(60), For: dur(5 * time.Minute)},
	{Kind: KindTelemetryLow, Metric: "temp_c", Enabled: true, Threshold: f(-30), For: dur(5 * time.Minute)},
	{Kind: KindTelemetryHigh, Metric: "humidity_pct", Enabled: true, Threshold: f(95), For: dur(30 * time.Minute)},
}

func telemetryKind(kind string) bool { return kind == KindTelemetryHigh || kind == KindTelemetryLow }

var metricRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func kindInfo(kind string) (KindInfo, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

// Rule overrides the default of a kind, for every locker or a segment,
// model or single locker (the most specific matching rule wins: locker,
// then segment, then model, then none).
type Rule struct {
	ID        int64     `json:"id"`
	Kind      string    `json:"kind"`
	Segment   string    `json:"segment,omitempty"`
	Model     string    `json:"model,omitempty"`
	LockerID  string    `json:"locker_id,omitempty"`
	Metric    string    `json:"metric,omitempty"` // telemetry_high, telemetry_low: the telemetry metric (temp_c, humidity_pct, …)
	Enabled   bool      `json:"enabled"`
	Severity  string    `json:"severity,omitempty"`  // "" = the kind's
	Threshold *float64  `json:"threshold,omitempty"` // nil = the kind's
	For       *Duration `json:"for,omitempty"`       // nil = the kind's
}

// Validate checks a rule.
func (r Rule) Validate() error {
	k, ok := kindInfo(r.Kind)
	switch {
	case !ok:
		return fmt.Errorf("%w: rule kind %q is not one of the alarm kinds (GET /api/v1/alarms/kinds)", ErrInvalid, r.Kind)
	case r.Severity != "" && !slices.Contains(Severities, r.Severity):
		return fmt.Errorf("%w: rule severity must be critical, major, minor or info, got %q", ErrInvalid, r.Severity)
	case telemetryKind(r.Kind) && !metricRE.MatchString(r.Metric):
		return fmt.Errorf("%w: a %s rule needs the telemetry metric (a-z, 0-9, _), got %q", ErrInvalid, r.Kind, r.Metric)
	case !telemetryKind(r.Kind) && r.Metric != "":
		return fmt.Errorf("%w: only telemetry_high and telemetry_low rules name a metric", ErrInvalid)
	case telemetryKind(r.Kind) && r.Threshold == nil && r.Enabled:
		return fmt.Errorf("%w: a %s rule needs a threshold", ErrInvalid, r.Kind)
	case r.Threshold != nil && k.Threshold == nil && !telemetryKind(r.Kind):
		return fmt.Errorf("%w: kind %s has no threshold", ErrInvalid, r.Kind)
	case r.Threshold != nil && !telemetryKind(r.Kind) && (*r.Threshold < 0 || *r.Threshold > 1e6):
		return fmt.Errorf("%w: rule threshold must be between 0 and 1000000, got %v", ErrInvalid, *r.Threshold)
	case r.Threshold != nil && (*r.Threshold < -1e6 || *r.Threshold > 1e6):
		return fmt.Errorf("%w: rule threshold must be between -1000000 and 1000000, got %v", ErrInvalid, *r.Threshold)
	case r.For != nil && (*r.For < 0 || time.Duration(*r.For) > 7*24*time.Hour):
		return fmt.Errorf("%w: rule \"for\" must be between 0 and 168h", ErrInvalid)
	case r.For != nil && k.Source == "event":
		return fmt.Errorf("%w: kind %s is an event and has no \"for\"", ErrInvalid, r.Kind)
	case len(r.Segment) > 100 || len(r.Model) > 100 || len(r.LockerID) > 100:
		return fmt.Errorf("%w: rule scope values are at most 100 characters", ErrInvalid)
	case (r.Segment != "" && r.Model != "") || (r.LockerID != "" && (r.Segment != "" || r.Model != "")):
		return fmt.Errorf("%w: a rule is scoped to one of segment, model or locker_id, not several", ErrInvalid)
	}
	return nil
}

// effective is a kind's rule for one locker.
type effective struct {
	Enabled   bool
	Severity  string
	Threshold float64
	For       time.Duration
}

// ruleFor returns the effective rule of kind for locker l.
func ruleFor(rules []Rule, kind string, l Locker) effective { return ruleForMetric(rules, kind, "", l) }

// ruleForMetric is ruleFor for a telemetry kind's metric; its default is
// the DefaultTelemetryRules entry, else disabled.
func ruleForMetric(rules []Rule, kind, metric string, l Locker) effective {
	k, _ := kindInfo(kind)
	if telemetryKind(kind) {
		k.Severity = SeverityMajor
		base := effective{Enabled: false, Severity: k.Severity}
		for _, d := range DefaultTelemetryRules {
			if d.Kind == kind && d.Metric == metric {
				base = effective{Enabled: true, Severity: k.Severity, Threshold: *d.Threshold, For: time.Duration(*d.For)}
			}
		}
		return pick(rules, kind, metric, l, base)
	}
	e := effective{Enabled: true, Severity: k.Severity, For: time.Duration(k.For)}
	if k.Threshold != nil {
		e.Threshold = *k.Threshold
	}
	return pick(rules, kind, metric, l, e)
}

// pick applies the most specific rule of kind (and metric) matching l to e.
func pick(rules []Rule, kind, metric string, l Locker, e effective) effective {
	best, rank := -1, -1
	for i, r := range rules {
		if r.Kind != kind || r.Metric != metric {
			continue
		}
		var rk int
		switch {
		case r.LockerID != "":
			if r.LockerID != l.ID {
				continue
			}
			rk = 3
		case r.Segment != "":
			if !slices.Contains(l.Segments, r.Segment) {
				continue
			}
			rk = 2
		case r.Model != "":
			if r.Model != l.Model {
				continue
			}
			rk = 1
		}
		if rk > rank {
			best, rank = i, rk
		}
	}
	if best >= 0 {
		r := rules[best]
		e.Enabled = r.Enabled
		if r.Severity != "" {
			e.Severity = r.Severity
		}
		if r.Threshold != nil {
			e.Threshold = *r.Threshold
		}
		if r.For != nil {
			e.For = time.Duration(*r.For)
		}
	}
	return e
}

func loadRules(ctx context.Context, pool *pgxpool.Pool) ([]Rule, error) {
	rows, err := pool.Query(ctx, `SELECT id, kind, segment, model, locker_id, metric, enabled, severity, threshold, for_ms FROM alarms_rules ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("alarm rules: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rule, error) {
		var x Rule
		var ms *int64
		err := r.Scan(&x.ID, &x.Kind, &x.Segment, &x.Model, &x.LockerID, &x.Metric, &x.Enabled, &x.Severity, &x.Threshold, &ms)
		if ms != nil {
			d := Duration(time.Duration(*ms) * time.Millisecond)
			x.For = &d
		}
		return x, err
	})
}

// Rules returns the configured rules.
func (s *Store) Rules() []Rule {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.rules)
}

// maxRules bounds the rule set.
const maxRules = 10_000

// SetRules replaces every rule (validated, audited). Conditions are
// evaluated under the new rules at the next evaluation.
func (s *Store) SetRules(ctx context.Context, rules []Rule) ([]Rule, error) {
	if len(rules) > maxRules {
		return nil, fmt.Errorf("%w: at most %d rules", ErrInvalid, maxRules)
	}
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
	}
	before := s.Rules()
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM alarms_rules`); err != nil {
			return err
		}
		for i := range rules {
			r := &rules[i]
			var ms *int64
			if r.For != nil {
				v := time.Duration(*r.For).Milliseconds()
				ms = &v
			}
			if err := tx.QueryRow(ctx, `INSERT INTO alarms_rules (kind, segment, model, locker_id, metric, enabled, severity, threshold, for_ms)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`, r.Kind, r.Segment, r.Model, r.LockerID, r.Metric, r.Enabled, r.Severity, r.Threshold,
				ms).Scan(&r.ID); err != nil {
				return fmt.Errorf("store rule %d: %w", i, err)
			}
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "alarm_rules", ObjectID: strconv.Itoa(len(rules)), Before: before, After: rules})
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.rules = slices.Clone(rules)
	s.mu.Unlock()
	return rules, nil
}
