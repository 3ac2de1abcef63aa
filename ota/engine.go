package ota

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// inbound is a locker's status report or RPC answer, for the engine.
type inbound struct {
	lockerID string
	status   *protocol.OTAStatus
	res      *protocol.Response
	done     func(error) // a report: called once it is taken (committed), or with the error that kept it
}

// ErrBusy: the engine's queue of reports is full; the report was not taken
// (withhold its PUBACK: the locker sends it again).
var ErrBusy = errors.New("the rollout engine is busy")

// requestPrefix starts the id of every ota.install request.
const requestPrefix = "ota-"

// Report takes a locker's ota/status payload (on the broker's read
// goroutine; it does not block). An invalid payload is refused with an error
// wrapping protocol.ErrInvalid and counted. A valid one is queued for the
// engine, which calls done (when not nil) once the report is taken and
// committed, so its PUBACK follows its effect and no report a locker sent is
// lost; when the queue is full it is refused with ErrBusy and counted
// ("dropped"): withhold the PUBACK, the locker sends it again. A report the
// engine takes without effect (unknown rollout, stale, …) is counted and
// acknowledged like the others.
func (u *Updater) Report(lockerID string, payload []byte, done func(error)) error {
	s, err := protocol.DecodeOTAStatus(payload)
	if err != nil {
		u.m.rejected.WithLabelValues("invalid").Inc()
		return err
	}
	select {
	case u.inbox <- inbound{lockerID: lockerID, status: &s, done: done}:
		return nil
	default:
		u.m.rejected.WithLabelValues("dropped").Inc()
		return ErrBusy
	}
}

// Response is a broker.OnResponse observer: the answers to ota.install.
func (u *Updater) Response(lockerID string, res protocol.Response) {
	if !strings.HasPrefix(res.ID, requestPrefix) {
		return
	}
	select {
	case u.inbox <- inbound{lockerID: lockerID, res: &res}:
	default:
		u.m.rejected.WithLabelValues("dropped").Inc()
	}
}

// Run is the engine: every Tick (and at once after an action) it moves every
// running rollout on; in between it takes the lockers' reports. It returns
// when ctx ends.
func (u *Updater) Run(ctx context.Context) {
	t := time.NewTicker(u.cfg.Tick)
	defer t.Stop()
	u.tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-u.inbox:
			u.handleBatch(ctx, in)
		case <-t.C:
			u.tick(ctx)
		case <-u.wake:
			u.tick(ctx)
		}
	}
}

// drain takes the reports waiting in the inbox (at most its size).
func (u *Updater) drain(ctx context.Context) {
	for range InboxSize / batchSize {
		select {
		case in := <-u.inbox:
			u.handleBatch(ctx, in)
		default:
			return
		}
	}
}

// batchSize bounds the reports taken in one transaction.
const batchSize = 256

// querier is the pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// handleBatch takes first and what else waits (up to batchSize) in one
// transaction: one commit for many reports. When the transaction fails the
// reports are taken one by one.
func (u *Updater) handleBatch(ctx context.Context, first inbound) {
	batch := []inbound{first}
more:
	for len(batch) < batchSize {
		select {
		case in := <-u.inbox:
			batch = append(batch, in)
		default:
			break more
		}
	}
	err := pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		for _, in := range batch {
			if err := u.handleOne(ctx, tx, in); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, in := range batch {
			in.settle(nil)
		}
		return
	}
	if ctx.Err() != nil {
		for _, in := range batch {
			in.settle(ctx.Err())
		}
		return
	}
	u.log.Warn("ota: a batch of reports failed; taking them one by one", "reports", len(batch), "error", err)
	for _, in := range batch {
		err := u.handleOne(ctx, u.pool, in)
		if err != nil && ctx.Err() == nil {
			u.log.Error("ota: taking a locker's report failed", "locker", in.lockerID, "error", err)
		}
		in.settle(err)
	}
}

// settle tells the broker what became of a report (nil: taken).
func (in inbound) settle(err error) {
	if in.done != nil {
		in.done(err)
	}
}

// row is one locker of an active rollout as the engine reads it.
type row struct {
	rollout              int64
	locker               string
	wave                 int
	state, reason        string
	attempts             int
	previous, requestID  string
	lastBoot, lastSeq    int64
	deadline             *time.Time
	rolloutState, target string
	artifact             int64
}

func (u *Updater) handleOne(ctx context.Context, db querier, in inbound) error {
	if in.status != nil {
		return u.takeStatus(ctx, db, in.lockerID, *in.status)
	}
	return u.takeResponse(ctx, db, in.lockerID, *in.res)
}

func (u *Updater) lockerRow(ctx context.Context, db querier, rollout int64, locker string) (row, error) {
	var r row
	err := db.QueryRow(ctx, `SELECT l.rollout_id, l.locker_id, l.wave, l.state, l.reason, l.attempts, l.previous_version, l.request_id,
			l.last_boot, l.last_seq, l.deadline, r.state, a.version, a.id
		FROM ota_lockers l JOIN ota_rollouts r ON r.id = l.rollout_id JOIN ota_artifacts a ON a.id = r.artifact_id
		WHERE l.rollout_id = $1 AND l.locker_id = $2`, rollout, locker).Scan(
		&r.rollout, &r.locker, &r.wave, &r.state, &r.reason, &r.attempts, &r.previous, &r.requestID,
		&r.lastBoot, &r.lastSeq, &r.deadline, &r.rolloutState, &r.target, &r.artifact)
	return r, err
}

func (u *Updater) reject(locker, reason string, s protocol.OTAStatus, current string) {
	u.m.rejected.WithLabelValues(reason).Inc()
	level := slog.LevelWarn
	if reason == "stale" { // a report republished after a reconnect
		level = slog.LevelDebug
	}
	u.log.Log(context.Background(), level, "ota: status not taken", "locker", locker, "reason", reason, "rollout", s.Rollout, "step", s.Step, "version", s.Version, "state", current)
}

// takeStatus applies one ota/status report: known rollout and version, in
// (boot, seq) order, a step forward from the locker's current one.
func (u *Updater) takeStatus(ctx context.Context, db querier, locker string, s protocol.OTAStatus) error {
	r, err := u.lockerRow(ctx, db, s.Rollout, locker)
	if errors.Is(err, pgx.ErrNoRows) {
		u.reject(locker, "unknown_rollout", s, "")
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case r.rolloutState != RolloutRunning && r.rolloutState != RolloutPaused:
		u.reject(locker, "unknown_rollout", s, r.state)
		return nil
	case s.Version != r.target:
		u.reject(locker, "unknown_version", s, r.state)
		return nil
	case int64(s.Boot) < r.lastBoot || (int64(s.Boot) == r.lastBoot && int64(s.Seq) <= r.lastSeq):
		u.reject(locker, "stale", s, r.state)
		return nil
	}
	if _, err := db.Exec(ctx, `UPDATE ota_lockers SET last_boot = $3, last_seq = $4 WHERE rollout_id = $1 AND locker_id = $2`,
		r.rollout, locker, int64(s.Boot), int64(s.Seq)); err != nil {
		return err
	}
	switch {
	case s.Step == protocol.OTAFailed:
		if !inProgress(r.state) {
			u.reject(locker, "out_of_order", s, r.state)
			return nil
		}
		return u.failAttempt(ctx, db, r, s.Reason)
	case s.Step == protocol.OTAInstalled:
		switch {
		case r.state == StateInstalled:
			return nil // a repeat
		case stepRank(r.state) >= stepRank(StateDownloaded) && inProgress(r.state):
			if u.fleet.Firmware(locker) == r.target {
				return u.setState(ctx, db, r, StateInstalled, "", 0)
			}
			// Confirmed once the locker's state reports the version (tick).
			if r.state != StateInstalling {
				return u.setState(ctx, db, r, StateInstalling, "", 0)
			}
			return nil
		case inProgress(r.state):
			u.reject(locker, "installed_without_download", s, r.state)
			return u.failAttempt(ctx, db, r, "installed_without_download: reported installed before downloading")
		}
		u.reject(locker, "out_of_order", s, r.state)
		return nil
	}
	if !inProgress(r.state) || stepRank(s.Step) < stepRank(r.state) {
		u.reject(locker, "out_of_order", s, r.state)
		return nil
	}
	if s.Step == r.state {
		if s.Step == StateDownloading { // progress: the timeout starts again
			_, err := db.Exec(ctx, `UPDATE ota_lockers SET bytes = $3, deadline = now() + $4 * interval '1 microsecond'
				WHERE rollout_id = $1 AND locker_id = $2`, r.rollout, locker, s.Bytes, u.timeout(StateDownloading).Microseconds())
			return err
		}
		return nil
	}
	return u.setState(ctx, db, r, s.Step, "", s.Bytes)
}

func (u *Updater) takeResponse(ctx context.Context, db querier, locker string, res protocol.Response) error {
	var rollout int64
	err := db.QueryRow(ctx, `SELECT rollout_id FROM ota_lockers WHERE locker_id = $1 AND request_id = $2 AND state = 'notified'`,
		locker, res.ID).Scan(&rollout)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // a late or repeated answer
	}
	if err != nil {
		return err
	}
	if res.Error == nil {
		return nil // accepted: the statuses follow
	}
	r, err := u.lockerRow(ctx, db, rollout, locker)
	if err != nil {
		return err
	}
	return u.failAttempt(ctx, db, r, fmt.Sprintf("refused: %s: %s", res.Error.Code, clip(res.Error.Message, 150)))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// timeout is the limit of a step.
func (u *Updater) timeout(state string) time.Duration {
	switch state {
	case StateNotified:
		return u.cfg.NotifyTimeout
	case StateDownloading:
		return u.cfg.DownloadTimeout
	case StateDownloaded, StateVerified:
		return u.cfg.VerifyTimeout
	case StateInstalling:
		return u.cfg.InstallTimeout
	}
	return 0
}

// setState moves a locker to state (from the state read in r: a concurrent
// change wins).
func (u *Updater) setState(ctx context.Context, db querier, r row, state, reason string, bytes int64) error {
	var deadline *time.Time
	if d := u.timeout(state); d > 0 {
		t := time.Now().Add(d)
		deadline = &t
	}
	tag, err := db.Exec(ctx, `UPDATE ota_lockers SET state = $4, reason = $5, deadline = $6, state_at = now(),
			bytes = GREATEST(bytes, $7), installed_at = CASE WHEN $4 = 'installed' THEN now() END
		WHERE rollout_id = $1 AND locker_id = $2 AND state = $3`, r.rollout, r.locker, r.state, state, reason, deadline, bytes)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 1 {
		u.m.transitions.WithLabelValues(state).Inc()
		if state == StateInstalled || state == StateFailed {
			u.log.Info("ota: locker "+state, "locker", r.locker, "rollout", r.rollout, "version", r.target, "reason", reason)
		}
	}
	return nil
}

// failAttempt ends the locker's current attempt: queued again while its
// retry budget lasts, else failed with reason.
func (u *Updater) failAttempt(ctx context.Context, db querier, r row, reason string) error {
	u.m.failures.WithLabelValues(reasonClass(reason)).Inc()
	if r.attempts <= u.cfg.Retries {
		u.log.Info("ota: attempt failed; retrying", "locker", r.locker, "rollout", r.rollout, "attempt", r.attempts, "state", r.state, "reason", reason)
		return u.setState(ctx, db, r, StateQueued, "retrying after: "+reason, 0)
	}
	return u.setState(ctx, db, r, StateFailed, reason, 0)
}

// activeRollout is a running or paused rollout as the engine reads it.
type activeRollout struct {
	id          int64
	state       string
	policy      Policy
	artifact    Artifact
	currentWave int
}

func (u *Updater) tick(ctx context.Context) {
	// The reports that arrived first are taken first: a locker's steps
	// reached the hub before the state it reports after its reboot, and the
	// tick judges the reported firmware against the steps.
	u.drain(ctx)
	start := time.Now()
	defer func() { u.m.ticks.Observe(time.Since(start).Seconds()) }()
	rows, err := u.pool.Query(ctx, `SELECT id, state, policy, artifact_id, current_wave FROM ota_rollouts WHERE state IN ('running', 'paused') ORDER BY id`)
	if err != nil {
		if ctx.Err() == nil {
			u.log.Error("ota: reading rollouts failed", "error", err)
		}
		return
	}
	var active []activeRollout
	var ar activeRollout
	var policy []byte
	_, err = pgx.ForEachRow(rows, []any{&ar.id, &ar.state, &policy, &ar.artifact.ID, &ar.currentWave}, func() error {
		a := ar
		if err := json.Unmarshal(policy, &a.policy); err != nil {
			return err
		}
		active = append(active, a)
		return nil
	})
	if err != nil {
		u.log.Error("ota: reading rollouts failed", "error", err)
		return
	}
	for id := range u.lastGate {
		if !slices.ContainsFunc(active, func(r activeRollout) bool { return r.id == id }) {
			delete(u.lastGate, id)
		}
	}
	for _, r := range active {
		if ctx.Err() != nil {
			return
		}
		if r.artifact, err = u.Artifact(ctx, r.artifact.ID); err == nil {
			err = u.step(ctx, r)
		}
		if err != nil && ctx.Err() == nil {
			u.log.Error("ota: rollout step failed", "rollout", r.id, "error", err)
		}
	}
	u.gauges(ctx)
}

func (u *Updater) gauges(ctx context.Context) {
	counts := map[string]int{}
	var state string
	var n int
	rows, err := u.pool.Query(ctx, `SELECT l.state, count(*) FROM ota_lockers l JOIN ota_rollouts r ON r.id = l.rollout_id
		WHERE r.state IN ('running', 'paused') GROUP BY l.state`)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error { counts[state] = n; return nil })
	}
	if err != nil {
		return
	}
	for _, s := range States {
		u.m.lockers.WithLabelValues(s).Set(float64(counts[s]))
	}
	rcounts := map[string]int{}
	rows, err = u.pool.Query(ctx, `SELECT state, count(*) FROM ota_rollouts GROUP BY state`)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error { rcounts[state] = n; return nil })
	}
	if err == nil {
		for _, s := range []string{RolloutDraft, RolloutRunning, RolloutPaused, RolloutCompleted, RolloutCancelled, RolloutAborted} {
			u.m.rollouts.WithLabelValues(s).Set(float64(rcounts[s]))
		}
	}
}

// step moves one rollout on: step timeouts, installs confirmed by the
// reported firmware, new updates started (running only), then the waves.
func (u *Updater) step(ctx context.Context, r activeRollout) error {
	rows, err := u.pool.Query(ctx, `SELECT l.rollout_id, l.locker_id, l.wave, l.state, l.reason, l.attempts, l.previous_version, l.request_id,
			l.last_boot, l.last_seq, l.deadline
		FROM ota_lockers l WHERE l.rollout_id = $1 AND l.wave <= $2 AND l.state NOT IN ('pending', 'installed', 'failed', 'cancelled')
		ORDER BY l.wave, l.locker_id`, r.id, r.currentWave)
	if err != nil {
		return err
	}
	lockers, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		x := row{rolloutState: r.state, target: r.artifact.Version, artifact: r.artifact.ID}
		err := cr.Scan(&x.rollout, &x.locker, &x.wave, &x.state, &x.reason, &x.attempts, &x.previous, &x.requestID, &x.lastBoot, &x.lastSeq, &x.deadline)
		return x, err
	})
	if err != nil {
		return err
	}
	now := time.Now()
	inFlight := 0
	var queued []row
	// Timeouts and confirmations of this tick: one transaction.
	err = pg.Tx(ctx, u.pool, func(db pgx.Tx) error {
		for _, l := range lockers {
			if l.state == StateQueued {
				queued = append(queued, l)
				continue
			}
			fw := u.fleet.Firmware(l.locker)
			var err error
			switch {
			case fw == r.artifact.Version && stepRank(l.state) >= stepRank(StateDownloaded):
				err = u.setState(ctx, db, l, StateInstalled, "", 0)
			case fw == r.artifact.Version:
				u.m.rejected.WithLabelValues("installed_without_download").Inc()
				err = u.failAttempt(ctx, db, l, "installed_without_download: reported the new version before downloading it")
			case l.state == StateInstalling && fw != "" && fw != l.previous:
				err = u.failAttempt(ctx, db, l, "wrong_version: reported "+clip(fw, 64)+" after installing")
			case l.deadline != nil && now.After(*l.deadline):
				err = u.failAttempt(ctx, db, l, "timeout: no progress while "+l.state+" within "+u.timeout(l.state).String())
			default:
				inFlight++
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if r.state == RolloutRunning {
		if err := u.notify(ctx, r, queued, inFlight, now); err != nil {
			return err
		}
	}
	return u.waves(ctx, r, now)
}

// notify sends ota.install to the queued lockers whose conditions hold: the
// new states are stored in one statement before the requests go out (so an
// answer never arrives before the hub knows what it answers), and the
// reasons of those that wait in another.
func (u *Updater) notify(ctx context.Context, r activeRollout, queued []row, inFlight int, now time.Time) error {
	var send, sendIDs, waiting, reasons []string
	for _, l := range queued {
		if len(send) >= u.cfg.SendsPerTick || (r.policy.MaxInFlight > 0 && inFlight+len(send) >= r.policy.MaxInFlight) {
			break
		}
		wait := u.waitReason(r.policy, l.locker, now)
		if wait == "" {
			send = append(send, l.locker)
			sendIDs = append(sendIDs, requestPrefix+fmt.Sprint(r.id)+"-"+rand.Text()[:12])
			continue
		}
		if wait != l.reason && !strings.HasPrefix(l.reason, "retrying after:") {
			waiting, reasons = append(waiting, l.locker), append(reasons, wait)
		}
	}
	if len(waiting) > 0 {
		if _, err := u.pool.Exec(ctx, `UPDATE ota_lockers AS l SET reason = t.reason FROM unnest($2::text[], $3::text[]) AS t (locker, reason)
			WHERE l.rollout_id = $1 AND l.locker_id = t.locker AND l.state = 'queued'`, r.id, waiting, reasons); err != nil {
			return err
		}
	}
	if len(send) == 0 {
		return nil
	}
	deadline := now.Add(u.cfg.NotifyTimeout)
	rows, err := u.pool.Query(ctx, `UPDATE ota_lockers AS l SET state = 'notified', reason = '', attempts = l.attempts + 1, request_id = t.rid,
			deadline = $4, state_at = now(), bytes = 0
		FROM unnest($2::text[], $3::text[]) AS t (locker, rid)
		WHERE l.rollout_id = $1 AND l.locker_id = t.locker AND l.state = 'queued' RETURNING l.locker_id, l.request_id`, r.id, send, sendIDs, deadline)
	if err != nil {
		return err
	}
	var locker, id string
	var notified [][2]string
	if _, err := pgx.ForEachRow(rows, []any{&locker, &id}, func() error { notified = append(notified, [2]string{locker, id}); return nil }); err != nil {
		return err
	}
	params, _ := json.Marshal(protocol.OTAInstallParams{Rollout: r.id, Artifact: r.artifact.ID, Version: r.artifact.Version,
		URL:  fmt.Sprintf("%s/api/v1/ota/artifacts/%d/download", strings.TrimRight(u.deviceURL(), "/"), r.artifact.ID),
		Size: r.artifact.Size, SHA256: r.artifact.SHA256, Signature: r.artifact.Signature})
	for _, n := range notified {
		err := u.devices.Request(n[0], protocol.Request{ID: n[1], Method: protocol.MethodOTAInstall, Params: params, Key: n[1], NotAfter: deadline.UnixMilli()})
		if err == nil {
			u.m.transitions.WithLabelValues(StateNotified).Inc()
			continue
		}
		// Not sent (went offline just now): queued again, no attempt spent.
		if _, err := u.pool.Exec(ctx, `UPDATE ota_lockers SET state = 'queued', attempts = attempts - 1, deadline = NULL, reason = $4
			WHERE rollout_id = $1 AND locker_id = $2 AND state = 'notified' AND request_id = $3`, r.id, n[0], n[1], "waiting: "+clip(err.Error(), 100)); err != nil {
			return err
		}
	}
	return nil
}

// waitReason says why a locker may not start its update now ("" when it may).
func (u *Updater) waitReason(p Policy, locker string, now time.Time) string {
	if !u.devices.Online(locker) {
		return "waiting: offline"
	}
	if p.Window != nil {
		loc := time.UTC
		if name := u.fleet.TimeZone(locker); name != "" {
			if l, err := time.LoadLocation(name); err == nil {
				loc = l
			}
		}
		if !p.Window.Contains(now, loc) {
			return fmt.Sprintf("waiting: outside the maintenance window %s-%s (%s)", p.Window.Start, p.Window.End, loc)
		}
	}
	if b := u.fleet.Busy(locker); b != "" {
		return "waiting: " + b
	}
	return ""
}

// waveCounts are the lockers of one wave by state.
type waveCounts struct {
	n, size            int
	state              string
	accepted           bool
	soakUntil, started *time.Time
	counts             map[string]int
}

func (w waveCounts) final() int {
	return w.counts[StateInstalled] + w.counts[StateFailed] + w.counts[StateCancelled]
}

// waves checks the thresholds and moves the waves on.
func (u *Updater) waves(ctx context.Context, r activeRollout, now time.Time) error {
	rows, err := u.pool.Query(ctx, `SELECT w.n, w.size, w.state, w.accepted, w.soak_until, w.started_at, l.state, count(l.locker_id)
		FROM ota_waves w LEFT JOIN ota_lockers l ON l.rollout_id = w.rollout_id AND l.wave = w.n
		WHERE w.rollout_id = $1 GROUP BY w.n, w.size, w.state, w.accepted, w.soak_until, w.started_at, l.state ORDER BY w.n`, r.id)
	if err != nil {
		return err
	}
	var waves []*waveCounts
	var n, size, cnt int
	var wstate string
	var accepted bool
	var lstate *string
	var soak, started *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&n, &size, &wstate, &accepted, &soak, &started, &lstate, &cnt}, func() error {
		if len(waves) == 0 || waves[len(waves)-1].n != n {
			waves = append(waves, &waveCounts{n: n, size: size, state: wstate, accepted: accepted, soakUntil: soak, started: started, counts: map[string]int{}})
		}
		if lstate != nil {
			waves[len(waves)-1].counts[*lstate] += cnt
		}
		return nil
	}); err != nil {
		return err
	}
	if len(waves) == 0 {
		return nil
	}
	// Abort: too many failures over every started wave.
	var failed, startedN, finalN, total int
	for _, w := range waves {
		total += w.size
		finalN += w.final()
		if w.n <= r.currentWave {
			failed += w.counts[StateFailed]
			startedN += w.size
		}
	}
	if startedN > 0 && float64(failed)*100 > r.policy.AbortPct*float64(startedN) {
		return u.auto(ctx, r.id, RolloutAborted, fmt.Sprintf("aborted: %d of %d lockers failed (over the abort threshold of %g%%)", failed, startedN, r.policy.AbortPct))
	}
	if finalN == total {
		return u.auto(ctx, r.id, RolloutCompleted, "")
	}
	if r.state != RolloutRunning || r.currentWave < 1 || r.currentWave > len(waves) {
		return nil
	}
	w := waves[r.currentWave-1]
	last := w.n == len(waves)
	if wf := w.counts[StateFailed]; !w.accepted && float64(wf)*100 > r.policy.FailurePct*float64(w.size) {
		return u.auto(ctx, r.id, RolloutPaused, fmt.Sprintf("paused: %d of %d lockers of wave %d failed (over the failure threshold of %g%%)", wf, w.size, w.n, r.policy.FailurePct))
	}
	if last {
		return nil // completes when every locker is final
	}
	success := float64(w.counts[StateInstalled])*100 >= r.policy.SuccessPct*float64(w.size) || (w.accepted && w.final() == w.size)
	switch w.state {
	case WaveRunning:
		if !success && w.final() == w.size {
			// Every locker of the wave is done and too few installed: an
			// operator decides (resume goes on to the next wave).
			return u.auto(ctx, r.id, RolloutPaused, fmt.Sprintf("paused: wave %d ended with %d of %d lockers installed, under the success threshold of %g%%; resume to go on",
				w.n, w.counts[StateInstalled], w.size, r.policy.SuccessPct))
		}
		if !success {
			return nil
		}
		if r.policy.Soak > 0 {
			_, err := u.pool.Exec(ctx, `UPDATE ota_waves SET state = 'soaking', soak_until = $3 WHERE rollout_id = $1 AND n = $2 AND state = 'running'`,
				r.id, w.n, now.Add(time.Duration(r.policy.Soak)))
			u.lastGate[r.id] = now
			return err
		}
		return u.advance(ctx, r, w.n)
	case WaveSoaking:
		due := w.soakUntil == nil || !now.Before(*w.soakUntil)
		if !due && now.Sub(u.lastGate[r.id]) < healthEvery {
			return nil
		}
		u.lastGate[r.id] = now
		since := now.Add(-time.Duration(r.policy.Soak))
		if w.soakUntil != nil {
			since = w.soakUntil.Add(-time.Duration(r.policy.Soak))
		}
		verdict, err := u.healthGate(ctx, r, since)
		if err != nil {
			return err
		}
		if verdict != "" && !w.accepted {
			return u.auto(ctx, r.id, RolloutPaused, "paused by the health gate: "+verdict)
		}
		if due {
			return u.advance(ctx, r, w.n)
		}
	}
	return nil
}

// healthEvery is how often the health gate looks during a soak.
const healthEvery = 5 * time.Second

// advance ends wave n: on to the next, or to waiting for approval.
func (u *Updater) advance(ctx context.Context, r activeRollout, n int) error {
	if r.policy.Approval {
		_, err := u.pool.Exec(ctx, `UPDATE ota_waves SET state = 'awaiting_approval' WHERE rollout_id = $1 AND n = $2 AND state IN ('running', 'soaking')`, r.id, n)
		return err
	}
	return pg.Tx(ctx, u.pool, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM ota_rollouts WHERE id = $1 FOR UPDATE`, r.id).Scan(&state); err != nil {
			return err
		}
		if state != RolloutRunning {
			return nil
		}
		if err := u.nextWave(ctx, tx, r.id, n); err != nil {
			return err
		}
		u.log.Info("ota: next wave", "rollout", r.id, "wave", n+1)
		return audit.Record(ctx, tx, audit.Entry{Action: "advance", ObjectType: EntityRollout, ObjectID: fmt.Sprint(r.id),
			Before: map[string]int{"wave": n}, After: map[string]int{"wave": n + 1}})
	})
}

// auto is a state change the engine makes by itself (audited as the hub).
func (u *Updater) auto(ctx context.Context, id int64, to, reason string) error {
	from := []string{RolloutRunning, RolloutPaused}
	action := map[string]string{RolloutPaused: "pause", RolloutAborted: "abort", RolloutCompleted: "complete"}[to]
	if to == RolloutPaused {
		from = []string{RolloutRunning}
	}
	ctx = audit.WithActor(ctx, audit.Actor{Kind: audit.KindSystem, Name: "ota engine"})
	_, err := u.transition(ctx, id, action, from, to, reason, func(tx pgx.Tx, _ Rollout) error {
		switch to {
		case RolloutAborted:
			return cancelLockers(ctx, tx, id, "rollout aborted")
		case RolloutCompleted:
			_, err := tx.Exec(ctx, `UPDATE ota_waves SET state = 'done', finished_at = coalesce(finished_at, now())
				WHERE rollout_id = $1 AND state <> 'done'`, id)
			return err
		}
		return nil
	})
	if errors.Is(err, ErrConflict) {
		return nil // changed meanwhile
	}
	if to == RolloutPaused || to == RolloutAborted {
		u.log.Warn("ota: rollout stopped by itself", "rollout", id, "state", to, "reason", reason)
	}
	return err
}

// healthGate compares the lockers this rollout updated with those it has not
// yet touched (pending or queued) since the soak began: per locker, the
// updated are worse on a signal when theirs is above HealthFactor × the
// others' + HealthMargin. It returns why they are worse, "" when they are
// not (or when there is nobody to compare with), and stores the comparison
// on the wave.
func (u *Updater) healthGate(ctx context.Context, r activeRollout, since time.Time) (string, error) {
	rows, err := u.pool.Query(ctx, `SELECT locker_id, state FROM ota_lockers WHERE rollout_id = $1 AND state IN ('installed', 'pending', 'queued')`, r.id)
	if err != nil {
		return "", err
	}
	var updated, others []string
	var id, state string
	if _, err := pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		if state == StateInstalled {
			updated = append(updated, id)
		} else {
			others = append(others, id)
		}
		return nil
	}); err != nil {
		return "", err
	}
	if len(updated) == 0 || len(others) == 0 {
		return "", nil
	}
	hu, err := u.fleet.Health(ctx, updated, since)
	if err != nil {
		return "", err
	}
	ho, err := u.fleet.Health(ctx, others, since)
	if err != nil {
		return "", err
	}
	verdict := compareHealth(hu, ho, r.policy.HealthFactor, r.policy.HealthMargin)
	doc, _ := json.Marshal(map[string]any{"since": since.UTC(), "updated": hu, "others": ho, "verdict": verdict})
	_, err = u.pool.Exec(ctx, `UPDATE ota_waves SET health = $3 WHERE rollout_id = $1 AND n = $2`, r.id, r.currentWave, doc)
	return verdict, err
}

// compareHealth is the health gate's rule (see healthGate).
func compareHealth(updated, others HealthCounts, factor, margin float64) string {
	if updated.Lockers == 0 || others.Lockers == 0 {
		return ""
	}
	var worse []string
	for _, s := range []struct {
		name string
		u, o int
	}{{"reconnects", updated.Reconnects, others.Reconnects}, {"command failures", updated.CommandFailures, others.CommandFailures},
		{"door/lock faults", updated.Faults, others.Faults}} {
		ru, ro := float64(s.u)/float64(updated.Lockers), float64(s.o)/float64(others.Lockers)
		if ru > factor*ro+margin {
			worse = append(worse, fmt.Sprintf("%s %.2f per updated locker vs %.2f per other", s.name, ru, ro))
		}
	}
	return strings.Join(worse, "; ")
}
