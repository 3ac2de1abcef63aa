package app

import (
	"context"
	"slices"

	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/telemetry"
)

// startAlarms loads the alarm rules and routing and runs the alarm sources
// (the event inbox filled in the ingest's transaction, the derived
// conditions read from the overview and twins, unconfirmed commands) and the
// notification groups, which send through the outbox.
func (a *App) startAlarms(ctx, runCtx context.Context) error {
	a.Alarms = alarms.New(a.Pool, alarmFleet{a.Overview, a.Twins, a.Telemetry}, a.log.With("component", "alarms"), a.Metrics, a.cfg.Alarms)
	if err := a.Alarms.Load(ctx); err != nil {
		return err
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.Alarms.Run(runCtx) }()
	return nil
}

// alarmFleet adapts the overview and twins to alarms.Fleet.
type alarmFleet struct {
	ov  *fleet.Overview
	tw  *fleet.Twins
	tel *telemetry.Ingest
}

func (f alarmFleet) Lockers() []alarms.Locker {
	rows := f.ov.Rows(fleet.RowFilter{})
	out := make([]alarms.Locker, 0, len(rows))
	for _, r := range rows {
		out = append(out, f.locker(r))
	}
	return out
}

func (f alarmFleet) Locker(id string) (alarms.Locker, bool) {
	r, ok := f.ov.Row(id)
	if !ok {
		return alarms.Locker{}, false
	}
	return f.locker(r), true
}

func (f alarmFleet) locker(r fleet.Row) alarms.Locker {
	l := alarms.Locker{ID: r.ID, Model: r.Model, Segments: r.Segments, Carriers: r.Carriers, Enabled: r.Enabled,
		Presence: r.Presence, Cells: r.Cells}
	if r.Since != nil {
		l.Since = *r.Since
	}
	for _, n := range r.FreeCells {
		l.FreeCells += n
	}
	if s, ok := f.tel.Latest(r.ID); ok {
		l.Metrics = s.M
	}
	if d, ok := f.tw.ClockOffset(r.ID); ok {
		v := d.Seconds()
		l.ClockOffset = &v
	}
	if t := f.tw.Get(r.ID); t != nil {
		// A twin exists from the connect on; the locker has reported its
		// state once its cells are in it (until then it has no free cells
		// in the hub's eyes, which is no free_cells_low alarm).
		l.Reported = len(t.Reported.Cells) > 0
		l.Mains, l.BatteryV = t.Reported.Mains, t.Reported.BatteryV
		for name, c := range t.Reported.Cells {
			if c.Door == protocol.DoorOpen {
				l.OpenDoors = append(l.OpenDoors, name)
			}
			if c.Lock == protocol.LockJammed {
				l.JammedCells = append(l.JammedCells, name)
			}
		}
		slices.Sort(l.OpenDoors)
		slices.Sort(l.JammedCells)
	}
	return l
}
