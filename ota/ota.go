// Package ota rolls firmware out to the fleet in stages (docs/ota.md):
// artifacts (stored under the data dir, SHA-256, signed with the hub's
// Ed25519 key), rollouts to a target set in waves (a canary, then growing
// waves) with success, failure and abort thresholds, optional approval
// between waves and a health gate, and every targeted locker's update state
// (queued → notified → downloading → downloaded → verified → installing →
// installed | failed). One engine goroutine (Run) drives it all; the state is
// in PostgreSQL, so a restarted hub carries on where it stopped.
//
// The package talks to lockers and to the fleet through the small interfaces
// Devices and Fleet, which app wires to the broker and to fleet.
package ota

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema.
func Migrations() pg.Migrations { return pg.Embedded("ota", migrationsFS, "migrations") }

// Errors, mapped to HTTP by web.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrTooLarge = errors.New("too large")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Devices reaches lockers; the broker implements it.
type Devices interface {
	// Request publishes an RPC request without waiting; the answer comes
	// back through Response.
	Request(lockerID string, req protocol.Request) error
	Online(lockerID string) bool
}

// Locker is what a rollout needs to know of a registered locker.
type Locker struct {
	ID       string
	Model    string
	Segments []string
	TimeZone string // IANA; "" = UTC
	Firmware string // as last reported
}

// HealthCounts are the health signals of a group of lockers over a time.
type HealthCounts struct {
	Lockers         int `json:"lockers"`
	Reconnects      int `json:"reconnects"`
	CommandFailures int `json:"command_failures"`
	Faults          int `json:"faults"` // forced doors, jammed locks
}

// Fleet answers what ota asks about lockers; app wires it to fleet.
type Fleet interface {
	// Lockers lists the enabled lockers.
	Lockers(ctx context.Context) ([]Locker, error)
	// Firmware is the locker's reported firmware ("" when unknown).
	Firmware(lockerID string) string
	// TimeZone is the locker's IANA time zone ("" when not set: UTC).
	TimeZone(lockerID string) string
	// Busy says why the locker should not update now: a door open or a
	// command in progress (a cell operation or parcel session), or on
	// battery power. "" when it may.
	Busy(lockerID string) string
	// Health counts reconnects, failed commands and door/lock faults of the
	// lockers since a time.
	Health(ctx context.Context, lockerIDs []string, since time.Time) (HealthCounts, error)
}

// Config of the updater. Zero values take the defaults noted.
type Config struct {
	DataDir string // artifacts under DataDir/ota, the signing key in DataDir
	// DeviceURL is the base of the download URLs sent to lockers, the device
	// listener as lockers reach it (https://host:port). Set by app.
	DeviceURL        string
	MaxArtifactBytes int64         // 256 MiB
	MaxDownloads     int           // concurrent downloads served; more get 503 + Retry-After; 64
	RetryAfter       time.Duration // the Retry-After of that 503; 10 s
	Tick             time.Duration // engine period; 1 s
	NotifyTimeout    time.Duration // ota.install sent → first status; 2 min
	DownloadTimeout  time.Duration // without download progress; 10 min
	VerifyTimeout    time.Duration // downloaded → verified → installing; 5 min
	InstallTimeout   time.Duration // installing → reconnect with the new version; 15 min
	Retries          int           // attempts after the first, per locker; 2 (-1: none)
	SendsPerTick     int           // ota.install requests sent per tick at most; 500
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxArtifactBytes <= 0 {
		c.MaxArtifactBytes = 256 << 20
	}
	if c.MaxDownloads <= 0 {
		c.MaxDownloads = 64
	}
	def(&c.RetryAfter, 10*time.Second)
	def(&c.Tick, time.Second)
	def(&c.NotifyTimeout, 2*time.Minute)
	def(&c.DownloadTimeout, 10*time.Minute)
	def(&c.VerifyTimeout, 5*time.Minute)
	def(&c.InstallTimeout, 15*time.Minute)
	switch {
	case c.Retries == 0:
		c.Retries = 2
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.SendsPerTick <= 0 {
		c.SendsPerTick = 500
	}
}

// Duration is a time.Duration written as "10m" in JSON.
type Duration time.Duration

// MarshalJSON writes "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "10m" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("a duration such as \"10m\": %w", err)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Targets select the lockers of a rollout: every enabled locker that matches
// all the given criteria (an empty one matches all). Lockers already on the
// artifact's version, and of a model the artifact is not for, are left out.
type Targets struct {
	Segments []string `json:"segments,omitempty"` // in any of these segments
	Models   []string `json:"models,omitempty"`   // of one of these models
	Versions []string `json:"versions,omitempty"` // currently reporting one of these versions
	Lockers  []string `json:"lockers,omitempty"`  // one of these lockers
}

// Window is a daily maintenance window in the locker's local time, "HH:MM"
// to "HH:MM"; one that ends before it starts spans midnight.
type Window struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Contains reports whether t, in the locker's time zone loc, is inside the window.
func (w Window) Contains(t time.Time, loc *time.Location) bool {
	s, err1 := parseClock(w.Start)
	e, err2 := parseClock(w.End)
	if err1 != nil || err2 != nil {
		return false
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	if s <= e {
		return m >= s && m < e
	}
	return m >= s || m < e
}

// Growth of the waves after the canary.
const (
	GrowthPercent     = "percent"     // each wave is Percent % of the targets
	GrowthExponential = "exponential" // each wave is Factor × the previous one
)

// Policy says how a rollout proceeds.
type Policy struct {
	Canary  int     `json:"canary"`  // lockers in the first wave; 10 (at most all)
	Growth  string  `json:"growth"`  // percent (default) or exponential
	Percent float64 `json:"percent"` // percent: 25
	Factor  float64 `json:"factor"`  // exponential: 2
	// Order assigns lockers to waves: "random" (default) or "id" (by locker
	// ID, so the canary is the first N IDs).
	Order string `json:"order"`
	// SuccessPct of a wave installed lets the rollout advance (after the
	// soak); 95. FailurePct of a wave failed pauses the rollout; 20.
	// AbortPct of the lockers of the started waves failed aborts it; 50.
	SuccessPct float64 `json:"success_pct"`
	FailurePct float64 `json:"failure_pct"`
	AbortPct   float64 `json:"abort_pct"`
	// Approval: after each wave but the last, wait for an approve.
	Approval bool `json:"approval"`
	// Soak is how long the health gate watches a wave before the next
	// starts; 0 = no soak. HealthFactor and HealthMargin: the updated
	// lockers are worse when, per locker, a signal is above factor × the
	// others' + margin (2 and 0.2).
	Soak         Duration `json:"soak"`
	HealthFactor float64  `json:"health_factor"`
	HealthMargin float64  `json:"health_margin"`
	// Window, when set, is the maintenance window (locker local time).
	Window *Window `json:"window,omitempty"`
	// MaxInFlight bounds the lockers updating at once (0: no bound).
	MaxInFlight int `json:"max_in_flight"`
}

func (p *Policy) normalize() error {
	if p.Canary == 0 {
		p.Canary = 10
	}
	if p.Growth == "" {
		p.Growth = GrowthPercent
	}
	if p.Percent == 0 {
		p.Percent = 25
	}
	if p.Factor == 0 {
		p.Factor = 2
	}
	if p.Order == "" {
		p.Order = "random"
	}
	if p.SuccessPct == 0 {
		p.SuccessPct = 95
	}
	if p.FailurePct == 0 {
		p.FailurePct = 20
	}
	if p.AbortPct == 0 {
		p.AbortPct = 50
	}
	if p.HealthFactor == 0 {
		p.HealthFactor = 2
	}
	if p.HealthMargin == 0 {
		p.HealthMargin = 0.2
	}
	switch {
	case p.Canary < 1:
		return invalid("canary must be at least 1")
	case p.Growth != GrowthPercent && p.Growth != GrowthExponential:
		return invalid("growth must be %s or %s", GrowthPercent, GrowthExponential)
	case p.Percent <= 0 || p.Percent > 100:
		return invalid("percent must be in (0, 100]")
	case p.Factor <= 1 || p.Factor > 100:
		return invalid("factor must be in (1, 100]")
	case p.Order != "random" && p.Order != "id":
		return invalid(`order must be "random" or "id"`)
	case p.SuccessPct <= 0 || p.SuccessPct > 100, p.FailurePct <= 0 || p.FailurePct > 100, p.AbortPct <= 0 || p.AbortPct > 100:
		return invalid("success_pct, failure_pct and abort_pct must be in (0, 100]")
	case p.Soak < 0 || time.Duration(p.Soak) > 7*24*time.Hour:
		return invalid("soak must be between 0 and 168h")
	case p.HealthFactor < 1 || p.HealthMargin < 0:
		return invalid("health_factor must be at least 1 and health_margin not negative")
	case p.MaxInFlight < 0:
		return invalid("max_in_flight must not be negative")
	}
	if p.Window != nil {
		if _, err := parseClock(p.Window.Start); err != nil {
			return invalid("window.start: %v", err)
		}
		if _, err := parseClock(p.Window.End); err != nil {
			return invalid("window.end: %v", err)
		}
	}
	return nil
}

// waveSizes splits total lockers into waves: the canary, then growing waves
// until all are in one.
func (p Policy) waveSizes(total int) []int {
	if total <= 0 {
		return nil
	}
	sizes := []int{min(p.Canary, total)}
	left := total - sizes[0]
	prev := sizes[0]
	for left > 0 {
		var n int
		if p.Growth == GrowthExponential {
			n = int(float64(prev) * p.Factor)
		} else {
			n = int(float64(total)*p.Percent/100 + 0.999999)
		}
		n = max(n, 1)
		n = min(n, left)
		sizes = append(sizes, n)
		left -= n
		prev = n
	}
	return sizes
}

// Rollout states.
const (
	RolloutDraft     = "draft"
	RolloutRunning   = "running"
	RolloutPaused    = "paused"
	RolloutCompleted = "completed"
	RolloutCancelled = "cancelled"
	RolloutAborted   = "aborted"
)

// Wave states.
const (
	WavePending  = "pending"
	WaveRunning  = "running"
	WaveSoaking  = "soaking"
	WaveApproval = "awaiting_approval"
	WaveDone     = "done"
)

// Locker update states.
const (
	StatePending     = "pending"
	StateQueued      = "queued"
	StateNotified    = "notified"
	StateDownloading = protocol.OTADownloading
	StateDownloaded  = protocol.OTADownloaded
	StateVerified    = protocol.OTAVerified
	StateInstalling  = protocol.OTAInstalling
	StateInstalled   = protocol.OTAInstalled
	StateFailed      = protocol.OTAFailed
	StateCancelled   = "cancelled"
)

// States lists the locker states in order.
var States = []string{StatePending, StateQueued, StateNotified, StateDownloading, StateDownloaded, StateVerified,
	StateInstalling, StateInstalled, StateFailed, StateCancelled}

// stepRank orders the in-progress states; 0 for the others.
func stepRank(s string) int {
	switch s {
	case StateNotified:
		return 1
	case StateDownloading:
		return 2
	case StateDownloaded:
		return 3
	case StateVerified:
		return 4
	case StateInstalling:
		return 5
	case StateInstalled:
		return 6
	}
	return 0
}

func inProgress(s string) bool { r := stepRank(s); return r >= 1 && r <= 5 }

func final(s string) bool { return s == StateInstalled || s == StateFailed || s == StateCancelled }

// reasonClass is the bounded metric label of a failure reason: the part
// before the first ':'.
func reasonClass(reason string) string {
	c, _, _ := strings.Cut(reason, ":")
	switch c {
	case "download", "hash_mismatch", "bad_signature", "install", "timeout", "refused", "offline",
		"installed_without_download", "wrong_version", "cancelled":
		return c
	}
	return "other"
}

// Audit object types and actions.
const (
	EntityArtifact = "ota_artifact"
	EntityRollout  = "ota_rollout"
)
