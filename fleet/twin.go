package fleet

import (
	"encoding/json"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// Stamp orders a locker's reports: (boot, seq). A report older than the stamp
// of a field does not change that field (DESIGN decision 12).
type Stamp struct {
	Boot uint32 `json:"b"`
	Seq  uint64 `json:"s"`
}

func stampOf(h protocol.Header) Stamp { return Stamp{Boot: h.Boot, Seq: h.Seq} }

// newer reports whether s is strictly after o.
func (s Stamp) newer(o Stamp) bool {
	if s.Boot != o.Boot {
		return s.Boot > o.Boot
	}
	return s.Seq > o.Seq
}

// CellState is the reported state of one cell, each field with its stamp.
type CellState struct {
	Door       string `json:"door,omitempty"`
	DoorAt     Stamp  `json:"door_at"`
	Lock       string `json:"lock,omitempty"`
	LockAt     Stamp  `json:"lock_at"`
	Occupied   *bool  `json:"occupied,omitempty"`
	OccupiedAt Stamp  `json:"occupied_at"`
}

// Reported is the state a locker reported, field by field.
type Reported struct {
	Cells            map[string]*CellState `json:"cells"`
	Mains            *bool                 `json:"mains,omitempty"`
	MainsAt          Stamp                 `json:"mains_at"`
	BatteryV         *float64              `json:"battery_v,omitempty"`
	BatteryAt        Stamp                 `json:"battery_at"`
	Firmware         string                `json:"firmware,omitempty"`
	FirmwareAt       Stamp                 `json:"firmware_at"`
	DesiredVersion   int64                 `json:"desired_version"`
	DesiredVersionAt Stamp                 `json:"desired_version_at"`
	UpdatedAt        time.Time             `json:"updated_at"`
}

// Twin is the hub's picture of one locker. A *Twin handed out is never
// changed: a change makes a new one.
type Twin struct {
	LockerID       string
	Version        int64
	Reported       Reported
	Desired        json.RawMessage
	DesiredVersion int64
}

func (t *Twin) clone() *Twin {
	c := *t
	c.Reported.Cells = make(map[string]*CellState, len(t.Reported.Cells))
	for k, v := range t.Reported.Cells {
		cc := *v
		c.Reported.Cells[k] = &cc
	}
	return &c
}

func (r *Reported) cell(name string) *CellState {
	if r.Cells == nil {
		r.Cells = map[string]*CellState{}
	}
	c := r.Cells[name]
	if c == nil {
		c = &CellState{}
		r.Cells[name] = c
	}
	return c
}

// TwinChange lists what a report changed, in the public shape (no stamps).
type TwinChange struct {
	Cells          map[string]map[string]any `json:"cells,omitempty"`
	Power          map[string]any            `json:"power,omitempty"`
	Firmware       *string                   `json:"firmware,omitempty"`
	DesiredVersion *int64                    `json:"desired_version,omitempty"`
}

func (c *TwinChange) empty() bool {
	return len(c.Cells) == 0 && len(c.Power) == 0 && c.Firmware == nil && c.DesiredVersion == nil
}

func (c *TwinChange) cell(name, field string, v any) {
	if c.Cells == nil {
		c.Cells = map[string]map[string]any{}
	}
	if c.Cells[name] == nil {
		c.Cells[name] = map[string]any{}
	}
	c.Cells[name][field] = v
}

func (c *TwinChange) power(field string, v any) {
	if c.Power == nil {
		c.Power = map[string]any{}
	}
	c.Power[field] = v
}

// applyState merges a full or partial state report, field by field: a field
// changes only when the report is newer than what set it last.
func (t *Twin) applyState(s protocol.State, ch *TwinChange) {
	at := stampOf(s.Header)
	r := &t.Reported
	for name, cs := range s.Cells {
		c := r.cell(name)
		if cs.Door != "" && at.newer(c.DoorAt) {
			c.DoorAt = at
			if c.Door != cs.Door {
				c.Door = cs.Door
				ch.cell(name, "door", cs.Door)
			}
		}
		if cs.Lock != "" && at.newer(c.LockAt) {
			c.LockAt = at
			if c.Lock != cs.Lock {
				c.Lock = cs.Lock
				ch.cell(name, "lock", cs.Lock)
			}
		}
		if cs.Occupied != nil && at.newer(c.OccupiedAt) {
			c.OccupiedAt = at
			if c.Occupied == nil || *c.Occupied != *cs.Occupied {
				v := *cs.Occupied
				c.Occupied = &v
				ch.cell(name, "occupied", v)
			}
		}
	}
	if p := s.Power; p != nil {
		if p.Mains != nil && at.newer(r.MainsAt) {
			r.MainsAt = at
			if r.Mains == nil || *r.Mains != *p.Mains {
				v := *p.Mains
				r.Mains = &v
				ch.power("mains", v)
			}
		}
		if p.BatteryV != nil && at.newer(r.BatteryAt) {
			r.BatteryAt = at
			if r.BatteryV == nil || *r.BatteryV != *p.BatteryV {
				v := *p.BatteryV
				r.BatteryV = &v
				ch.power("battery_v", v)
			}
		}
	}
	if s.Firmware != "" && at.newer(r.FirmwareAt) {
		r.FirmwareAt = at
		if r.Firmware != s.Firmware {
			r.Firmware = s.Firmware
			v := s.Firmware
			ch.Firmware = &v
		}
	}
	if s.DesiredVersion != nil && at.newer(r.DesiredVersionAt) {
		r.DesiredVersionAt = at
		if r.DesiredVersion != *s.DesiredVersion {
			r.DesiredVersion = *s.DesiredVersion
			v := *s.DesiredVersion
			ch.DesiredVersion = &v
		}
	}
}

// applyEvent lets door and power events move the twin, as a state report of
// the same stamp would.
func (t *Twin) applyEvent(e protocol.Event, ch *TwinChange) {
	s := protocol.State{Header: e.Header}
	yes, no := true, false
	switch e.Type {
	case protocol.EventDoorOpened, protocol.EventDoorForced:
		if e.Cell != "" {
			s.Cells = map[string]protocol.CellState{e.Cell: {Door: protocol.DoorOpen}}
		}
	case protocol.EventDoorClosed:
		if e.Cell != "" {
			s.Cells = map[string]protocol.CellState{e.Cell: {Door: protocol.DoorClosed}}
		}
	case protocol.EventPowerLost:
		s.Power = &protocol.Power{Mains: &no}
	case protocol.EventPowerRestore:
		s.Power = &protocol.Power{Mains: &yes}
	default:
		return
	}
	t.applyState(s, ch)
}

// TwinView is the twin as the API shows it.
type TwinView struct {
	LockerID     string         `json:"locker_id"`
	Version      int64          `json:"version"`
	Reported     ReportedView   `json:"reported"`
	Connectivity Connectivity   `json:"connectivity"`
	Desired      DesiredView    `json:"desired"`
	Delta        map[string]any `json:"delta"`
	// Telemetry is the locker's last telemetry sample (the current twin
	// only; not versioned: samples arrive every minute and have a history of
	// their own in the telemetry API).
	Telemetry *TelemetrySummary `json:"telemetry,omitempty"`
}

// TelemetrySummary is a locker's last telemetry sample as the twin shows it.
type TelemetrySummary struct {
	TS       time.Time          `json:"ts"`       // the locker's clock
	Received time.Time          `json:"received"` // the hub's clock
	M        map[string]float64 `json:"m"`
}

// ReportedView is the reported state without stamps.
type ReportedView struct {
	Cells          map[string]CellView `json:"cells"`
	Power          PowerView           `json:"power"`
	Firmware       string              `json:"firmware,omitempty"`
	DesiredVersion int64               `json:"desired_version"`
	UpdatedAt      *time.Time          `json:"updated_at,omitempty"`
}

// CellView is one cell as the API shows it.
type CellView struct {
	Door     string `json:"door,omitempty"`
	Lock     string `json:"lock,omitempty"`
	Occupied *bool  `json:"occupied,omitempty"`
	Size     string `json:"size,omitempty"`
}

// PowerView is the power state as the API shows it.
type PowerView struct {
	Mains    *bool    `json:"mains,omitempty"`
	BatteryV *float64 `json:"battery_v,omitempty"`
}

// Connectivity says whether the locker is connected and since when.
type Connectivity struct {
	Online bool       `json:"online"`
	Since  *time.Time `json:"since,omitempty"`
	// ClockOffsetMs is the hub's estimate of the locker's clock offset in
	// milliseconds (positive: ahead), from its messages of the last ten
	// minutes; absent without any (DESIGN decision 15).
	ClockOffsetMs *int64 `json:"clock_offset_ms,omitempty"`
}

// DesiredView is the desired configuration and its version.
type DesiredView struct {
	Version int64           `json:"version"`
	Config  json.RawMessage `json:"config"`
}

// View renders the twin for the API.
func (t *Twin) View() TwinView {
	v := TwinView{LockerID: t.LockerID, Version: t.Version, Delta: map[string]any{}}
	v.Reported.Cells = make(map[string]CellView, len(t.Reported.Cells))
	for name, c := range t.Reported.Cells {
		v.Reported.Cells[name] = CellView{Door: c.Door, Lock: c.Lock, Occupied: c.Occupied}
	}
	v.Reported.Power = PowerView{Mains: t.Reported.Mains, BatteryV: t.Reported.BatteryV}
	v.Reported.Firmware = t.Reported.Firmware
	v.Reported.DesiredVersion = t.Reported.DesiredVersion
	if !t.Reported.UpdatedAt.IsZero() {
		u := t.Reported.UpdatedAt
		v.Reported.UpdatedAt = &u
	}
	v.Desired = DesiredView{Version: t.DesiredVersion, Config: t.Desired}
	if len(v.Desired.Config) == 0 {
		v.Desired.Config = json.RawMessage(`{}`)
	}
	if t.DesiredVersion > t.Reported.DesiredVersion {
		v.Delta["desired_version"] = map[string]int64{"desired": t.DesiredVersion, "reported": t.Reported.DesiredVersion}
	}
	return v
}
