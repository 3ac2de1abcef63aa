package alarms

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/pg"
)

// inboxChannel is the NOTIFY channel of the event inbox (see the trigger in
// migrations/001_alarms.sql).
const inboxChannel = "alarms_inbox"

// listen wakes the inbox consumer on NOTIFY, on a dedicated connection, and
// once after every (re)connect; the consumer also polls.
func (s *Store) listen(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("alarms: LISTEN connection lost; polling until it is back", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+inboxChannel); err != nil {
		return err
	}
	signal(s.wakeInbox)
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal(s.wakeInbox)
	}
}

// consumeInbox turns stored device events into alarms: each batch fires
// its alarms and deletes its inbox rows in one transaction.
func (s *Store) consumeInbox(ctx context.Context) {
	poll := time.NewTicker(s.cfg.FlushPoll)
	defer poll.Stop()
	for {
		for ctx.Err() == nil {
			n, err := s.takeInbox(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("alarms: taking device events failed; retrying", "error", err)
				}
				break
			}
			if n > 0 {
				signal(s.wakeFlush)
			}
			if n < inboxBatch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wakeInbox:
		case <-poll.C:
		}
	}
}

const inboxBatch = 500

func (s *Store) takeInbox(ctx context.Context) (int, error) {
	n := 0
	var fired []Alarm
	rules := s.Rules()
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM alarms_inbox WHERE id IN (SELECT id FROM alarms_inbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING id, locker_id, event_id, type, cell, cause, ts`, inboxBatch)
		if err != nil {
			return err
		}
		type ev struct {
			id                              int64
			locker, event, typ, cell, cause string
			ts                              time.Time
		}
		evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ev, error) {
			var e ev
			return e, r.Scan(&e.id, &e.locker, &e.event, &e.typ, &e.cell, &e.cause, &e.ts)
		})
		if err != nil {
			return err
		}
		slices.SortFunc(evs, func(a, b ev) int { return int(a.id - b.id) })
		n = len(evs)
		for _, e := range evs {
			c := candidate{LockerID: e.locker, Cell: e.cell, Source: "event:" + e.event, At: time.Now()}
			switch e.typ {
			case "door_opened", "door_forced":
				c.Kind, c.Summary = KindDoorForced, fmt.Sprintf("door %s of locker %s opened without a command, code or technician", e.cell, e.locker)
			case "tamper":
				c.Kind, c.Summary = KindTamper, fmt.Sprintf("locker %s reported tampering", e.locker)
			default:
				continue
			}
			l, _ := s.fleet.Locker(e.locker)
			if l.ID == "" {
				l.ID = e.locker
			}
			r := ruleFor(rules, c.Kind, l)
			if !r.Enabled {
				continue
			}
			c.Severity = r.Severity
			a, isNew, err := s.fire(ctx, tx, c)
			if err != nil {
				return err
			}
			if isNew {
				fired = append(fired, a)
			}
		}
		return nil
	})
	if err == nil {
		s.notifyFired(fired)
	}
	return n, err
}

// condSeen is the evaluator's memory: the open condition alarms by
// fingerprint, and since when a condition that must last has held.
type condSeen struct {
	mu    sync.Mutex
	open  map[string]int64
	since map[string]time.Time
}

func conditionKind(kind string) bool {
	k, ok := kindInfo(kind)
	return ok && k.Source == "condition"
}

func (s *Store) loadConditions(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT fingerprint, id, kind FROM alarms_alarms WHERE state <> 'resolved'`)
	if err != nil {
		return fmt.Errorf("open alarms: %w", err)
	}
	open := map[string]int64{}
	var fp, kind string
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&fp, &id, &kind}, func() error {
		if conditionKind(kind) {
			open[fp] = id
		}
		return nil
	}); err != nil {
		return fmt.Errorf("open alarms: %w", err)
	}
	s.cond.mu.Lock()
	s.cond.open, s.cond.since = open, map[string]time.Time{}
	s.cond.mu.Unlock()
	return nil
}

// forget drops a condition alarm resolved by hand from the evaluator's
// memory: if the condition still holds, it fires anew.
func (s *Store) forget(a Alarm) {
	s.cond.mu.Lock()
	if s.cond.open[a.Fingerprint] == a.ID {
		delete(s.cond.open, a.Fingerprint)
	}
	s.cond.mu.Unlock()
}

func (s *Store) evaluate(ctx context.Context) {
	t := time.NewTicker(s.cfg.EvalInterval)
	defer t.Stop()
	for {
		if err := s.EvaluateOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("alarms: evaluating conditions failed; retrying", "error", err)
		}
		if err := s.takeCommands(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("alarms: reading unconfirmed commands failed; retrying", "error", err)
		}
		if err := s.takeOTAFailures(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("alarms: reading failed firmware updates failed; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// EvaluateOnce evaluates every derived condition now: fires what newly
// holds, resolves what cleared. Lockers whose presence is unknown (after a
// start, DESIGN decision 4) keep their alarms as they are; offline lockers
// keep all but their offline alarm (what they last reported is stale).
func (s *Store) EvaluateOnce(ctx context.Context) error {
	now := time.Now()
	rules := s.Rules()
	want := map[string]candidate{}
	frozen := map[string]bool{} // locker → its alarms stay as they are, but for offline
	frozenAll := map[string]bool{}
	s.cond.mu.Lock()
	since := s.cond.since
	s.cond.mu.Unlock()
	held := map[string]bool{}
	lasted := func(fp string, d time.Duration) bool {
		held[fp] = true
		first, ok := since[fp]
		if !ok {
			first = now
			since[fp] = now
		}
		return now.Sub(first) >= d
	}
	add := func(kind string, l Locker, cell string, e effective, summary string, value *float64) {
		fp := fingerprint(kind, l.ID, cell)
		want[fp] = candidate{Kind: kind, Severity: e.Severity, LockerID: l.ID, Cell: cell, Summary: summary, Value: value, Source: "condition", At: now}
	}
	for _, l := range s.fleet.Lockers() {
		if !l.Enabled || l.Presence == "unknown" || l.Presence == "" {
			frozenAll[l.ID] = true
			continue
		}
		if e := ruleFor(rules, KindOffline, l); e.Enabled && l.Presence == "offline" {
			// Since is unknown for a locker not seen since the hub started:
			// counted from when the evaluator first saw it offline.
			if (!l.Since.IsZero() && now.Sub(l.Since) >= e.For) || (l.Since.IsZero() && lasted(fingerprint(KindOffline, l.ID, ""), e.For)) {
				add(KindOffline, l, "", e, fmt.Sprintf("locker %s offline longer than %s", l.ID, e.For), nil)
			}
		}
		if l.Presence != "online" {
			frozen[l.ID] = true
			continue
		}
		if e := ruleFor(rules, KindMainsLost, l); e.Enabled && l.Mains != nil && !*l.Mains && lasted(fingerprint(KindMainsLost, l.ID, ""), e.For) {
			add(KindMainsLost, l, "", e, fmt.Sprintf("locker %s lost mains power and runs on battery", l.ID), nil)
		}
		if e := ruleFor(rules, KindBatteryLow, l); e.Enabled && l.BatteryV != nil && *l.BatteryV < e.Threshold {
			add(KindBatteryLow, l, "", e, fmt.Sprintf("locker %s battery at %.2f V, below %.2f V", l.ID, *l.BatteryV, e.Threshold), l.BatteryV)
		}
		if e := ruleFor(rules, KindDoorOpen, l); e.Enabled {
			for _, c := range l.OpenDoors {
				if lasted(fingerprint(KindDoorOpen, l.ID, c), e.For) {
					add(KindDoorOpen, l, c, e, fmt.Sprintf("door %s of locker %s open longer than %s", c, l.ID, e.For), nil)
				}
			}
		}
		if e := ruleFor(rules, KindLockJammed, l); e.Enabled {
			for _, c := range l.JammedCells {
				add(KindLockJammed, l, c, e, fmt.Sprintf("lock of cell %s of locker %s is jammed", c, l.ID), nil)
			}
		}
		for _, m := range telemetryMetrics(rules) {
			v, ok := l.Metrics[m.metric]
			if !ok {
				continue
			}
			e := ruleForMetric(rules, m.kind, m.metric, l)
			if !e.Enabled || (m.kind == KindTelemetryHigh && v <= e.Threshold) || (m.kind == KindTelemetryLow && v >= e.Threshold) {
				continue
			}
			fp := fingerprint(m.kind, l.ID, m.metric)
			if !lasted(fp, e.For) {
				continue
			}
			word := "above"
			if m.kind == KindTelemetryLow {
				word = "below"
			}
			val := v
			want[fp] = candidate{Kind: m.kind, Severity: e.Severity, LockerID: l.ID, Key: m.metric, Value: &val, Source: "telemetry:" + m.metric, At: now,
				Summary: fmt.Sprintf("locker %s: %s at %v, %s %v", l.ID, m.metric, v, word, e.Threshold)}
		}
		if e := ruleFor(rules, KindClockOffset, l); e.Enabled && l.ClockOffset != nil && math.Abs(*l.ClockOffset) > e.Threshold &&
			lasted(fingerprint(KindClockOffset, l.ID, ""), e.For) {
			word := "ahead of"
			if *l.ClockOffset < 0 {
				word = "behind"
			}
			add(KindClockOffset, l, "", e, fmt.Sprintf("locker %s: its clock is %.1f s %s the hub's", l.ID, math.Abs(*l.ClockOffset), word), l.ClockOffset)
		}
		if e := ruleFor(rules, KindFreeCellsLow, l); e.Enabled && l.Reported && l.Cells > 0 && float64(l.FreeCells) < e.Threshold {
			v := float64(l.FreeCells)
			add(KindFreeCellsLow, l, "", e, fmt.Sprintf("locker %s has %d free cells for loading, below %v", l.ID, l.FreeCells, e.Threshold), &v)
		}
	}
	// Asks come from connected lockers: judged whatever the presence now.
	if err := s.bruteForce(ctx, rules, now, add); err != nil {
		return err
	}
	for fp := range since {
		if !held[fp] {
			delete(since, fp)
		}
	}

	s.cond.mu.Lock()
	var fire []candidate
	var resolve []int64
	for fp, c := range want {
		if _, ok := s.cond.open[fp]; !ok {
			fire = append(fire, c)
		}
	}
	for fp, id := range s.cond.open {
		if _, ok := want[fp]; ok {
			continue
		}
		kind, locker := splitFingerprint(fp)
		if frozenAll[locker] || (frozen[locker] && kind != KindOffline) {
			continue
		}
		resolve = append(resolve, id)
	}
	s.cond.mu.Unlock()
	if len(fire) == 0 && len(resolve) == 0 {
		return nil
	}
	slices.SortFunc(fire, func(a, b candidate) int {
		if a.LockerID != b.LockerID {
			if a.LockerID < b.LockerID {
				return -1
			}
			return 1
		}
		return 0
	})
	const chunk = 500
	s.pass.Lock()
	defer s.pass.Unlock()
	for len(fire) > 0 || len(resolve) > 0 {
		f := fire[:min(chunk, len(fire))]
		r := resolve[:min(chunk, len(resolve))]
		fire, resolve = fire[len(f):], resolve[len(r):]
		fired := map[string]int64{}
		var gone []string
		err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
			for _, c := range f {
				a, _, err := s.fire(ctx, tx, c)
				if err != nil {
					return err
				}
				fired[a.Fingerprint] = a.ID
			}
			for _, id := range r {
				a, err := s.resolveTx(ctx, tx, id, "", "")
				if errors.Is(err, ErrConflict) {
					continue // resolved by hand meanwhile
				}
				if err != nil {
					return err
				}
				gone = append(gone, a.Fingerprint)
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.cond.mu.Lock()
		for fp, id := range fired {
			s.cond.open[fp] = id
		}
		for _, fp := range gone {
			delete(s.cond.open, fp)
		}
		for _, id := range r { // resolved by hand meanwhile: gone too
			for fp, x := range s.cond.open {
				if x == id {
					delete(s.cond.open, fp)
				}
			}
		}
		s.cond.mu.Unlock()
		signal(s.wakeFlush)
	}
	return nil
}

// bruteForce finds the lockers where wrong pickup codes (code.check asks
// answered wrong_code or rate_limited, as stored in fleet_asks) within the
// window reach their threshold.
func (s *Store) bruteForce(ctx context.Context, rules []Rule, now time.Time,
	add func(kind string, l Locker, cell string, e effective, summary string, value *float64)) error {
	window := ruleFor(rules, KindCodeBruteForce, Locker{}).For
	if window <= 0 {
		window = 10 * time.Minute
	}
	rows, err := s.pool.Query(ctx, `SELECT locker_id, count(*) FROM fleet_asks
		WHERE at > $1 AND method = 'code.check' AND answer->'error'->>'code' IN ('wrong_code', 'rate_limited')
		GROUP BY locker_id`, now.Add(-window))
	if err != nil {
		return fmt.Errorf("wrong codes: %w", err)
	}
	var id string
	var n int64
	counts := map[string]int64{}
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { counts[id] = n; return nil }); err != nil {
		return fmt.Errorf("wrong codes: %w", err)
	}
	for id, n := range counts {
		l, ok := s.fleet.Locker(id)
		if !ok || !l.Enabled {
			continue
		}
		if e := ruleFor(rules, KindCodeBruteForce, l); e.Enabled && float64(n) >= e.Threshold {
			v := float64(n)
			add(KindCodeBruteForce, l, "", e, fmt.Sprintf("%d wrong pickup codes at locker %s within %s", n, id, window), &v)
		}
	}
	return nil
}

type kindMetric struct{ kind, metric string }

// telemetryMetrics lists the (kind, metric) pairs any rule or default names.
func telemetryMetrics(rules []Rule) []kindMetric {
	seen := map[kindMetric]bool{}
	var out []kindMetric
	for _, r := range append(slices.Clone(DefaultTelemetryRules), rules...) {
		km := kindMetric{r.Kind, r.Metric}
		if telemetryKind(r.Kind) && !seen[km] {
			seen[km] = true
			out = append(out, km)
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func splitFingerprint(fp string) (kind, locker string) {
	parts := strings.SplitN(fp, "/", 3)
	if len(parts) < 2 {
		return fp, ""
	}
	return parts[0], parts[1]
}

// cursorSource is what a source read with a durable cursor found: each
// candidate (Kind, LockerID, Cell, Summary and Source set; Source names what
// it was raised for, so a read that overlaps the last one raises nothing
// twice) and the time it happened, which moves the cursor.
type cursorSource struct {
	at time.Time
	c  candidate
}

// takeSince runs one pass of a source read with the durable cursor name:
// read gets the cursor and returns what happened since, read back a minute
// before it (what finished earlier but committed after the last read is
// still taken; what was raised already is left out by its Source). Each is
// raised unless its kind's rule is off, and the cursor moves in the same
// transaction. The first pass only sets the cursor: older things are history.
func (s *Store) takeSince(ctx context.Context, name string, read func(tx pgx.Tx, cursor time.Time) ([]cursorSource, error)) error {
	rules := s.Rules()
	n := 0
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var cursor time.Time
		err := tx.QueryRow(ctx, `SELECT at FROM alarms_cursors WHERE name = $1 FOR UPDATE`, name).Scan(&cursor)
		if errors.Is(err, pgx.ErrNoRows) {
			_, err = tx.Exec(ctx, `INSERT INTO alarms_cursors (name, at) VALUES ($1, now()) ON CONFLICT DO NOTHING`, name)
			return err
		}
		if err != nil {
			return err
		}
		found, err := read(tx, cursor)
		if err != nil {
			return err
		}
		for _, f := range found {
			cursor = maxTime(cursor, f.at)
			l, _ := s.fleet.Locker(f.c.LockerID)
			l.ID = f.c.LockerID
			e := ruleFor(rules, f.c.Kind, l)
			if !e.Enabled {
				continue
			}
			f.c.Severity, f.c.At = e.Severity, time.Now()
			if _, _, err := s.fire(ctx, tx, f.c); err != nil {
				return err
			}
			n++
		}
		_, err = tx.Exec(ctx, `UPDATE alarms_cursors SET at = $1 WHERE name = $2`, cursor, name)
		return err
	})
	if n > 0 {
		signal(s.wakeFlush)
	}
	return err
}

// takeCommands raises command_unconfirmed for the cell.open commands that
// ended unconfirmed since the cursor (fleet commands' state, DESIGN
// decision 16).
func (s *Store) takeCommands(ctx context.Context) error {
	return s.takeSince(ctx, "commands", func(tx pgx.Tx, cursor time.Time) ([]cursorSource, error) {
		rows, err := tx.Query(ctx, `SELECT c.id, c.locker_id, coalesce(c.params->>'cell', ''), c.finished_at FROM fleet_commands c
			WHERE c.state = 'unconfirmed' AND c.finished_at > $1::timestamptz - interval '1 minute'
			AND NOT EXISTS (SELECT 1 FROM alarms_alarms a WHERE a.source = 'command:' || c.id)
			ORDER BY c.finished_at LIMIT 500`, cursor)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (cursorSource, error) {
			var id, locker, cell string
			var at time.Time
			if err := r.Scan(&id, &locker, &cell, &at); err != nil {
				return cursorSource{}, err
			}
			return cursorSource{at: at, c: candidate{Kind: KindCommandUnconfirmed, LockerID: locker, Cell: cell, Source: "command:" + id,
				Summary: fmt.Sprintf("command %s: the door sensor of %s did not confirm the opening", id, cell)}}, nil
		})
	})
}

// takeOTAFailures raises ota_failed for each locker whose update of a
// rollout ended failed since the cursor (ota_lockers), once per rollout and
// locker.
func (s *Store) takeOTAFailures(ctx context.Context) error {
	return s.takeSince(ctx, "ota", func(tx pgx.Tx, cursor time.Time) ([]cursorSource, error) {
		rows, err := tx.Query(ctx, `SELECT l.rollout_id, l.locker_id, l.reason, l.state_at, a.version FROM ota_lockers l
			JOIN ota_rollouts r ON r.id = l.rollout_id JOIN ota_artifacts a ON a.id = r.artifact_id
			WHERE l.state = 'failed' AND l.state_at > $1::timestamptz - interval '1 minute'
			AND NOT EXISTS (SELECT 1 FROM alarms_alarms x WHERE x.source = 'ota:' || l.rollout_id || ':' || l.locker_id)
			ORDER BY l.state_at LIMIT 500`, cursor)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (cursorSource, error) {
			var rollout int64
			var locker, reason, version string
			var at time.Time
			if err := r.Scan(&rollout, &locker, &reason, &at, &version); err != nil {
				return cursorSource{}, err
			}
			return cursorSource{at: at, c: candidate{Kind: KindOTAFailed, LockerID: locker, Source: fmt.Sprintf("ota:%d:%s", rollout, locker),
				Summary: fmt.Sprintf("firmware %s (rollout %d) failed on %s: %s", version, rollout, locker, reason)}}, nil
		})
	})
}
