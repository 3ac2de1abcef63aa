package fleet

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Commands across hub nodes (cluster mode; see fleet/cluster.go).

// orphanGrace is how long past its end an open command waits for the node
// that drives it before any node settles it (its driver stopped).
const orphanGrace = 15 * time.Second

// adopt takes over the open commands of lockers connected to this node that
// it does not drive yet, and sends them.
func (c *Commands) adopt(ctx context.Context, lockers []string) {
	var here []string
	for _, id := range lockers {
		if c.devices.Online(id) {
			here = append(here, id)
		}
	}
	if len(here) == 0 {
		return
	}
	rows, err := c.pool.Query(ctx, `SELECT `+cmdColumns+` FROM fleet_commands
		WHERE locker_id = ANY($1) AND state IN ('pending', 'sent') AND not_after > now()`, here)
	var cmds []Command
	if err == nil {
		cmds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) { return scanCommand(r) })
	}
	var opened map[string]time.Time
	if err == nil {
		opened, err = c.openedDoors(ctx, cmds)
	}
	if err != nil {
		c.log.Warn("cluster: reading open commands failed (the sweep tries again)", "lockers", len(here), "error", err)
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		if !c.devices.Online(cmd.LockerID) {
			continue
		}
		if _, ok := c.finished[cmd.ID]; ok {
			continue // read before this node stored its end
		}
		e := c.entries[cmd.ID]
		switch {
		case e != nil && !e.remote:
			continue // driven here already
		case e != nil:
			e.remote, e.cmd = false, cmd // created here; the locker came here
		default:
			e = &cmdEntry{cmd: cmd, done: make(chan struct{})}
		}
		c.addLocked(e)
		c.cluster.m.adopted.Inc()
		if at, ok := opened[cmd.ID]; ok {
			e.cmd.ConfirmedAt = &at
			c.finishLocked(e, CommandSucceeded, nil, now)
			continue
		}
		if e.cmd.AnsweredAt == nil {
			c.sendLocked(e, now)
		}
	}
}

// settleRemote reads the commands another node drove and finishes the remote
// entries of those stored in a final state (their ?wait returns).
func (c *Commands) settleRemote(ctx context.Context, ids []string) {
	c.mu.Lock()
	var want []string
	for _, id := range ids {
		if e := c.entries[id]; e != nil && e.remote {
			want = append(want, id)
		}
	}
	c.mu.Unlock()
	if len(want) == 0 {
		return
	}
	rows, err := c.pool.Query(ctx, `SELECT `+cmdColumns+` FROM fleet_commands WHERE id = ANY($1)`, want)
	var cmds []Command
	if err == nil {
		cmds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) { return scanCommand(r) })
	}
	if err != nil {
		c.log.Warn("cluster: reading commands failed (the sweep tries again)", "commands", len(want), "error", err)
		return
	}
	found := map[string]bool{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		found[cmd.ID] = true
		e := c.entries[cmd.ID]
		if e == nil || !e.remote || !CommandFinal(cmd.State) {
			continue
		}
		e.cmd = cmd
		c.dropRemoteLocked(e)
	}
	for _, id := range want {
		if e := c.entries[id]; !found[id] && e != nil && e.remote {
			c.dropRemoteLocked(e) // deleted with its locker
		}
	}
}

func (c *Commands) dropRemoteLocked(e *cmdEntry) {
	delete(c.entries, e.cmd.ID)
	if !e.stored {
		e.stored = true
		close(e.done)
	}
	c.cluster.m.settled.Inc()
}

// clusterSweep is the backstop of lost notifications and stopped nodes: it
// settles remote entries, adopts the open commands of lockers connected here,
// and finishes open commands that nobody drove past their end.
func (c *Commands) clusterSweep(ctx context.Context) {
	c.mu.Lock()
	for id, at := range c.finished {
		if time.Since(at) > time.Minute {
			delete(c.finished, id)
		}
	}
	// A locker that moved to another node: that node drives its commands
	// from now on (it adopts them); here they wait as remote entries.
	for locker, m := range c.byLocker {
		if !c.devices.Online(locker) && c.registry.heldElsewhere(locker) {
			for _, e := range m {
				c.makeRemoteLocked(e)
			}
		}
	}
	var remote []string
	for id, e := range c.entries {
		if e.remote {
			remote = append(remote, id)
		}
	}
	c.mu.Unlock()
	if len(remote) > 0 {
		c.settleRemote(ctx, remote)
	}

	rows, err := c.pool.Query(ctx, `SELECT id, locker_id FROM fleet_commands WHERE state IN ('pending', 'sent') AND not_after > now()`)
	if err != nil {
		c.log.Warn("cluster: command sweep failed", "error", err)
		return
	}
	type open struct{ id, locker string }
	var opens []open
	var o open
	if _, err := pgx.ForEachRow(rows, []any{&o.id, &o.locker}, func() error { opens = append(opens, o); return nil }); err != nil {
		c.log.Warn("cluster: command sweep failed", "error", err)
		return
	}
	want := map[string]bool{}
	c.mu.Lock()
	for _, o := range opens {
		if e := c.entries[o.id]; (e == nil || e.remote) && !want[o.locker] && c.devices.Online(o.locker) {
			want[o.locker] = true
		}
	}
	c.mu.Unlock()
	if len(want) > 0 {
		lockers := make([]string, 0, len(want))
		for l := range want {
			lockers = append(lockers, l)
		}
		c.adopt(ctx, lockers)
	}

	// Orphans: never sent and past not_after, or sent and past the time
	// their driver would have given up, by far (orphanGrace).
	rows, err = c.pool.Query(ctx, `UPDATE fleet_commands SET finished_at = now(),
			state = CASE WHEN attempts = 0 THEN 'expired' ELSE 'unconfirmed' END,
			error_code = CASE WHEN attempts = 0 THEN $2 WHEN answered_at IS NULL THEN $3 ELSE $4 END,
			error_message = CASE WHEN attempts = 0 THEN 'not_after passed before the locker could be reached; never sent'
				WHEN answered_at IS NULL THEN 'sent, but the locker did not answer before not_after'
				ELSE 'the locker answered, but its door sensor did not report the door open in time' END
		WHERE state IN ('pending', 'sent') AND not_after + confirm_ms * interval '1 millisecond' + $1::interval < now()
		RETURNING id`, orphanGrace.String(), CmdErrNotSent, CmdErrNoAnswer, CmdErrDoorNotOpened)
	if err != nil {
		c.log.Warn("cluster: settling orphaned commands failed", "error", err)
		return
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.log.Warn("cluster: settling orphaned commands failed", "error", err)
		return
	}
	if len(ids) > 0 {
		c.log.Info("cluster: open commands settled after their driver stopped", "commands", len(ids))
		c.cluster.announce(clusterMsg{Done: ids})
		c.settleRemote(ctx, ids)
	}
}
