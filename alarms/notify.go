package alarms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/pg"
)

// Notices.
const (
	NoticeFiring     = "firing"
	NoticeResolved   = "resolved"
	NoticeReminder   = "reminder"
	NoticeEscalation = "escalation"
)

// touch puts a into the groups of the routes that take it and schedules
// each group's next look: a new group after its group_wait, an existing
// one at once or group_interval after its last notice, whichever is later.
func (s *Store) touch(ctx context.Context, tx pgx.Tx, a Alarm) error {
	s.mu.RLock()
	routes := s.routing.routes(&a)
	s.mu.RUnlock()
	for _, r := range routes {
		labels := map[string]string{}
		parts := []string{r.Path}
		for _, g := range r.GroupBy {
			v := a.label(g)
			labels[g] = v
			parts = append(parts, g+"="+v)
		}
		key := strings.Join(parts, "|")
		lj, _ := json.Marshal(labels)
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_groups (key, route, labels, next_flush_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
			ON CONFLICT (key) DO UPDATE SET next_flush_at = LEAST(coalesce(alarms_groups.next_flush_at, 'infinity'), GREATEST(now(),
				CASE WHEN alarms_groups.last_sent_at IS NULL THEN alarms_groups.created_at + make_interval(secs => $4)
				ELSE alarms_groups.last_sent_at + make_interval(secs => $5) END))`,
			key, r.Path, lj, r.GroupWait.Seconds(), r.GroupInterval.Seconds()); err != nil {
			return fmt.Errorf("alarm group %s: %w", key, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_group_members (group_key, alarm_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, key, a.ID); err != nil {
			return fmt.Errorf("alarm group %s: %w", key, err)
		}
	}
	return nil
}

// retouchOpen has every group looked at again at once (a silence ended).
func (s *Store) retouchOpen(ctx context.Context) {
	if _, err := s.pool.Exec(ctx, `UPDATE alarms_groups SET next_flush_at = now()`); err != nil {
		s.log.Warn("alarms: rescheduling groups failed; they are looked at on their own time", "error", err)
	}
	signal(s.wakeFlush)
}

// flushLoop looks at the groups that are due.
func (s *Store) flushLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wakeFlush:
		}
		wait := s.flushDue(ctx)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// flushDue flushes every due group and returns how long to wait.
func (s *Store) flushDue(ctx context.Context) time.Duration {
	for ctx.Err() == nil {
		rows, err := s.pool.Query(ctx, `SELECT key FROM alarms_groups WHERE next_flush_at <= now() ORDER BY next_flush_at LIMIT 100`)
		if err != nil {
			s.log.Error("alarms: reading due groups failed; retrying", "error", err)
			return s.cfg.FlushPoll
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			s.log.Error("alarms: reading due groups failed; retrying", "error", err)
			return s.cfg.FlushPoll
		}
		s.pass.Lock() // not in the middle of an evaluation pass (see Store.pass)
		for _, k := range keys {
			if err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error { return s.flush(ctx, tx, k) }); err != nil && ctx.Err() == nil {
				s.log.Error("alarms: notifying a group failed; retrying", "group", k, "error", err)
			}
		}
		s.pass.Unlock()
		if len(keys) < 100 {
			break
		}
	}
	wait := s.cfg.FlushPoll
	var secs *float64
	if err := s.pool.QueryRow(ctx, `SELECT extract(epoch FROM min(next_flush_at) - now())::float8 FROM alarms_groups WHERE next_flush_at IS NOT NULL`).Scan(&secs); err == nil && secs != nil {
		wait = min(wait, max(time.Duration(*secs*float64(time.Second)), 5*time.Millisecond))
	}
	return wait
}

type member struct {
	Alarm
	notified string
	visible  string // firing, acknowledged, suppressed, resolved
}

// flush decides and enqueues the notice of one group, in tx.
func (s *Store) flush(ctx context.Context, tx pgx.Tx, key string) error {
	var route string
	var labelsJS []byte
	var lastSent, firingSince *time.Time
	var created time.Time
	var level, seq int
	err := tx.QueryRow(ctx, `SELECT route, labels, created_at, last_sent_at, firing_since, level, seq FROM alarms_groups
		WHERE key = $1 AND next_flush_at <= now() FOR UPDATE SKIP LOCKED`, key).Scan(&route, &labelsJS, &created, &lastSent, &firingSince, &level, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // another node has it, or it was flushed already
	}
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT m.notified, `+prefixed("a.", alarmCols)+` FROM alarms_group_members m JOIN alarms_alarms a ON a.id = m.alarm_id
		WHERE m.group_key = $1 ORDER BY a.started_at, a.id`, key)
	if err != nil {
		return err
	}
	var ms []member
	for rows.Next() {
		var m member
		a := &m.Alarm
		if err := rows.Scan(&m.notified, &a.ID, &a.Fingerprint, &a.Kind, &a.Severity, &a.LockerID, &a.Cell, &a.Segments, &a.Carriers, &a.Model, &a.State,
			&a.Summary, &a.Source, &a.Value, &a.Occurrences, &a.Muted, &a.StartedAt, &a.LastSeenAt, &a.AckedAt, &a.AckedBy, &a.AckNote,
			&a.ResolvedAt, &a.ResolvedBy); err != nil {
			rows.Close()
			return err
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sil, err := activeSilences(ctx, tx)
	if err != nil {
		return err
	}
	var lockers []string
	for _, m := range ms {
		lockers = append(lockers, m.LockerID)
	}
	off, err := offlineLockers(ctx, tx, lockers)
	if err != nil {
		return err
	}
	var firing, newFiring, resolvedTold, suppressed []*member
	for i := range ms {
		m := &ms[i]
		switch {
		case m.State == StateResolved:
			m.visible = StateResolved
			if m.notified == StateFiring {
				resolvedTold = append(resolvedTold, m)
			}
		case m.Muted || silenced(sil, &m.Alarm) || (off[m.LockerID] && inhibitable(m.Kind)):
			m.visible = "suppressed"
			suppressed = append(suppressed, m)
		case m.State == StateAcknowledged:
			m.visible = StateAcknowledged
		default:
			m.visible = StateFiring
			firing = append(firing, m)
			if m.notified != StateFiring {
				newFiring = append(newFiring, m)
			}
		}
	}

	s.mu.RLock()
	rt := s.routing
	s.mu.RUnlock()
	r := rt.route(route)
	now := time.Now()
	notice := ""
	switch {
	case len(newFiring) > 0 || (len(resolvedTold) > 0 && len(firing) > 0):
		notice = NoticeFiring
	case len(resolvedTold) > 0:
		notice = NoticeResolved
	case len(firing) > 0 && lastSent != nil && !now.Before(lastSent.Add(r.RepeatInterval)):
		notice = NoticeReminder
	}
	if len(firing) > 0 && firingSince != nil && r.Schedule != nil && level+1 < len(r.Schedule.Levels) &&
		!now.Before(firingSince.Add(time.Duration(r.Schedule.Levels[level+1].After))) {
		level++
		if notice == "" || notice == NoticeReminder {
			notice = NoticeEscalation
		}
	}
	if notice != "" {
		seq++
		listed := append(slices.Clone(firing), resolvedTold...)
		// The group's id names this incarnation of the key: a group made
		// again later (after all its alarms resolved) starts its sequence
		// anew and must not reuse the ids of the old one's notices.
		h := sha256.Sum256(fmt.Appendf(nil, "%s|%d", key, created.UnixNano()))
		gid := hex.EncodeToString(h[:8])
		if err := s.send(ctx, tx, gid, key, labelsJS, r, rt, level, seq, notice, listed, len(firing), now); err != nil {
			return err
		}
		lastSent = &now
		if _, err := tx.Exec(ctx, `UPDATE alarms_group_members SET notified = 'firing' WHERE group_key = $1 AND alarm_id = ANY($2)`, key, ids(firing)); err != nil {
			return err
		}
	}
	if len(firing) > 0 {
		if firingSince == nil && notice != "" {
			firingSince = &now
		}
	} else {
		firingSince, level = nil, 0
	}
	if _, err := tx.Exec(ctx, `DELETE FROM alarms_group_members m USING alarms_alarms a WHERE m.group_key = $1 AND a.id = m.alarm_id AND a.state = 'resolved'`, key); err != nil {
		return err
	}
	remaining := 0
	for _, m := range ms {
		if m.visible != StateResolved {
			remaining++
		}
	}
	if remaining == 0 {
		_, err := tx.Exec(ctx, `DELETE FROM alarms_groups WHERE key = $1`, key)
		return err
	}
	var next *time.Time
	switch {
	case len(firing) > 0 && lastSent != nil:
		n := lastSent.Add(r.RepeatInterval)
		if firingSince != nil && r.Schedule != nil && level+1 < len(r.Schedule.Levels) {
			if e := firingSince.Add(time.Duration(r.Schedule.Levels[level+1].After)); e.Before(n) {
				n = e
			}
		}
		next = &n
	case len(suppressed) > 0 || len(firing) > 0:
		// a silence may end, an inhibiting alarm resolve: look again
		n := now.Add(max(r.GroupInterval, 10*time.Second))
		next = &n
	}
	_, err = tx.Exec(ctx, `UPDATE alarms_groups SET next_flush_at = $2, last_sent_at = $3, firing_since = $4, level = $5, seq = $6 WHERE key = $1`,
		key, next, lastSent, firingSince, level, seq)
	return err
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

func ids(ms []*member) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// targets are the receivers of a route at an escalation level: the route's
// own and, for each level reached, the one on shift.
func targets(r resolved, rt Routing, level int, now time.Time) []Receiver {
	var names []string
	names = append(names, r.Receivers...)
	if r.Schedule != nil {
		for i := 0; i <= level && i < len(r.Schedule.Levels); i++ {
			if n := r.Schedule.Levels[i].onShift(now); n != "" {
				names = append(names, n)
			}
		}
	}
	var out []Receiver
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if rc, ok := rt.receiver(n); ok {
			out = append(out, rc)
		}
	}
	return out
}

// send enqueues one notice to every target of the group, in tx. The
// message ids are stable (group, sequence, receiver), so a notice is
// enqueued once per receiver whatever happens around it.
func (s *Store) send(ctx context.Context, tx pgx.Tx, gid, key string, labelsJS []byte, r resolved, rt Routing, level, seq int,
	notice string, listed []*member, nFiring int, now time.Time) error {
	var labels map[string]string
	_ = json.Unmarshal(labelsJS, &labels)
	more := 0
	if len(listed) > s.cfg.MaxListed {
		more = len(listed) - s.cfg.MaxListed
		listed = listed[:s.cfg.MaxListed]
	}
	status := StateFiring
	if nFiring == 0 {
		status = StateResolved
	}
	subject, text := describe(notice, status, labels, listed, nFiring, more, level)
	for _, rc := range targets(r, rt, level, now) {
		id := fmt.Sprintf("alarm-%s-%d-%s", gid, seq, rc.Name)
		m := outbox.Message{ID: id, Template: "alarm"}
		switch rc.Type {
		case ReceiverEmail:
			m.Channel, m.To, m.Data = outbox.ChannelEmail, rc.To, map[string]any{"subject": subject, "text": text}
		case ReceiverSMS:
			m.Channel, m.To, m.Data = outbox.ChannelSMS, rc.To, map[string]any{"subject": subject, "text": text}
		case ReceiverChat:
			m.Channel, m.To, m.Data = outbox.ChannelHTTP, rc.URL, map[string]any{"text": subject + "\n" + text}
		case ReceiverWebhook:
			m.Channel, m.To, m.Secret = outbox.ChannelHTTP, rc.URL, rc.Secret
			m.Data = s.webhookBody(id, key, labels, notice, status, level, listed, more, now)
		case ReceiverAlertmanager:
			m.Channel, m.To, m.Secret = outbox.ChannelHTTP, rc.URL, rc.Secret
			m.Data = s.alertmanagerBody(key, rc.Name, labels, status, listed, more)
		}
		if err := outbox.Enqueue(ctx, tx, m); err != nil {
			return fmt.Errorf("notify %s: %w", rc.Name, err)
		}
		alarmIDs := ids(listed)
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_notifications (id, group_key, receiver, rtype, notice, level, alarm_ids)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`, id, key, rc.Name, rc.Type, notice, level, alarmIDs); err != nil {
			return err
		}
		s.m.notices.WithLabelValues(rc.Type, notice).Inc()
	}
	for _, m := range listed {
		if _, err := tx.Exec(ctx, `INSERT INTO alarms_history (alarm_id, action, note) VALUES ($1, 'notified', $2)`,
			m.ID, fmt.Sprintf("%s (level %d)", notice, level+1)); err != nil {
			return err
		}
	}
	return nil
}

func describe(notice, status string, labels map[string]string, listed []*member, nFiring, more, level int) (subject, text string) {
	var head []string
	for _, k := range MatcherNames {
		if v, ok := labels[k]; ok && v != "" {
			head = append(head, k+"="+v)
		}
	}
	tag := strings.ToUpper(status)
	if status == StateFiring {
		tag = fmt.Sprintf("FIRING:%d", nFiring)
	}
	prefix := ""
	switch notice {
	case NoticeReminder:
		prefix = "Reminder: "
	case NoticeEscalation:
		prefix = fmt.Sprintf("Escalated to level %d: ", level+1)
	}
	subject = fmt.Sprintf("%s[%s] %s", prefix, tag, strings.Join(head, " "))
	var b strings.Builder
	for _, m := range listed {
		fmt.Fprintf(&b, "- %s %s %s: %s (since %s)\n", strings.ToUpper(m.visible), m.Severity, m.Kind, m.Summary, m.StartedAt.UTC().Format(time.RFC3339))
	}
	if more > 0 {
		fmt.Fprintf(&b, "… and %d more\n", more)
	}
	return subject, b.String()
}

func alarmJSON(m *member) map[string]any {
	out := map[string]any{"id": m.ID, "fingerprint": m.Fingerprint, "kind": m.Kind, "severity": m.Severity, "locker_id": m.LockerID,
		"cell": m.Cell, "segments": m.Segments, "state": m.visible, "summary": m.Summary, "started_at": m.StartedAt.UTC().Format(time.RFC3339Nano)}
	if m.ResolvedAt != nil {
		out["resolved_at"] = m.ResolvedAt.UTC().Format(time.RFC3339Nano)
	}
	if m.Segments == nil {
		out["segments"] = []string{}
	}
	return out
}

func (s *Store) webhookBody(id, key string, labels map[string]string, notice, status string, level int, listed []*member, more int, now time.Time) map[string]any {
	list := make([]any, 0, len(listed))
	for _, m := range listed {
		list = append(list, alarmJSON(m))
	}
	return map[string]any{"id": id, "type": "alarm." + notice, "created_at": now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"data": map[string]any{"group_key": key, "group_labels": labels, "status": status, "notice": notice, "level": level + 1,
			"alarms": list, "truncated": more, "external_url": s.cfg.ExternalURL}}
}

// alertmanagerBody is Alertmanager's webhook payload (version 4).
func (s *Store) alertmanagerBody(key, receiver string, labels map[string]string, status string, listed []*member, more int) map[string]any {
	alerts := make([]any, 0, len(listed))
	common := map[string]string{}
	for i, m := range listed {
		l := map[string]string{"alertname": m.Kind, "severity": m.Severity, "locker": m.LockerID}
		if m.Cell != "" {
			l["cell"] = m.Cell
		}
		if len(m.Segments) > 0 {
			l["segment"] = strings.Join(m.Segments, ",")
		}
		if i == 0 {
			for k, v := range l {
				common[k] = v
			}
		} else {
			for k, v := range common {
				if l[k] != v {
					delete(common, k)
				}
			}
		}
		st, ends := StateFiring, "0001-01-01T00:00:00Z"
		if m.visible == StateResolved {
			st = StateResolved
			if m.ResolvedAt != nil {
				ends = m.ResolvedAt.UTC().Format(time.RFC3339Nano)
			}
		}
		alerts = append(alerts, map[string]any{"status": st, "labels": l, "annotations": map[string]string{"summary": m.Summary},
			"startsAt": m.StartedAt.UTC().Format(time.RFC3339Nano), "endsAt": ends, "generatorURL": s.cfg.ExternalURL, "fingerprint": m.Fingerprint})
	}
	return map[string]any{"version": "4", "groupKey": key, "truncatedAlerts": more, "status": status, "receiver": receiver,
		"groupLabels": labels, "commonLabels": common, "commonAnnotations": map[string]string{}, "externalURL": s.cfg.ExternalURL, "alerts": alerts}
}

// Notification is one notice to one receiver, with its delivery state.
type Notification struct {
	ID        string          `json:"id"`
	GroupKey  string          `json:"group_key"`
	Receiver  string          `json:"receiver"`
	Type      string          `json:"receiver_type"`
	Notice    string          `json:"notice"`
	Level     int             `json:"level"`
	AlarmIDs  []int64         `json:"alarm_ids"`
	CreatedAt time.Time       `json:"created_at"`
	Delivery  outbox.Delivery `json:"delivery"`
}

// Notifications lists the latest notices (of one alarm when alarmID > 0).
func (s *Store) Notifications(ctx context.Context, alarmID int64, limit int) ([]Notification, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT id, group_key, receiver, rtype, notice, level, alarm_ids, created_at FROM alarms_notifications
		WHERE $1 = 0 OR alarm_ids @> ARRAY[$1::bigint] ORDER BY created_at DESC, id LIMIT $2`, alarmID, limit)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var n Notification
		err := r.Scan(&n.ID, &n.GroupKey, &n.Receiver, &n.Type, &n.Notice, &n.Level, &n.AlarmIDs, &n.CreatedAt)
		n.Level++
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	idList := make([]string, len(list))
	for i, n := range list {
		idList[i] = n.ID
	}
	d, err := outbox.Deliveries(ctx, s.pool, idList)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if x, ok := d[list[i].ID]; ok {
			list[i].Delivery = x
		} else {
			list[i].Delivery = outbox.Delivery{ID: list[i].ID, State: "gone"}
		}
	}
	return list, nil
}
