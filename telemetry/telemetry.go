// Package telemetry stores the lockers' samples (lockers/{id}/telemetry)
// durably before their PUBACK, keeps per-minute and per-hour rollups of every
// metric, drops old data by whole time partitions, and answers time-series
// queries for the API and dashboard.
//
//   - ingest.go: Ingest, the group-commit writer (Submit → queue → COPY →
//     INSERT … ON CONFLICT DO NOTHING → commit → Done), latest values;
//   - partitions.go: daily/monthly partitions created ahead, dropped after
//     their retention, and the window of timestamps a sample may have;
//   - rollup.go: the roller, which recomputes the rollups of the minutes and
//     hours that samples touched;
//   - query.go: Store, the read side (Series, Metrics).
package telemetry

import (
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the package's schema.
func Migrations() pg.Migrations { return pg.Embedded("telemetry", migrationsFS, "migrations") }

// Errors of the telemetry ingest and store.
var (
	// ErrOverloaded: the ingest queue is full, or the hub is stopping; the
	// sample is not taken (the broker withholds its PUBACK and the locker
	// sends it again later).
	ErrOverloaded = errors.New("telemetry ingest cannot take the sample now")
	// ErrBadQuery: a series query the store refuses (range, step, metric name).
	ErrBadQuery = errors.New("bad telemetry query")
)

// Unknown-metric policies (Config.UnknownMetrics).
const (
	UnknownKeep   = "keep"   // store metrics outside Config.KnownMetrics too
	UnknownRefuse = "refuse" // refuse a sample naming one as invalid (the locker drops it)
)

// DefaultKnownMetrics are the measurements docs/protocol.md names.
var DefaultKnownMetrics = []string{"temp_c", "humidity_pct", "battery_v", "mains", "rssi_dbm", "lock_ops", "lock_faults", "door_cycles"}

// Retention says how long each kind of data is kept; older partitions are
// dropped whole, so data lives up to one partition (a day, or a month for
// hourly rollups) longer.
//
// Defaults: raw samples 30 days, 1-minute rollups 30 days, 1-hour rollups
// 400 days (the long range). At the recommended 60-s telemetry a 1-minute
// rollup holds as many buckets as there are raw samples, so keeping it
// longer than raw buys little: charts over a longer range read the 1-hour
// rollups anyway. Raise Rollup1m for lockers that report every few seconds,
// where a minute's rollup stands for many samples.
type Retention struct {
	Raw      time.Duration // 30 days
	Rollup1m time.Duration // 30 days; at least Raw
	Rollup1h time.Duration // 400 days; at least Rollup1m
	Ahead    time.Duration // partitions created ahead of now: 3 days
}

// DefaultRetention is what zero Retention fields take.
var DefaultRetention = Retention{Raw: 30 * 24 * time.Hour, Rollup1m: 30 * 24 * time.Hour, Rollup1h: 400 * 24 * time.Hour, Ahead: 3 * 24 * time.Hour}

func (r *Retention) defaults() {
	setDefault(&r.Raw, DefaultRetention.Raw)
	setDefault(&r.Rollup1m, DefaultRetention.Rollup1m)
	setDefault(&r.Rollup1h, DefaultRetention.Rollup1h)
	setDefault(&r.Ahead, DefaultRetention.Ahead)
}

// Config of the ingest; zero values take the defaults noted.
type Config struct {
	KnownMetrics   []string // DefaultKnownMetrics
	UnknownMetrics string   // UnknownKeep (default) or UnknownRefuse
	Retention      Retention

	QueueSamples int           // samples waiting for a writer: 100,000
	QueueBytes   int64         // payload bytes waiting for a writer: 64 MiB
	Writers      int           // parallel writers, each with its own connection: 2
	BatchMax     int           // samples per transaction: 4,000
	BatchWait    time.Duration // how long a batch waits to fill beyond what is queued: 0, none (what arrives during a commit forms the next batch)
	MaxFuture    time.Duration // a ts further ahead of the hub's clock is refused: 5 min

	CommitTimeout time.Duration // one write attempt: 10 s
	Grace         time.Duration // after Run's ctx ends, to write what is queued: 5 s

	MaintainEvery time.Duration // partition maintenance: 1 h (retried every minute after a failure); < 0: never
	RollEvery     time.Duration // the roller: 10 s; < 0: never (tests call RollUp)
	RollDelay     time.Duration // a minute is rolled up this long after its end: 5 s
}

func (c *Config) defaults() error {
	if c.KnownMetrics == nil {
		c.KnownMetrics = DefaultKnownMetrics
	}
	switch c.UnknownMetrics {
	case "":
		c.UnknownMetrics = UnknownKeep
	case UnknownKeep, UnknownRefuse:
	default:
		return fmt.Errorf("telemetry: unknown-metric policy %q (want %s or %s)", c.UnknownMetrics, UnknownKeep, UnknownRefuse)
	}
	r := &c.Retention
	r.defaults()
	if r.Raw < 24*time.Hour || r.Ahead < time.Hour {
		return fmt.Errorf("telemetry: raw retention %v must be at least a day and partitions ahead %v at least an hour", r.Raw, r.Ahead)
	}
	// Rollups are computed from raw samples: a rollup partition dropped
	// before the raw one under it would leave the roller nowhere to write.
	if r.Rollup1m < r.Raw || r.Rollup1h < r.Rollup1m {
		return fmt.Errorf("telemetry: retention must not shrink from raw (%v) to 1-minute (%v) to 1-hour rollups (%v)", r.Raw, r.Rollup1m, r.Rollup1h)
	}
	for _, name := range c.KnownMetrics {
		if !protocol.ValidMetricName(name) {
			return fmt.Errorf("telemetry: known metric %q is not a valid name", name)
		}
	}
	setDefault(&c.QueueSamples, 100_000)
	setDefault(&c.QueueBytes, 64<<20)
	setDefault(&c.Writers, 2)
	setDefault(&c.BatchMax, 4000)
	setDefault(&c.MaxFuture, 5*time.Minute)
	setDefault(&c.CommitTimeout, 10*time.Second)
	setDefault(&c.Grace, 5*time.Second)
	setDefault(&c.MaintainEvery, time.Hour)
	setDefault(&c.RollEvery, 10*time.Second)
	setDefault(&c.RollDelay, 5*time.Second)
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Sample is one stored telemetry sample.
type Sample struct {
	TS       time.Time // the locker's clock
	Boot     uint32
	Seq      uint64
	Received time.Time // the hub's clock
	M        map[string]float64
}

// newer reports whether s was sent after o by the same locker: by (boot, seq),
// which neither a reboot nor a wrong clock can confuse.
func (s Sample) newer(o Sample) bool {
	if s.Boot != o.Boot {
		return s.Boot > o.Boot
	}
	return s.Seq > o.Seq
}

// LatestValue is one locker's latest value of one metric.
type LatestValue struct {
	LockerID string
	TS       time.Time
	Value    float64
}
