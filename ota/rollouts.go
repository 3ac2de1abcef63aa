package ota

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Updater keeps artifacts and rollouts and runs the rollout engine.
type Updater struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     *slog.Logger
	m       *metrics
	key     ed25519.PrivateKey
	devices Devices
	fleet   Fleet

	downloads chan struct{} // download slots
	inbox     chan inbound  // statuses and RPC answers, for the engine
	wake      chan struct{}
	lastGate  map[int64]time.Time // rollout → when the health gate last looked (engine goroutine only)
	urlMu     sync.Mutex          // guards cfg.DeviceURL
}

// InboxSize bounds the statuses and answers waiting for the engine; when it
// is full a report is dropped and counted (the step timeouts recover).
const InboxSize = 16384

// New builds the updater: it loads (or makes) the signing key in
// cfg.DataDir. Wire Status and Response to the broker, then Run it.
func New(pool *pgxpool.Pool, devices Devices, fleet Fleet, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Updater, error) {
	cfg.defaults()
	key, err := LoadOrCreateSigningKey(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("OTA signing key: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Updater{pool: pool, cfg: cfg, log: log, m: newMetrics(reg), key: key, devices: devices, fleet: fleet,
		downloads: make(chan struct{}, cfg.MaxDownloads), inbox: make(chan inbound, InboxSize),
		wake: make(chan struct{}, 1), lastGate: map[int64]time.Time{}}, nil
}

func (u *Updater) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Rollout is a staged update of a set of lockers to one artifact.
type Rollout struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	ArtifactID  int64      `json:"artifact_id"`
	Version     string     `json:"version"`
	State       string     `json:"state"`
	Targets     Targets    `json:"targets"`
	Policy      Policy     `json:"policy"`
	CurrentWave int        `json:"current_wave"`
	Reason      string     `json:"reason,omitempty"`
	RollbackOf  *int64     `json:"rollback_of,omitempty"`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

const rolloutCols = `r.id, r.name, r.artifact_id, a.version, r.state, r.targets, r.policy, r.current_wave, r.reason, r.rollback_of,
	r.created_by, r.created_at, r.started_at, r.finished_at, r.updated_at`

const rolloutFrom = ` FROM ota_rollouts r JOIN ota_artifacts a ON a.id = r.artifact_id`

func scanRollout(row pgx.Row) (Rollout, error) {
	var r Rollout
	var targets, policy []byte
	err := row.Scan(&r.ID, &r.Name, &r.ArtifactID, &r.Version, &r.State, &targets, &policy, &r.CurrentWave, &r.Reason, &r.RollbackOf,
		&r.CreatedBy, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.UpdatedAt)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(targets, &r.Targets); err != nil {
		return r, err
	}
	if err := json.Unmarshal(policy, &r.Policy); err != nil {
		return r, err
	}
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	for _, t := range []**time.Time{&r.StartedAt, &r.FinishedAt} {
		if *t != nil {
			v := (*t).UTC()
			*t = &v
		}
	}
	return r, nil
}

// NewRollout is what it takes to create a rollout (a draft until started).
type NewRollout struct {
	Name       string  `json:"name"`
	ArtifactID int64   `json:"artifact_id"`
	Version    string  `json:"version"` // instead of artifact_id
	Targets    Targets `json:"targets"`
	Policy     Policy  `json:"policy"`
	Start      bool    `json:"start"` // start at once
}

func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, s := range strings.Split(s, ",") {
			if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Create records a draft rollout (or starts it with n.Start).
func (u *Updater) Create(ctx context.Context, n NewRollout) (Rollout, error) {
	return u.create(ctx, n, nil)
}

func (u *Updater) create(ctx context.Context, n NewRollout, rollbackOf *int64) (Rollout, error) {
	if len(n.Name) > 200 {
		return Rollout{}, invalid("name is longer than 200 characters")
	}
	if err := n.Policy.normalize(); err != nil {
		return Rollout{}, err
	}
	t := &n.Targets
	t.Segments, t.Models, t.Versions, t.Lockers = cleanList(t.Segments), cleanList(t.Models), cleanList(t.Versions), cleanList(t.Lockers)
	if len(t.Lockers) > 20000 {
		return Rollout{}, invalid("at most 20000 explicit lockers")
	}
	var a Artifact
	var err error
	switch {
	case n.ArtifactID > 0:
		a, err = u.Artifact(ctx, n.ArtifactID)
	case n.Version != "":
		a, err = u.artifactByVersion(ctx, n.Version)
	default:
		return Rollout{}, invalid("give artifact_id or version")
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Rollout{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return Rollout{}, err
	}
	if n.Name == "" {
		n.Name = "update to " + a.Version
	}
	targets, _ := json.Marshal(n.Targets)
	policy, _ := json.Marshal(n.Policy)
	var r Rollout
	err = pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO ota_rollouts (name, artifact_id, state, targets, policy, rollback_of, created_by)
			VALUES ($1, $2, 'draft', $3, $4, $5, $6) RETURNING id`, n.Name, a.ID, targets, policy, rollbackOf, audit.ActorFrom(ctx).Name).Scan(&id)
		if err != nil {
			return err
		}
		if r, err = getRollout(ctx, tx, id, false); err != nil {
			return err
		}
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: EntityRollout, ObjectID: fmt.Sprint(id), After: r}); err != nil {
			return err
		}
		if n.Start {
			if err := u.startTx(ctx, tx, id); err != nil {
				return err
			}
			r, err = getRollout(ctx, tx, id, false)
		}
		return err
	})
	if err != nil {
		return Rollout{}, err
	}
	u.poke()
	return r, nil
}

func getRollout(ctx context.Context, q pgx.Tx, id int64, lock bool) (Rollout, error) {
	sql := `SELECT ` + rolloutCols + rolloutFrom + ` WHERE r.id = $1`
	if lock {
		sql += ` FOR UPDATE OF r`
	}
	r, err := scanRollout(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("%w: rollout %d", ErrNotFound, id)
	}
	return r, err
}

// Rollouts lists rollouts, newest first.
func (u *Updater) Rollouts(ctx context.Context, limit int) ([]Rollout, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := u.pool.Query(ctx, `SELECT `+rolloutCols+rolloutFrom+` ORDER BY r.id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rollout, error) { return scanRollout(r) })
	if out == nil {
		out = []Rollout{}
	}
	return out, err
}

// Start turns a draft into a running rollout: it picks the targets, makes
// the waves and queues the canary.
func (u *Updater) Start(ctx context.Context, id int64) (Rollout, error) {
	var r Rollout
	err := pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		if err := u.startTx(ctx, tx, id); err != nil {
			return err
		}
		var err error
		r, err = getRollout(ctx, tx, id, false)
		return err
	})
	if err != nil {
		return Rollout{}, err
	}
	u.poke()
	return r, nil
}

func (u *Updater) startTx(ctx context.Context, tx pgx.Tx, id int64) error {
	r, err := getRollout(ctx, tx, id, true)
	if err != nil {
		return err
	}
	if r.State != RolloutDraft {
		return fmt.Errorf("%w: rollout %d is %s, not a draft", ErrConflict, id, r.State)
	}
	a, err := u.Artifact(ctx, r.ArtifactID)
	if err != nil {
		return err
	}
	all, err := u.fleet.Lockers(ctx)
	if err != nil {
		return fmt.Errorf("list lockers: %w", err)
	}
	// Lockers updating in another rollout are left out.
	rows, err := tx.Query(ctx, `SELECT l.locker_id FROM ota_lockers l JOIN ota_rollouts r ON r.id = l.rollout_id
		WHERE r.state IN ('running', 'paused') AND l.state NOT IN ('installed', 'failed', 'cancelled')`)
	if err != nil {
		return err
	}
	busy, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	busySet := map[string]bool{}
	for _, b := range busy {
		busySet[b] = true
	}
	t := r.Targets
	type target struct{ id, version string }
	var picked []target
	for _, l := range all {
		fw := u.fleet.Firmware(l.ID)
		if fw == "" {
			fw = l.Firmware
		}
		switch {
		case len(t.Lockers) > 0 && !slices.Contains(t.Lockers, l.ID),
			len(t.Models) > 0 && !slices.Contains(t.Models, l.Model),
			len(t.Versions) > 0 && !slices.Contains(t.Versions, fw),
			len(t.Segments) > 0 && !slices.ContainsFunc(l.Segments, func(s string) bool { return slices.Contains(t.Segments, s) }),
			len(a.Models) > 0 && !slices.Contains(a.Models, l.Model),
			fw == a.Version, busySet[l.ID]:
			continue
		}
		picked = append(picked, target{l.ID, fw})
	}
	if len(picked) == 0 {
		return invalid("no locker matches the targets (already on %s, of another model, or updating in another rollout)", a.Version)
	}
	if r.Policy.Order == "id" {
		sort.Slice(picked, func(i, j int) bool { return picked[i].id < picked[j].id })
	} else {
		rand.Shuffle(len(picked), func(i, j int) { picked[i], picked[j] = picked[j], picked[i] })
	}
	sizes := r.Policy.waveSizes(len(picked))
	ids := make([]string, len(picked))
	versions := make([]string, len(picked))
	waves := make([]int32, len(picked))
	i := 0
	for n, size := range sizes {
		for range size {
			ids[i], versions[i], waves[i] = picked[i].id, picked[i].version, int32(n+1)
			i++
		}
		state := WavePending
		if n == 0 {
			state = WaveRunning
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ota_waves (rollout_id, n, size, state, started_at)
			VALUES ($1, $2, $3, $4, CASE WHEN $4 = 'running' THEN now() END)`, id, n+1, size, state); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ota_lockers (rollout_id, locker_id, wave, state, previous_version)
		SELECT $1, l, w, CASE WHEN w = 1 THEN 'queued' ELSE 'pending' END, v
		FROM unnest($2::text[], $3::int[], $4::text[]) AS t (l, w, v)`, id, ids, waves, versions); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE ota_rollouts SET state = 'running', current_wave = 1, started_at = now(), updated_at = now(), reason = ''
		WHERE id = $1`, id); err != nil {
		return err
	}
	u.m.transitions.WithLabelValues(StateQueued).Add(float64(sizes[0]))
	return audit.Record(ctx, tx, audit.Entry{Action: "start", ObjectType: EntityRollout, ObjectID: fmt.Sprint(id),
		After: map[string]any{"lockers": len(picked), "waves": sizes}})
}

// Pause stops a running rollout from starting updates; updates under way
// finish. Resume continues it (a soaking wave soaks again).
func (u *Updater) Pause(ctx context.Context, id int64, reason string) (Rollout, error) {
	if reason == "" {
		reason = "paused by " + audit.ActorFrom(ctx).Name
	}
	return u.transition(ctx, id, "pause", []string{RolloutRunning}, RolloutPaused, reason, nil)
}

// Resume continues a paused rollout.
func (u *Updater) Resume(ctx context.Context, id int64) (Rollout, error) {
	return u.transition(ctx, id, "resume", []string{RolloutPaused}, RolloutRunning, "", func(tx pgx.Tx, r Rollout) error {
		if _, err := tx.Exec(ctx, `UPDATE ota_waves SET soak_until = now() + $2 * interval '1 microsecond'
			WHERE rollout_id = $1 AND state = 'soaking'`, id, time.Duration(r.Policy.Soak).Microseconds()); err != nil {
			return err
		}
		// Resuming accepts the current wave as it is: its failure and
		// success thresholds no longer pause the rollout (the abort
		// threshold still applies), and it moves on once its lockers are done.
		_, err := tx.Exec(ctx, `UPDATE ota_waves SET accepted = true WHERE rollout_id = $1 AND n = $2`, id, r.CurrentWave)
		return err
	})
}

// Cancel ends a rollout: lockers not yet updating are cancelled (those under
// way may still finish installing on their own).
func (u *Updater) Cancel(ctx context.Context, id int64) (Rollout, error) {
	return u.transition(ctx, id, "cancel", []string{RolloutDraft, RolloutRunning, RolloutPaused}, RolloutCancelled, "cancelled by "+audit.ActorFrom(ctx).Name,
		func(tx pgx.Tx, r Rollout) error { return cancelLockers(ctx, tx, id, "cancelled") })
}

func cancelLockers(ctx context.Context, tx pgx.Tx, id int64, reason string) error {
	_, err := tx.Exec(ctx, `UPDATE ota_lockers SET state = 'cancelled', reason = $2, state_at = now(), deadline = NULL
		WHERE rollout_id = $1 AND state NOT IN ('installed', 'failed', 'cancelled')`, id, reason)
	return err
}

func (u *Updater) transition(ctx context.Context, id int64, action string, from []string, to, reason string, also func(pgx.Tx, Rollout) error) (Rollout, error) {
	var r Rollout
	err := pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		before, err := getRollout(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if !slices.Contains(from, before.State) {
			return fmt.Errorf("%w: rollout %d is %s; %s needs %s", ErrConflict, id, before.State, action, strings.Join(from, " or "))
		}
		if _, err := tx.Exec(ctx, `UPDATE ota_rollouts SET state = $2, reason = $3, updated_at = now(),
			finished_at = CASE WHEN $2 IN ('completed', 'cancelled', 'aborted') THEN now() END WHERE id = $1`, id, to, reason); err != nil {
			return err
		}
		if also != nil {
			if err := also(tx, before); err != nil {
				return err
			}
		}
		if r, err = getRollout(ctx, tx, id, false); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: action, ObjectType: EntityRollout, ObjectID: fmt.Sprint(id),
			Before: map[string]string{"state": before.State}, After: map[string]string{"state": r.State, "reason": reason}})
	})
	if err != nil {
		return Rollout{}, err
	}
	u.log.Info("rollout "+action, "rollout", id, "state", r.State, "reason", reason)
	u.poke()
	return r, nil
}

// Approve lets a rollout waiting for approval after a wave start the next.
func (u *Updater) Approve(ctx context.Context, id int64) (Rollout, error) {
	var r Rollout
	err := pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		before, err := getRollout(ctx, tx, id, true)
		if err != nil {
			return err
		}
		var ws string
		err = tx.QueryRow(ctx, `SELECT state FROM ota_waves WHERE rollout_id = $1 AND n = $2`, id, before.CurrentWave).Scan(&ws)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if before.State != RolloutRunning || ws != WaveApproval {
			return fmt.Errorf("%w: rollout %d is not waiting for approval (rollout %s, wave %d %s)", ErrConflict, id, before.State, before.CurrentWave, ws)
		}
		if err := u.nextWave(ctx, tx, id, before.CurrentWave); err != nil {
			return err
		}
		if r, err = getRollout(ctx, tx, id, false); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "approve", ObjectType: EntityRollout, ObjectID: fmt.Sprint(id),
			Before: map[string]int{"wave": before.CurrentWave}, After: map[string]int{"wave": r.CurrentWave}})
	})
	if err != nil {
		return Rollout{}, err
	}
	u.poke()
	return r, nil
}

// nextWave ends wave n and starts wave n+1 (its lockers are queued).
func (u *Updater) nextWave(ctx context.Context, tx pgx.Tx, id int64, n int) error {
	if _, err := tx.Exec(ctx, `UPDATE ota_waves SET state = 'done', finished_at = now() WHERE rollout_id = $1 AND n = $2`, id, n); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE ota_waves SET state = 'running', started_at = now() WHERE rollout_id = $1 AND n = $2`, id, n+1)
	if err != nil || tag.RowsAffected() == 0 {
		return err
	}
	tag, err = tx.Exec(ctx, `UPDATE ota_lockers SET state = 'queued', state_at = now() WHERE rollout_id = $1 AND wave = $2 AND state = 'pending'`, id, n+1)
	if err != nil {
		return err
	}
	u.m.transitions.WithLabelValues(StateQueued).Add(float64(tag.RowsAffected()))
	_, err = tx.Exec(ctx, `UPDATE ota_rollouts SET current_wave = $2, updated_at = now() WHERE id = $1`, id, n+1)
	return err
}

// Rollback makes and starts a rollout of the previous version to the
// lockers that rollout id updated (they must all have come from one
// version, of which an artifact exists). A running or paused rollout id is
// cancelled first.
func (u *Updater) Rollback(ctx context.Context, id int64) (Rollout, error) {
	src, err := u.Get(ctx, id)
	if err != nil {
		return Rollout{}, err
	}
	rows, err := u.pool.Query(ctx, `SELECT locker_id, previous_version FROM ota_lockers WHERE rollout_id = $1 AND state = 'installed' ORDER BY locker_id`, id)
	if err != nil {
		return Rollout{}, err
	}
	var lockers []string
	versions := map[string]int{}
	var l, v string
	if _, err := pgx.ForEachRow(rows, []any{&l, &v}, func() error { lockers = append(lockers, l); versions[v]++; return nil }); err != nil {
		return Rollout{}, err
	}
	if len(lockers) == 0 {
		return Rollout{}, fmt.Errorf("%w: rollout %d updated no locker; nothing to roll back", ErrConflict, id)
	}
	if len(versions) != 1 {
		var vs []string
		for v, n := range versions {
			vs = append(vs, fmt.Sprintf("%q (%d)", v, n))
		}
		sort.Strings(vs)
		return Rollout{}, fmt.Errorf("%w: the updated lockers came from several versions (%s): roll back with one rollout per version", ErrConflict, strings.Join(vs, ", "))
	}
	var prev string
	for v = range versions {
		prev = v
	}
	if prev == "" {
		return Rollout{}, fmt.Errorf("%w: the previous version of the updated lockers is unknown", ErrConflict)
	}
	if src.State == RolloutRunning || src.State == RolloutPaused {
		if _, err := u.Cancel(ctx, id); err != nil && !errors.Is(err, ErrConflict) {
			return Rollout{}, err
		}
	}
	p := src.Policy
	p.Approval = false
	r, err := u.create(ctx, NewRollout{Name: fmt.Sprintf("rollback of rollout %d to %s", id, prev), Version: prev,
		Targets: Targets{Lockers: lockers}, Policy: p, Start: true}, &id)
	if err != nil {
		return Rollout{}, err
	}
	return r, nil
}

// Get returns one rollout.
func (u *Updater) Get(ctx context.Context, id int64) (Rollout, error) {
	r, err := scanRollout(u.pool.QueryRow(ctx, `SELECT `+rolloutCols+rolloutFrom+` WHERE r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("%w: rollout %d", ErrNotFound, id)
	}
	return r, err
}

// Wave is one wave of a rollout with its lockers counted by state.
type Wave struct {
	N          int             `json:"n"`
	Size       int             `json:"size"`
	State      string          `json:"state"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	SoakUntil  *time.Time      `json:"soak_until,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Counts     map[string]int  `json:"counts"`
	Health     json.RawMessage `json:"health,omitempty"`
}

// Status is a rollout with its waves, the lockers counted by state and the
// failures counted by reason.
type Status struct {
	Rollout
	Total    int            `json:"total"`
	Counts   map[string]int `json:"counts"`
	Waves    []Wave         `json:"waves"`
	Failures map[string]int `json:"failures"` // final failures by reason
}

// Status returns the progress of a rollout.
func (u *Updater) Status(ctx context.Context, id int64) (Status, error) {
	r, err := u.Get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	s := Status{Rollout: r, Counts: map[string]int{}, Waves: []Wave{}, Failures: map[string]int{}}
	rows, err := u.pool.Query(ctx, `SELECT n, size, state, started_at, soak_until, finished_at, health FROM ota_waves WHERE rollout_id = $1 ORDER BY n`, id)
	if err != nil {
		return Status{}, err
	}
	s.Waves, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Wave, error) {
		w := Wave{Counts: map[string]int{}}
		var health []byte
		err := row.Scan(&w.N, &w.Size, &w.State, &w.StartedAt, &w.SoakUntil, &w.FinishedAt, &health)
		if len(health) > 0 {
			w.Health = health
		}
		return w, err
	})
	if err != nil {
		return Status{}, err
	}
	if s.Waves == nil {
		s.Waves = []Wave{}
	}
	var wave, n int
	var state, reason string
	rows, err = u.pool.Query(ctx, `SELECT wave, state, count(*) FROM ota_lockers WHERE rollout_id = $1 GROUP BY wave, state`, id)
	if err != nil {
		return Status{}, err
	}
	if _, err := pgx.ForEachRow(rows, []any{&wave, &state, &n}, func() error {
		s.Counts[state] += n
		s.Total += n
		if wave >= 1 && wave <= len(s.Waves) {
			s.Waves[wave-1].Counts[state] += n
		}
		return nil
	}); err != nil {
		return Status{}, err
	}
	rows, err = u.pool.Query(ctx, `SELECT reason, count(*) FROM ota_lockers WHERE rollout_id = $1 AND state = 'failed' GROUP BY reason`, id)
	if err != nil {
		return Status{}, err
	}
	_, err = pgx.ForEachRow(rows, []any{&reason, &n}, func() error { s.Failures[reason] = n; return nil })
	return s, err
}

// LockerUpdate is one locker's update state in a rollout.
type LockerUpdate struct {
	LockerID        string     `json:"locker_id"`
	Wave            int        `json:"wave"`
	State           string     `json:"state"`
	Reason          string     `json:"reason,omitempty"`
	Attempts        int        `json:"attempts"`
	PreviousVersion string     `json:"previous_version"`
	Bytes           int64      `json:"bytes"`
	StateAt         time.Time  `json:"state_at"`
	Deadline        *time.Time `json:"deadline,omitempty"`
	InstalledAt     *time.Time `json:"installed_at,omitempty"`
}

// LockerFilter selects the lockers of a rollout; zero values match all.
type LockerFilter struct {
	State string
	Wave  int
	Limit int // 1000 by default, at most 20000
}

// Lockers lists the lockers of a rollout in wave and ID order.
func (u *Updater) Lockers(ctx context.Context, id int64, f LockerFilter) ([]LockerUpdate, error) {
	if _, err := u.Get(ctx, id); err != nil {
		return nil, err
	}
	if f.State != "" && !slices.Contains(States, f.State) {
		return nil, invalid("state %q (want one of %s)", f.State, strings.Join(States, ", "))
	}
	if f.Limit <= 0 || f.Limit > 20000 {
		f.Limit = 1000
	}
	rows, err := u.pool.Query(ctx, `SELECT locker_id, wave, state, reason, attempts, previous_version, bytes, state_at, deadline, installed_at
		FROM ota_lockers WHERE rollout_id = $1 AND ($2 = '' OR state = $2) AND ($3 = 0 OR wave = $3)
		ORDER BY wave, locker_id LIMIT $4`, id, f.State, f.Wave, f.Limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LockerUpdate, error) {
		var l LockerUpdate
		err := row.Scan(&l.LockerID, &l.Wave, &l.State, &l.Reason, &l.Attempts, &l.PreviousVersion, &l.Bytes, &l.StateAt, &l.Deadline, &l.InstalledAt)
		l.StateAt = l.StateAt.UTC()
		return l, err
	})
	if out == nil {
		out = []LockerUpdate{}
	}
	return out, err
}

// SetDeviceURL sets the base of the download URLs (the device listener as
// lockers reach it); it may change while the engine runs.
func (u *Updater) SetDeviceURL(url string) {
	u.urlMu.Lock()
	defer u.urlMu.Unlock()
	u.cfg.DeviceURL = url
}

func (u *Updater) deviceURL() string {
	u.urlMu.Lock()
	defer u.urlMu.Unlock()
	return u.cfg.DeviceURL
}
