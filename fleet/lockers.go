package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zones also where the system has none (the FROM scratch image)
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Limits of a locker's description.
const (
	MaxAddress  = 300 // characters
	MaxNames    = 32  // segments, carriers
	MaxNameLen  = 64  // characters of a segment or carrier name
	MaxPageSize = 10000
)

// Locker is a registered locker.
type Locker struct {
	ID       string   `json:"id"`
	Model    string   `json:"model"` // "" when none
	Cells    int      `json:"cells"`
	Address  string   `json:"address"`
	TimeZone string   `json:"time_zone"` // IANA name; "" when not set
	Lat      *float64 `json:"lat,omitempty"`
	Lon      *float64 `json:"lon,omitempty"`
	Segments []string `json:"segments"`
	Carriers []string `json:"carriers"`
	// CarrierAccess is every carrier that may use the locker: its own
	// Carriers, the carriers of its segments and those with a quota here.
	CarrierAccess  []string   `json:"carrier_access"`
	Enabled        bool       `json:"enabled"`
	Online         bool       `json:"online"`
	ConnectedAt    *time.Time `json:"connected_at,omitempty"`
	DisconnectedAt *time.Time `json:"disconnected_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// NewLocker is what it takes to register a locker. With a model whose layout
// is known, Cells may be left out (or must match it); without one, the locker
// gets Cells cells in columns of 10 of size M.
type NewLocker struct {
	ID       string   `json:"id"`
	Model    string   `json:"model"`
	Cells    int      `json:"cells"`
	Address  string   `json:"address"`
	TimeZone string   `json:"time_zone"`
	Lat      *float64 `json:"lat"`
	Lon      *float64 `json:"lon"`
	Segments []string `json:"segments"`
	Carriers []string `json:"carriers"`
	// Segment is a shorthand for Segments: [Segment] (older clients send it).
	Segment string `json:"segment,omitempty"`
}

// Validate checks a new locker and says what is wrong.
func (n NewLocker) Validate() error {
	_, err := n.normalize()
	return err
}

// normalize validates everything that needs no database and returns the
// locker with trimmed text, Segment folded into Segments and names deduplicated.
func (n NewLocker) normalize() (NewLocker, error) {
	if err := protocol.ValidateLockerID(n.ID); err != nil {
		return n, invalid("id", "%v", err)
	}
	if len(n.Model) > 100 { // the database says whether it exists
		return n, invalid("model", "unknown model %q", n.Model)
	}
	if n.Cells < 0 || n.Cells > MaxCells || (n.Cells == 0 && n.Model == "") {
		return n, invalid("cells", "must be between 1 and %d, got %d", MaxCells, n.Cells)
	}
	var err error
	if n.Address, err = text("address", n.Address, MaxAddress, false); err != nil {
		return n, err
	}
	if n.TimeZone, err = validTimeZone(n.TimeZone); err != nil {
		return n, err
	}
	if err := validCoordinates(n.Lat, n.Lon); err != nil {
		return n, err
	}
	if n.Segment != "" {
		if len(n.Segments) > 0 {
			return n, invalid("segment", "give segment or segments, not both")
		}
		n.Segments, n.Segment = []string{n.Segment}, ""
	}
	if n.Segments, err = names("segments", n.Segments); err != nil {
		return n, err
	}
	if n.Carriers, err = names("carriers", n.Carriers); err != nil {
		return n, err
	}
	return n, nil
}

// text trims s and checks its length in characters and that it holds no
// control characters.
func text(field, s string, max int, required bool) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case required && s == "":
		return s, invalid(field, "required")
	case !utf8.ValidString(s):
		return s, invalid(field, "not valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return s, invalid(field, "at most %d characters, got %d", max, utf8.RuneCountInString(s))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return s, invalid(field, "control characters (newlines, tabs) are not allowed")
	}
	return s, nil
}

// names checks a list of segment or carrier names and returns it trimmed,
// without duplicates, in the order given. A name may not hold ',' or '|'
// (the separators of hubctl and of the CSV import).
func names(field string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s, err := text(field, s, MaxNameLen, true)
		if err != nil {
			return nil, invalid(field, "name %q: %s", s, err.(*FieldError).Msg)
		}
		if strings.ContainsAny(s, ",|") {
			return nil, invalid(field, "name %q: ',' and '|' are not allowed in a name", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) > MaxNames {
		return nil, invalid(field, "at most %d names, got %d", MaxNames, len(out))
	}
	return out, nil
}

var timeZones sync.Map // name → true: names time.LoadLocation accepted

// validTimeZone checks an IANA time zone name with time.LoadLocation; "" means
// not set.
func validTimeZone(tz string) (string, error) {
	tz = strings.TrimSpace(tz)
	if tz == "" {
		return "", nil
	}
	if _, ok := timeZones.Load(tz); ok {
		return tz, nil
	}
	if tz == "Local" || len(tz) > 64 {
		return tz, invalid("time_zone", "%q is not an IANA time zone name such as Europe/Berlin", tz)
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return tz, invalid("time_zone", "%q is not an IANA time zone name such as Europe/Berlin", tz)
	}
	timeZones.Store(tz, true)
	return tz, nil
}

func validCoordinates(lat, lon *float64) error {
	if (lat == nil) != (lon == nil) {
		if lat == nil {
			return invalid("lat", "give lat and lon together")
		}
		return invalid("lon", "give lat and lon together")
	}
	if lat == nil {
		return nil
	}
	if math.IsNaN(*lat) || *lat < -90 || *lat > 90 {
		return invalid("lat", "must be between -90 and 90, got %v", *lat)
	}
	if math.IsNaN(*lon) || *lon < -180 || *lon > 180 {
		return invalid("lon", "must be between -180 and 180, got %v", *lon)
	}
	return nil
}

const lockerColumns = `id, COALESCE(model, ''), cells, address, time_zone, lat, lon, segments, carriers,
	fleet_carrier_access(id, carriers, segments), enabled, connected_at, disconnected_at, created_at, updated_at`

func lockerFields(l *Locker) []any {
	return []any{&l.ID, &l.Model, &l.Cells, &l.Address, &l.TimeZone, &l.Lat, &l.Lon, &l.Segments, &l.Carriers,
		&l.CarrierAccess, &l.Enabled, &l.ConnectedAt, &l.DisconnectedAt, &l.CreatedAt, &l.UpdatedAt}
}

// fix makes the lists non-nil (JSON [] rather than null) and sets Online.
func (r *Registry) fix(l *Locker) {
	if l.Segments == nil {
		l.Segments = []string{}
	}
	if l.Carriers == nil {
		l.Carriers = []string{}
	}
	if l.CarrierAccess == nil {
		l.CarrierAccess = []string{}
	}
	l.Online = r.Online(l.ID)
}

// modelLayouts resolves model IDs to their layouts inside a transaction,
// locking the models against a change of layout until it ends.
type modelLayouts struct {
	tx      pgx.Tx
	layouts map[string][]Cell
}

func (m *modelLayouts) get(ctx context.Context, id string) ([]Cell, error) {
	if l, ok := m.layouts[id]; ok {
		return l, nil
	}
	var layout []Cell
	err := m.tx.QueryRow(ctx, `SELECT layout FROM fleet_models WHERE id = $1 FOR SHARE`, id).Scan(&layout)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, invalid("model", "unknown model %q (add it with POST /api/v1/models)", id)
	}
	if err != nil {
		return nil, err
	}
	if m.layouts == nil {
		m.layouts = map[string][]Cell{}
	}
	m.layouts[id] = layout
	return layout, nil
}

// layout is the cells a locker gets: its model's layout when the model has
// one (cells, if given, must match it), else cells in columns of 10.
func (m *modelLayouts) layout(ctx context.Context, model string, cells int) ([]Cell, error) {
	if model != "" {
		layout, err := m.get(ctx, model)
		if err != nil {
			return nil, err
		}
		if len(layout) > 0 {
			if cells != 0 && cells != len(layout) {
				return nil, invalid("cells", "model %s has %d cells, not %d (leave cells out to take the model's)", model, len(layout), cells)
			}
			return layout, nil
		}
	}
	if cells < 1 || cells > MaxCells {
		return nil, invalid("cells", "must be between 1 and %d, got %d (model %q has no layout)", MaxCells, cells, model)
	}
	return DefaultLayout(cells), nil
}

// Create registers a locker with its cells.
func (r *Registry) Create(ctx context.Context, n NewLocker) (Locker, Change, error) {
	n, err := n.normalize()
	if err != nil {
		return Locker{}, Change{}, err
	}
	var l Locker
	err = pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		m := &modelLayouts{tx: tx}
		cells, err := m.layout(ctx, n.Model, n.Cells)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO fleet_lockers (id, model, cells, address, time_zone, lat, lon, segments, carriers)
			VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8, $9) RETURNING `+lockerColumns,
			n.ID, n.Model, len(cells), n.Address, n.TimeZone, n.Lat, n.Lon, n.Segments, n.Carriers).Scan(lockerFields(&l)...)
		if pg.IsUniqueViolation(err) {
			return fmt.Errorf("%w: locker %s", ErrExists, n.ID)
		}
		if err != nil {
			return err
		}
		if err := copyCells(ctx, tx, map[string][]Cell{n.ID: cells}, []string{n.ID}); err != nil {
			return err
		}
		if err := registerCarriers(ctx, tx, n.Carriers); err != nil {
			return err
		}
		r.fix(&l)
		return audit.Record(ctx, tx, audit.Entry{Action: ActionCreate, ObjectType: EntityLocker, ObjectID: l.ID, After: l})
	})
	if err != nil {
		return Locker{}, Change{}, wrapUnlessDomain("create locker", err)
	}
	r.mu.Lock()
	r.lockers[n.ID] = &entry{enabled: true}
	r.mu.Unlock()
	c := Change{Entity: EntityLocker, ID: l.ID, Action: ActionCreate, After: l}
	r.notify(c)
	return l, c, nil
}

// LockerFilter selects lockers for List. Empty fields select everything.
type LockerFilter struct {
	Segment string // lockers in this segment
	Model   string // of this model
	Carrier string // that this carrier may use
	Status  string // "online" or "offline" (the hub's live knowledge)
	Query   string // case-insensitive substring of the ID or the address
	Limit   int    // at most this many (0: all)
	Offset  int    // skip this many, in ID order
}

// Status values of LockerFilter.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// List returns the lockers matching f ordered by ID, and how many match in
// all (without Limit and Offset).
func (r *Registry) List(ctx context.Context, f LockerFilter) ([]Locker, int, error) {
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, 0, invalid("limit", "must be between 1 and %d, got %d", MaxPageSize, f.Limit)
	}
	if f.Offset < 0 {
		return nil, 0, invalid("offset", "must not be negative, got %d", f.Offset)
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Segment != "" {
		add(`segments @> ARRAY[$?::text]`, f.Segment)
	}
	if f.Carrier != "" {
		add(carrierAccessSQL("$?"), f.Carrier)
	}
	if f.Model != "" {
		add(`model = $?`, f.Model)
	}
	if q := strings.TrimSpace(f.Query); q != "" {
		add(`(id ILIKE $? OR address ILIKE $?)`, "%"+escapeLike(q)+"%")
	}
	switch f.Status {
	case "":
	case StatusOnline:
		add(`id = ANY($?)`, r.onlineIDs())
	case StatusOffline:
		add(`NOT (id = ANY($?))`, r.onlineIDs())
	default:
		return nil, 0, invalid("status", "%q is not online or offline", f.Status)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	page := ""
	if f.Limit > 0 {
		page += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	if f.Offset > 0 {
		page += fmt.Sprintf(" OFFSET %d", f.Offset)
	}
	rows, err := r.pool.Query(ctx, `SELECT `+lockerColumns+`, count(*) OVER () FROM fleet_lockers`+cond+` ORDER BY id`+page, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list lockers: %w", err)
	}
	out := []Locker{}
	var l Locker
	total := 0
	_, err = pgx.ForEachRow(rows, append(lockerFields(&l), &total), func() error {
		r.fix(&l)
		out = append(out, l)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list lockers: %w", err)
	}
	if len(out) == 0 && f.Offset > 0 { // past the end: count separately
		if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM fleet_lockers`+cond, args...).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("list lockers: %w", err)
		}
	}
	return out, total, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func (r *Registry) onlineIDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := []string{}
	for id, e := range r.lockers {
		if e.online {
			ids = append(ids, id)
		}
	}
	return ids
}

// Get returns one locker.
func (r *Registry) Get(ctx context.Context, id string) (Locker, error) {
	l, err := getLocker(ctx, r.pool, id, "")
	if err != nil {
		return Locker{}, err
	}
	r.fix(&l)
	return l, nil
}

func getLocker(ctx context.Context, q querier, id, lock string) (Locker, error) {
	var l Locker
	err := q.QueryRow(ctx, `SELECT `+lockerColumns+` FROM fleet_lockers WHERE id = $1 `+lock, id).Scan(lockerFields(&l)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Locker{}, fmt.Errorf("%w: locker %s", ErrNotFound, id)
	}
	if err != nil {
		return Locker{}, fmt.Errorf("get locker: %w", err)
	}
	return l, nil
}

// LockerPatch is a partial update with JSON merge patch semantics (RFC 7396):
// a field left out stays as it is, null clears it (model, address, time_zone,
// lat/lon, segments, carriers), a value replaces it.
//
// Cells: with a model that has a layout, the locker's cells are the model's
// (cells, if given, must match); a cell count without such a model gives
// columns of 10 of size M. Clearing the model keeps the cells as they are.
// Enabled false revokes every certificate of the locker and closes its
// connection; true lets it be issued new ones.
type LockerPatch struct {
	Model    Opt[string]   `json:"model,omitzero"`
	Cells    Opt[int]      `json:"cells,omitzero"`
	Address  Opt[string]   `json:"address,omitzero"`
	TimeZone Opt[string]   `json:"time_zone,omitzero"`
	Lat      Opt[float64]  `json:"lat,omitzero"`
	Lon      Opt[float64]  `json:"lon,omitzero"`
	Segments Opt[[]string] `json:"segments,omitzero"`
	Carriers Opt[[]string] `json:"carriers,omitzero"`
	Enabled  Opt[bool]     `json:"enabled,omitzero"`
}

// apply returns the locker's description with the patch applied, still to be
// normalized.
func (p LockerPatch) apply(l Locker) (NewLocker, error) {
	n := NewLocker{ID: l.ID, Model: l.Model, Address: l.Address, TimeZone: l.TimeZone, Lat: l.Lat, Lon: l.Lon,
		Segments: l.Segments, Carriers: l.Carriers, Cells: l.Cells}
	if p.Model.Set {
		n.Model = p.Model.V // null: ""
	}
	if p.Cells.Set {
		if p.Cells.Null {
			return n, invalid("cells", "cannot be null")
		}
		n.Cells = p.Cells.V
	}
	if p.Address.Set {
		n.Address = p.Address.V
	}
	if p.TimeZone.Set {
		n.TimeZone = p.TimeZone.V
	}
	if p.Lat.Set {
		n.Lat = nil
		if !p.Lat.Null {
			n.Lat = &p.Lat.V
		}
	}
	if p.Lon.Set {
		n.Lon = nil
		if !p.Lon.Null {
			n.Lon = &p.Lon.V
		}
	}
	if p.Segments.Set {
		n.Segments = p.Segments.V
	}
	if p.Carriers.Set {
		n.Carriers = p.Carriers.V
	}
	if p.Enabled.Set && p.Enabled.Null {
		return n, invalid("enabled", "cannot be null")
	}
	return n, nil
}

// Update changes a locker (see LockerPatch).
func (r *Registry) Update(ctx context.Context, id string, p LockerPatch) (Locker, Change, error) {
	var before, after Locker
	var revoked []string
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		if before, err = getLocker(ctx, tx, id, "FOR UPDATE"); err != nil {
			return err
		}
		n, err := p.apply(before)
		if err != nil {
			return err
		}
		if n, err = n.normalize(); err != nil {
			return err
		}
		enabled := before.Enabled
		if p.Enabled.Set {
			enabled = p.Enabled.V
		}
		cells := before.Cells
		if p.Model.Set || p.Cells.Set {
			cur, err := currentCells(ctx, tx, id)
			if err != nil {
				return err
			}
			next := cur
			m := &modelLayouts{tx: tx}
			want := 0
			if p.Cells.Set {
				want = n.Cells
			}
			if n.Model != "" {
				layout, err := m.get(ctx, n.Model)
				if err != nil {
					return err
				}
				if len(layout) > 0 || p.Cells.Set {
					if next, err = m.layout(ctx, n.Model, want); err != nil {
						return err
					}
				}
			} else if p.Cells.Set {
				next = DefaultLayout(want)
			}
			if !slices.Equal(cur, next) {
				if err := replaceCells(ctx, tx, id, next); err != nil {
					return err
				}
			}
			cells = len(next)
		}
		err = tx.QueryRow(ctx, `UPDATE fleet_lockers SET model = NULLIF($2, ''), cells = $3, address = $4, time_zone = $5,
			lat = $6, lon = $7, segments = $8, carriers = $9, enabled = $10, updated_at = now()
			WHERE id = $1 RETURNING `+lockerColumns,
			id, n.Model, cells, n.Address, n.TimeZone, n.Lat, n.Lon, n.Segments, n.Carriers, enabled).Scan(lockerFields(&after)...)
		if err != nil {
			return err
		}
		if err := registerCarriers(ctx, tx, n.Carriers); err != nil {
			return err
		}
		if before.Enabled && !enabled {
			if revoked, err = revokeAll(ctx, tx, id); err != nil {
				return err
			}
			if err := recordRevocation(ctx, tx, id, revoked); err != nil {
				return err
			}
			// A disabled locker's pickup-code secret is gone: enabled again,
			// it gets a new one (codekeys.go).
			if _, err := tx.Exec(ctx, `DELETE FROM fleet_code_keys WHERE locker_id = $1`, id); err != nil {
				return err
			}
		}
		r.fix(&before)
		r.fix(&after)
		return audit.Record(ctx, tx, audit.Entry{Action: ActionUpdate, ObjectType: EntityLocker, ObjectID: id, Before: before, After: after})
	})
	if err != nil {
		return Locker{}, Change{}, wrapUnlessDomain("update locker", err)
	}
	r.mu.Lock()
	if e := r.lockers[id]; e != nil {
		e.enabled = after.Enabled
	}
	r.mu.Unlock()
	if before.Enabled && !after.Enabled {
		r.applyRevocation(id, revoked)
	}
	c := Change{Entity: EntityLocker, ID: id, Action: ActionUpdate, Before: before, After: after}
	r.notify(c)
	return after, c, nil
}

// Delete removes a locker and its cells. Every certificate of the locker is
// revoked (the records stay) and its live connection closed. It returns how
// many certificates this call revoked.
func (r *Registry) Delete(ctx context.Context, id string) (int, Change, error) {
	var before Locker
	var revoked []string
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		if before, err = getLocker(ctx, tx, id, "FOR UPDATE"); err != nil {
			return err
		}
		if revoked, err = revokeAll(ctx, tx, id); err != nil {
			return err
		}
		if err := recordRevocation(ctx, tx, id, revoked); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM fleet_lockers WHERE id = $1`, id); err != nil {
			return err
		}
		r.fix(&before)
		return audit.Record(ctx, tx, audit.Entry{Action: ActionDelete, ObjectType: EntityLocker, ObjectID: id, Before: before})
	})
	if err != nil {
		return 0, Change{}, wrapUnlessDomain("delete locker", err)
	}
	r.mu.Lock()
	delete(r.lockers, id)
	r.mu.Unlock()
	r.applyRevocation(id, revoked)
	c := Change{Entity: EntityLocker, ID: id, Action: ActionDelete, Before: before}
	r.notify(c)
	return len(revoked), c, nil
}
