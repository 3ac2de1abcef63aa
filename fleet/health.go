package fleet

import (
	"context"
	"time"
)

// HealthCounts are health signals of a group of lockers over a time (for
// the OTA health gate, docs/ota.md).
type HealthCounts struct {
	Reconnects      int // sessions established
	CommandFailures int // commands failed or unconfirmed, not counting jammed locks
	Faults          int // doors forced open, tamper events, jammed locks
}

// Health counts the signals of the lockers since a time.
func (r *Registry) Health(ctx context.Context, lockerIDs []string, since time.Time) (HealthCounts, error) {
	var h HealthCounts
	err := r.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM fleet_connectivity WHERE locker_id = ANY($1) AND online AND at >= $2),
		(SELECT count(*) FROM fleet_commands WHERE locker_id = ANY($1) AND state IN ('failed', 'unconfirmed')
			AND finished_at >= $2 AND coalesce(error_code, '') <> 'jammed'),
		(SELECT count(*) FROM fleet_events WHERE locker_id = ANY($1) AND received_at >= $2
			AND (type IN ('door_forced', 'tamper') OR (type = 'door_opened' AND cause = '')))
		+ (SELECT count(*) FROM fleet_commands WHERE locker_id = ANY($1) AND finished_at >= $2 AND error_code = 'jammed')`,
		lockerIDs, since).Scan(&h.Reconnects, &h.CommandFailures, &h.Faults)
	return h, err
}

// Open counts the locker's commands in progress (pending or sent).
func (c *Commands) Open(lockerID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byLocker[lockerID])
}
