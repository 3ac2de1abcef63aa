package fleet

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// Presence values of a Row.
const (
	PresenceOnline  = "online"
	PresenceOffline = "offline"
	// PresenceUnknown: not connected yet since the hub started, within the
	// reconnect window; not counted offline (DESIGN decision 4).
	PresenceUnknown = "unknown"
)

// ReconnectWindow is how long after a start a locker that is not back yet
// counts as unknown rather than offline: lockersim's backoff cap.
const ReconnectWindow = 30 * time.Second

// Row is one locker in the fleet overview: what it is and the gist of its twin.
type Row struct {
	ID        string         `json:"id"`
	Model     string         `json:"model"`
	Address   string         `json:"address"`
	Segments  []string       `json:"segments"`
	Carriers  []string       `json:"carriers"` // every carrier that may use it (Locker.CarrierAccess)
	Enabled   bool           `json:"enabled"`
	Online    bool           `json:"online"`
	Presence  string         `json:"presence"`
	Since     *time.Time     `json:"since,omitempty"` // of the current presence
	OpenDoors int            `json:"open_doors"`
	OnBattery bool           `json:"on_battery"`
	FreeCells map[string]int `json:"free_cells"`
	// HeldForReturns counts, by size, the cells held for returns that are
	// empty, closed and not jammed: not in FreeCells, ready for a return.
	HeldForReturns map[string]int `json:"held_for_returns,omitempty"`
	Cells          int            `json:"cells"`
	Firmware       string         `json:"firmware,omitempty"`
	Version        int64          `json:"version"`
	Deleted        bool           `json:"deleted,omitempty"` // in a delta: the locker is gone
}

// RowFilter selects rows; empty fields match everything.
type RowFilter struct {
	Segment string `json:"segment,omitempty"`
	Model   string `json:"model,omitempty"`
	Carrier string `json:"carrier,omitempty"`
	Status  string `json:"status,omitempty"` // online, offline, unknown
	Query   string `json:"q,omitempty"`      // substring of ID or address, any case
}

// Match reports whether a row passes the filter.
func (f RowFilter) Match(r Row) bool {
	switch {
	case r.Deleted:
		return false
	case f.Segment != "" && !slices.Contains(r.Segments, f.Segment):
		return false
	case f.Carrier != "" && !slices.Contains(r.Carriers, f.Carrier):
		return false
	case f.Model != "" && r.Model != f.Model:
		return false
	case f.Status != "" && r.Presence != f.Status:
		return false
	}
	if q := strings.ToLower(strings.TrimSpace(f.Query)); q != "" {
		return strings.Contains(strings.ToLower(r.ID), q) || strings.Contains(strings.ToLower(r.Address), q)
	}
	return true
}

// Summary aggregates the rows of a filter.
type Summary struct {
	Lockers   int            `json:"lockers"`
	Online    int            `json:"online"`
	Offline   int            `json:"offline"`
	Unknown   int            `json:"unknown"`
	OnBattery int            `json:"on_battery"`
	OpenDoors int            `json:"open_doors"`
	FreeCells map[string]int `json:"free_cells"`
	// HeldForReturns: as in Row, summed.
	HeldForReturns map[string]int `json:"held_for_returns"`
}

// Overview keeps a Row for every locker, current with the registry, presence
// and the twins, for the fleet pages and the live stream. Subscribers hear of
// every changed row on the goroutine that changed it: they must not block.
type Overview struct {
	reg   *Registry
	twins *Twins
	log   *slog.Logger
	start time.Time

	mu      sync.RWMutex
	lockers map[string]Locker
	layout  map[string]map[string]Cell // locker → cell name → cell (size, hold)
	online  map[string]bool
	seen    map[string]bool // connected at least once since the start
	since   map[string]time.Time
	rows    map[string]Row
	total   Summary // of every row, kept as rows change: Summary(RowFilter{}) without a scan
	subs    map[int]func(Row)
	nextSub int
	// taken are cells another component holds (a parcel's reserved cell):
	// not free for loading whatever the twin says (see SetTaken).
	taken map[string]map[string]bool

	settled atomic.Bool // the reconnect window has passed and no row is unknown any more
}

// NewOverview returns an overview; Load it before use.
func NewOverview(reg *Registry, twins *Twins, log *slog.Logger) *Overview {
	o := &Overview{reg: reg, twins: twins, log: log, start: time.Now(),
		lockers: map[string]Locker{}, layout: map[string]map[string]Cell{}, online: map[string]bool{}, seen: map[string]bool{}, since: map[string]time.Time{},
		rows: map[string]Row{}, total: emptySummary(), subs: map[int]func(Row){}, taken: map[string]map[string]bool{}}
	reg.OnChange(o.registryChanged)
	twins.Observe(func(t *Twin, _ TwinChange) { o.update(t.LockerID) })
	twins.ObserveFollowed(func(t *Twin, _ TwinChange) { o.update(t.LockerID) })
	return o
}

// Load reads every locker and its cells.
func (o *Overview) Load(ctx context.Context) error {
	ls, _, err := o.reg.List(ctx, LockerFilter{})
	if err != nil {
		return err
	}
	cells, err := o.reg.AllCells(ctx)
	if err != nil {
		return err
	}
	o.mu.Lock()
	for _, l := range ls {
		o.lockers[l.ID] = l
		o.layout[l.ID] = cellMap(cells[l.ID])
		o.online[l.ID] = o.reg.Online(l.ID)
		o.seen[l.ID] = o.online[l.ID]
		if at := l.DisconnectedAt; at != nil && !o.online[l.ID] {
			o.since[l.ID] = *at
		} else if at := l.ConnectedAt; at != nil && o.online[l.ID] {
			o.since[l.ID] = *at
		}
	}
	o.mu.Unlock()
	for _, l := range ls {
		o.update(l.ID)
	}
	return nil
}

func cellMap(cells []Cell) map[string]Cell {
	m := make(map[string]Cell, len(cells))
	for _, c := range cells {
		m[c.Name] = c
	}
	return m
}

func (o *Overview) registryChanged(c Change) {
	if c.Entity != EntityLocker {
		return
	}
	if c.Action == ActionDelete {
		o.mu.Lock()
		delete(o.lockers, c.ID)
		delete(o.layout, c.ID)
		if old, ok := o.rows[c.ID]; ok {
			o.total.count(old, -1)
		}
		delete(o.rows, c.ID)
		o.mu.Unlock()
		o.publish(Row{ID: c.ID, Deleted: true})
		return
	}
	l, ok := c.After.(Locker)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cells, err := o.reg.Cells(ctx, l.ID)
	if err != nil {
		o.log.Warn("overview: reading cells failed", "locker", l.ID, "error", err)
	}
	o.mu.Lock()
	o.lockers[l.ID] = l
	if err == nil {
		o.layout[l.ID] = cellMap(cells)
	}
	o.mu.Unlock()
	o.update(l.ID)
}

// HasCell reports whether a locker's layout has the cell (true while the
// layout is not known, so nothing is lost to a registry still loading).
func (o *Overview) HasCell(lockerID, cell string) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	cells, ok := o.layout[lockerID]
	if !ok || len(cells) == 0 {
		return true
	}
	_, has := cells[cell]
	return has
}

// SetTaken replaces the set of a locker's cells that another component
// holds (parcels: the cells of open parcels); they stop counting as free.
func (o *Overview) SetTaken(lockerID string, cells []string) {
	o.mu.Lock()
	if len(cells) == 0 {
		delete(o.taken, lockerID)
	} else {
		m := make(map[string]bool, len(cells))
		for _, c := range cells {
			m[c] = true
		}
		o.taken[lockerID] = m
	}
	o.mu.Unlock()
	o.update(lockerID)
}

// FreeCellNames lists a locker's cells of a size that are free for loading
// (closed, reported empty, not jammed, in the layout, not held, not taken),
// in name order; ok is false for a locker the overview does not know.
func (o *Overview) FreeCellNames(lockerID, size string) (names []string, ok bool) {
	return o.cellNames(lockerID, size, "")
}

// HeldCellNames is FreeCellNames for the cells held for a purpose
// (HoldReturns): closed, reported empty, not jammed and not taken by a
// parcel, in name order.
func (o *Overview) HeldCellNames(lockerID, size, hold string) (names []string, ok bool) {
	return o.cellNames(lockerID, size, hold)
}

func (o *Overview) cellNames(lockerID, size, hold string) (names []string, ok bool) {
	tw := o.twins.Get(lockerID)
	o.mu.RLock()
	defer o.mu.RUnlock()
	if _, ok := o.lockers[lockerID]; !ok {
		return nil, false
	}
	if tw == nil {
		return nil, true
	}
	layout := o.layout[lockerID]
	for name, c := range tw.Reported.Cells {
		lc, known := layout[name]
		if !known || lc.Size != size || lc.Hold != hold || o.taken[lockerID][name] ||
			c.Occupied == nil || *c.Occupied || c.Door == protocol.DoorOpen || c.Lock == protocol.LockJammed {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, true
}

// SetOnline records a presence change (the app calls it with the registry's).
func (o *Overview) SetOnline(lockerID string, online bool) {
	o.mu.Lock()
	o.online[lockerID] = online
	o.seen[lockerID] = o.seen[lockerID] || online
	o.since[lockerID] = time.Now()
	o.mu.Unlock()
	o.update(lockerID)
}

// update recomputes a locker's row and tells the subscribers.
func (o *Overview) update(id string) {
	tw := o.twins.Get(id)
	o.mu.Lock()
	l, ok := o.lockers[id]
	if !ok {
		o.mu.Unlock()
		return
	}
	r := Row{ID: id, Model: l.Model, Address: l.Address, Segments: l.Segments, Carriers: l.CarrierAccess, Enabled: l.Enabled,
		Online: o.online[id], FreeCells: map[string]int{}, Cells: l.Cells}
	if at, ok := o.since[id]; ok {
		r.Since = &at
	}
	switch {
	case r.Online:
		r.Presence = PresenceOnline
	case !o.seen[id] && time.Since(o.start) < ReconnectWindow:
		r.Presence = PresenceUnknown
	default:
		r.Presence = PresenceOffline
	}
	if tw != nil {
		layout := o.layout[id]
		for name, c := range tw.Reported.Cells {
			if c.Door == protocol.DoorOpen {
				r.OpenDoors++
			}
			lc, known := layout[name]
			if !known || c.Occupied == nil || *c.Occupied || c.Door == protocol.DoorOpen || c.Lock == protocol.LockJammed {
				continue
			}
			switch {
			case o.taken[id][name]:
				// held by a parcel: not free, not ready for returns
			case lc.Hold == "":
				r.FreeCells[lc.Size]++
			case lc.Hold == HoldReturns:
				if r.HeldForReturns == nil {
					r.HeldForReturns = map[string]int{}
				}
				r.HeldForReturns[lc.Size]++
			}
		}
		r.OnBattery = tw.Reported.Mains != nil && !*tw.Reported.Mains
		r.Firmware = tw.Reported.Firmware
		r.Version = tw.Version
	}
	if old, ok := o.rows[id]; ok {
		o.total.count(old, -1)
	}
	o.rows[id] = r
	o.total.count(r, 1)
	// Told under the lock, so two updates of one locker reach subscribers in
	// the order they were made (subscribers must not block nor call back).
	for _, fn := range o.subs {
		fn(r)
	}
	o.mu.Unlock()
}

func (o *Overview) publish(r Row) {
	o.mu.RLock()
	subs := make([]func(Row), 0, len(o.subs))
	for _, fn := range o.subs {
		subs = append(subs, fn)
	}
	o.mu.RUnlock()
	for _, fn := range subs {
		fn(r)
	}
}

// Row returns one locker's row.
func (o *Overview) Row(id string) (Row, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	r, ok := o.rows[id]
	return r, ok
}

// Subscribe calls fn with every changed row until cancel is called. fn runs
// under the overview's lock: it must only record the row and return.
func (o *Overview) Subscribe(fn func(Row)) (cancel func()) {
	o.mu.Lock()
	id := o.nextSub
	o.nextSub++
	o.subs[id] = fn
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		delete(o.subs, id)
		o.mu.Unlock()
	}
}

// Rows returns the rows passing f, ordered by locker ID. Presence "unknown"
// turns into "offline" once the reconnect window has passed.
func (o *Overview) Rows(f RowFilter) []Row {
	o.refreshUnknown()
	o.mu.RLock()
	out := make([]Row, 0, len(o.rows))
	for _, r := range o.rows {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	o.mu.RUnlock()
	slices.SortFunc(out, func(a, b Row) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Summary aggregates the rows passing f. The whole fleet's (an empty
// filter) is kept up to date as rows change, so the live stream can send it
// with every delta; a filter scans every row.
func (o *Overview) Summary(f RowFilter) Summary {
	o.refreshUnknown()
	o.mu.RLock()
	defer o.mu.RUnlock()
	if f == (RowFilter{}) {
		s := o.total
		s.FreeCells = maps.Clone(o.total.FreeCells)
		s.HeldForReturns = maps.Clone(o.total.HeldForReturns)
		// A size no row has any more: as a scan would have it.
		gone := func(size string, n int) bool { return n == 0 && !slices.Contains(Sizes, size) }
		maps.DeleteFunc(s.FreeCells, gone)
		maps.DeleteFunc(s.HeldForReturns, gone)
		return s
	}
	s := emptySummary()
	for _, r := range o.rows {
		if f.Match(r) {
			s.count(r, 1)
		}
	}
	return s
}

func emptySummary() Summary {
	s := Summary{FreeCells: map[string]int{}, HeldForReturns: map[string]int{}}
	for _, size := range Sizes {
		s.FreeCells[size] = 0
		s.HeldForReturns[size] = 0
	}
	return s
}

// count adds a row to the summary (sign 1) or takes it out (sign -1).
func (s *Summary) count(r Row, sign int) {
	s.Lockers += sign
	switch r.Presence {
	case PresenceOnline:
		s.Online += sign
	case PresenceOffline:
		s.Offline += sign
	default:
		s.Unknown += sign
	}
	if r.OnBattery {
		s.OnBattery += sign
	}
	s.OpenDoors += sign * r.OpenDoors
	for size, n := range r.FreeCells {
		s.FreeCells[size] += sign * n
	}
	for size, n := range r.HeldForReturns {
		s.HeldForReturns[size] += sign * n
	}
}

// refreshUnknown moves lockers from unknown to offline once the window after
// the start has passed. One pass after the window is enough: update never
// makes a row unknown after it (it decides under the same lock the pass
// reads under), so later calls return at once.
func (o *Overview) refreshUnknown() {
	if o.settled.Load() || time.Since(o.start) < ReconnectWindow {
		return
	}
	o.mu.RLock()
	var stale []string
	for id, r := range o.rows {
		if r.Presence == PresenceUnknown {
			stale = append(stale, id)
		}
	}
	o.mu.RUnlock()
	for _, id := range stale {
		o.update(id)
	}
	o.settled.Store(true)
}

// Run turns the lockers that did not come back within the reconnect window
// from unknown to offline, then returns (or when ctx ends first).
func (o *Overview) Run(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(o.start.Add(ReconnectWindow)) + 100*time.Millisecond):
		o.refreshUnknown()
	}
}
