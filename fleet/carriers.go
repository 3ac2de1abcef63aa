package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Carriers are the transport companies that share the network (issue 13,
// point 7; docs/parcels.md, "Carriers"). A carrier may use a locker in
// three ways, which add up:
//
//   - the whole locker: the locker names it (Locker.Carriers);
//   - a segment: every locker of a segment assigned to the carrier, now and
//     later;
//   - a quota in a shared locker: at most N cells of a size, which are also
//     kept for it (carriers without a quota there share the rest).
//
// Locker.CarrierAccess is the result; it scopes couriers and API clients of
// a carrier (DESIGN decision 19). Parcels enforce the quotas when they
// reserve a cell.

// EntityCarrier is the object type of carriers in audit records.
const EntityCarrier = "carrier"

// Carrier is a transport company.
type Carrier struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Contact   string    `json:"contact"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CarrierDetail is a carrier with its share of the network.
type CarrierDetail struct {
	Carrier
	// Lockers are the lockers that name the carrier (whole lockers).
	Lockers []string `json:"lockers"`
	// Segments are the segments assigned to the carrier.
	Segments []string `json:"segments"`
	// Quotas are its quotas in shared lockers, by locker and size.
	Quotas []Quota `json:"quotas"`
}

// Quota is how many cells of a size a carrier may hold at a locker.
type Quota struct {
	Carrier  string `json:"carrier"`
	LockerID string `json:"locker"`
	Size     string `json:"size"`
	Cells    int    `json:"cells"`
}

// NewCarrier is what it takes to add a carrier.
type NewCarrier struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Contact string `json:"contact"`
}

// CarrierPatch changes a carrier's name or contact (merge patch: a field
// left out stays).
type CarrierPatch struct {
	Name    *string `json:"name"`
	Contact *string `json:"contact"`
}

// carrierAccessSQL is the SQL condition "carrier p may use the locker" for a
// row of fleet_lockers, with p a placeholder such as "$3". Unlike
// fleet_carrier_access(…) @> ARRAY[p], it can use the indexes.
func carrierAccessSQL(p string) string {
	return `(carriers @> ARRAY[` + p + `::text]
		OR segments && ARRAY(SELECT segment FROM fleet_carrier_segments WHERE carrier = ` + p + `::text)
		OR id IN (SELECT locker_id FROM fleet_carrier_quotas WHERE carrier = ` + p + `::text))`
}

// registerCarriers adds the carriers a locker names to the list of carriers
// (the list holds every carrier that has a share of the network).
func registerCarriers(ctx context.Context, tx pgx.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO fleet_carriers (id, name) SELECT DISTINCT c, c FROM unnest($1::text[]) AS c ON CONFLICT DO NOTHING`, ids)
	if err != nil {
		return fmt.Errorf("register carriers: %w", err)
	}
	return nil
}

const carrierColumns = `id, name, contact, created_at, updated_at`

func scanCarrier(row pgx.Row) (Carrier, error) {
	var c Carrier
	err := row.Scan(&c.ID, &c.Name, &c.Contact, &c.CreatedAt, &c.UpdatedAt)
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, err
}

func validCarrierID(id string) (string, error) {
	out, err := names("id", []string{id})
	if err != nil {
		return "", err
	}
	return out[0], nil
}

// Carriers lists the carriers by id.
func (r *Registry) Carriers(ctx context.Context) ([]Carrier, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+carrierColumns+` FROM fleet_carriers ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list carriers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Carrier, error) { return scanCarrier(row) })
	if err != nil {
		return nil, fmt.Errorf("list carriers: %w", err)
	}
	return out, nil
}

// Carrier returns a carrier with its lockers, segments and quotas.
func (r *Registry) Carrier(ctx context.Context, id string) (CarrierDetail, error) {
	return carrierDetail(ctx, r.pool, id, "")
}

func carrierDetail(ctx context.Context, q querier, id, lock string) (CarrierDetail, error) {
	c, err := scanCarrier(q.QueryRow(ctx, `SELECT `+carrierColumns+` FROM fleet_carriers WHERE id = $1 `+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return CarrierDetail{}, fmt.Errorf("%w: carrier %s", ErrNotFound, id)
	}
	if err != nil {
		return CarrierDetail{}, fmt.Errorf("get carrier: %w", err)
	}
	d := CarrierDetail{Carrier: c, Lockers: []string{}, Segments: []string{}, Quotas: []Quota{}}
	rows, err := q.Query(ctx, `SELECT id FROM fleet_lockers WHERE carriers @> ARRAY[$1::text] ORDER BY id`, id)
	if err == nil {
		d.Lockers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err == nil {
		rows, err = q.Query(ctx, `SELECT segment FROM fleet_carrier_segments WHERE carrier = $1 ORDER BY segment`, id)
	}
	if err == nil {
		d.Segments, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err == nil {
		d.Quotas, err = quotas(ctx, q, `carrier = $1`, id)
	}
	if err != nil {
		return CarrierDetail{}, fmt.Errorf("get carrier %s: %w", id, err)
	}
	return d, nil
}

// sizeOrder sorts quotas S, M, L, XL.
const sizeOrder = `array_position(ARRAY['S','M','L','XL'], size)`

func quotas(ctx context.Context, q querier, cond string, arg any) ([]Quota, error) {
	rows, err := q.Query(ctx, `SELECT carrier, locker_id, size, cells FROM fleet_carrier_quotas WHERE `+cond+`
		ORDER BY locker_id, carrier, `+sizeOrder, arg)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Quota, error) {
		var q Quota
		return q, row.Scan(&q.Carrier, &q.LockerID, &q.Size, &q.Cells)
	})
	if out == nil {
		out = []Quota{}
	}
	return out, err
}

// Queryer runs a query on the pool or inside a transaction.
type Queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// QuotasAt returns the quotas of the lockers (nil: of every locker), through
// q: parcels read them inside the transaction that reserves a cell.
func (r *Registry) QuotasAt(ctx context.Context, q Queryer, lockerIDs []string) ([]Quota, error) {
	if q == nil {
		q = r.pool
	}
	cond, arg := `locker_id = ANY($1)`, any(lockerIDs)
	if lockerIDs == nil {
		cond, arg = `$1::int IS NULL`, nil
	}
	rows, err := q.Query(ctx, `SELECT carrier, locker_id, size, cells FROM fleet_carrier_quotas WHERE `+cond+`
		ORDER BY locker_id, carrier, `+sizeOrder, arg)
	if err != nil {
		return nil, fmt.Errorf("carrier quotas: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Quota, error) {
		var q Quota
		return q, row.Scan(&q.Carrier, &q.LockerID, &q.Size, &q.Cells)
	})
	if err != nil {
		return nil, fmt.Errorf("carrier quotas: %w", err)
	}
	return out, nil
}

// CreateCarrier adds a carrier.
func (r *Registry) CreateCarrier(ctx context.Context, n NewCarrier) (Carrier, error) {
	id, err := validCarrierID(n.ID)
	if err != nil {
		return Carrier{}, err
	}
	name, err := text("name", n.Name, 200, false)
	if err != nil {
		return Carrier{}, err
	}
	contact, err := text("contact", n.Contact, 300, false)
	if err != nil {
		return Carrier{}, err
	}
	if name == "" {
		name = id
	}
	var c Carrier
	err = pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		c, err = scanCarrier(tx.QueryRow(ctx, `INSERT INTO fleet_carriers (id, name, contact) VALUES ($1, $2, $3) RETURNING `+carrierColumns, id, name, contact))
		if pg.IsUniqueViolation(err) {
			return fmt.Errorf("%w: carrier %s", ErrExists, id)
		}
		if err != nil {
			return err
		}
		d := CarrierDetail{Carrier: c, Lockers: []string{}, Segments: []string{}, Quotas: []Quota{}}
		return audit.Record(ctx, tx, audit.Entry{Action: ActionCreate, ObjectType: EntityCarrier, ObjectID: id, After: d})
	})
	if err != nil {
		return Carrier{}, wrapUnlessDomain("create carrier", err)
	}
	return c, nil
}

// UpdateCarrier changes a carrier's name or contact.
func (r *Registry) UpdateCarrier(ctx context.Context, id string, p CarrierPatch) (CarrierDetail, error) {
	var after CarrierDetail
	err := r.changeCarrier(ctx, id, func(tx pgx.Tx, before CarrierDetail) ([]string, error) {
		name, contact := before.Name, before.Contact
		var err error
		if p.Name != nil {
			if name, err = text("name", *p.Name, 200, true); err != nil {
				return nil, err
			}
		}
		if p.Contact != nil {
			if contact, err = text("contact", *p.Contact, 300, false); err != nil {
				return nil, err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE fleet_carriers SET name = $2, contact = $3, updated_at = now() WHERE id = $1`, id, name, contact)
		return nil, err
	}, &after)
	return after, err
}

// DeleteCarrier removes a carrier with its segments and quotas. A carrier
// that lockers still name is in use: take it off those lockers first.
func (r *Registry) DeleteCarrier(ctx context.Context, id string) error {
	var affected []string
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		before, err := carrierDetail(ctx, tx, id, "FOR UPDATE")
		if err != nil {
			return err
		}
		if len(before.Lockers) > 0 {
			return fmt.Errorf("%w: carrier %s is named by %d locker(s) (%s…): take it off them first", ErrInUse, id, len(before.Lockers), before.Lockers[0])
		}
		if affected, err = accessLockers(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM fleet_carriers WHERE id = $1`, id); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: ActionDelete, ObjectType: EntityCarrier, ObjectID: id, Before: before})
	})
	if err != nil {
		return wrapUnlessDomain("delete carrier", err)
	}
	r.lockersChanged(ctx, affected)
	return nil
}

// accessLockers lists the lockers a carrier may use.
func accessLockers(ctx context.Context, q querier, carrier string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT id FROM fleet_lockers WHERE `+carrierAccessSQL("$1")+` ORDER BY id`, carrier)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// changeCarrier runs fn on a locked carrier, records the carrier before and
// after in the audit log, and tells the observers of every locker whose
// carrier access changed (fn returns lockers it touched; the lockers the
// carrier may use before and after are compared too).
func (r *Registry) changeCarrier(ctx context.Context, id string, fn func(tx pgx.Tx, before CarrierDetail) ([]string, error), out *CarrierDetail) error {
	var affected []string
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		before, err := carrierDetail(ctx, tx, id, "FOR UPDATE")
		if err != nil {
			return err
		}
		was, err := accessLockers(ctx, tx, id)
		if err != nil {
			return err
		}
		touched, err := fn(tx, before)
		if err != nil {
			return err
		}
		is, err := accessLockers(ctx, tx, id)
		if err != nil {
			return err
		}
		affected = append(symmetricDiff(was, is), touched...)
		after, err := carrierDetail(ctx, tx, id, "")
		if err != nil {
			return err
		}
		*out = after
		return audit.Record(ctx, tx, audit.Entry{Action: ActionUpdate, ObjectType: EntityCarrier, ObjectID: id, Before: before, After: after})
	})
	if err != nil {
		return wrapUnlessDomain("change carrier "+id, err)
	}
	r.lockersChanged(ctx, affected)
	return nil
}

func symmetricDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}

// lockersChanged tells the observers (the overview) that the carrier access
// of lockers changed, with each locker as it is now.
func (r *Registry) lockersChanged(ctx context.Context, ids []string) {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return
	}
	ls, err := r.lockersByID(ctx, ids)
	if err != nil {
		r.log.Warn("carriers: reading changed lockers failed", "error", err)
		return
	}
	changes := make([]Change, 0, len(ls))
	for _, l := range ls {
		changes = append(changes, Change{Entity: EntityLocker, ID: l.ID, Action: ActionUpdate, Before: l, After: l})
	}
	r.notify(changes...)
}

func (r *Registry) lockersByID(ctx context.Context, ids []string) ([]Locker, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+lockerColumns+` FROM fleet_lockers WHERE id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, err
	}
	ls, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Locker, error) {
		var l Locker
		return l, row.Scan(lockerFields(&l)...)
	})
	for i := range ls {
		r.fix(&ls[i])
	}
	return ls, err
}

// AssignSegment gives a carrier every locker of a segment.
func (r *Registry) AssignSegment(ctx context.Context, carrier, segment string) (CarrierDetail, error) {
	seg, err := names("segment", []string{segment})
	if err != nil {
		return CarrierDetail{}, err
	}
	var after CarrierDetail
	err = r.changeCarrier(ctx, carrier, func(tx pgx.Tx, _ CarrierDetail) ([]string, error) {
		_, err := tx.Exec(ctx, `INSERT INTO fleet_carrier_segments (carrier, segment) VALUES ($1, $2) ON CONFLICT DO NOTHING`, carrier, seg[0])
		return nil, err
	}, &after)
	return after, err
}

// UnassignSegment takes a segment from a carrier (its lockers stay with the
// carrier where it has them in another way).
func (r *Registry) UnassignSegment(ctx context.Context, carrier, segment string) (CarrierDetail, error) {
	var after CarrierDetail
	err := r.changeCarrier(ctx, carrier, func(tx pgx.Tx, before CarrierDetail) ([]string, error) {
		if !slices.Contains(before.Segments, segment) {
			return nil, fmt.Errorf("%w: carrier %s has no segment %q", ErrNotFound, carrier, segment)
		}
		_, err := tx.Exec(ctx, `DELETE FROM fleet_carrier_segments WHERE carrier = $1 AND segment = $2`, carrier, segment)
		return nil, err
	}, &after)
	return after, err
}

// AssignLocker gives a carrier a whole locker (the locker names it).
func (r *Registry) AssignLocker(ctx context.Context, carrier, lockerID string) (CarrierDetail, error) {
	return r.lockerCarrier(ctx, carrier, lockerID, true)
}

// UnassignLocker takes a whole locker from a carrier.
func (r *Registry) UnassignLocker(ctx context.Context, carrier, lockerID string) (CarrierDetail, error) {
	return r.lockerCarrier(ctx, carrier, lockerID, false)
}

func (r *Registry) lockerCarrier(ctx context.Context, carrier, lockerID string, add bool) (CarrierDetail, error) {
	var after CarrierDetail
	err := r.changeCarrier(ctx, carrier, func(tx pgx.Tx, _ CarrierDetail) ([]string, error) {
		before, err := getLocker(ctx, tx, lockerID, "FOR UPDATE")
		if err != nil {
			return nil, err
		}
		has := slices.Contains(before.Carriers, carrier)
		switch {
		case add && has:
			return nil, nil
		case !add && !has:
			return nil, fmt.Errorf("%w: locker %s does not name carrier %s", ErrNotFound, lockerID, carrier)
		}
		cs := slices.DeleteFunc(slices.Clone(before.Carriers), func(c string) bool { return c == carrier })
		if add {
			if len(cs) >= MaxNames {
				return nil, invalid("carriers", "at most %d carriers per locker", MaxNames)
			}
			cs = append(cs, carrier)
		}
		var l Locker
		err = tx.QueryRow(ctx, `UPDATE fleet_lockers SET carriers = $2, updated_at = now() WHERE id = $1 RETURNING `+lockerColumns,
			lockerID, cs).Scan(lockerFields(&l)...)
		if err != nil {
			return nil, err
		}
		r.fix(&before)
		r.fix(&l)
		if err := audit.Record(ctx, tx, audit.Entry{Action: ActionUpdate, ObjectType: EntityLocker, ObjectID: lockerID, Before: before, After: l}); err != nil {
			return nil, err
		}
		return []string{lockerID}, nil
	}, &after)
	return after, err
}

// SetQuotas replaces a carrier's quotas at a locker with cells per size
// (empty: the carrier has no quota there any more). The quotas of all
// carriers at the locker may not add up to more cells of a size than the
// locker has.
func (r *Registry) SetQuotas(ctx context.Context, carrier, lockerID string, cells map[string]int) (CarrierDetail, error) {
	for size, n := range cells {
		if !slices.Contains(Sizes, size) {
			return CarrierDetail{}, invalid("size", "%q is not a cell size (S, M, L, XL)", size)
		}
		if n < 0 || n > MaxCells {
			return CarrierDetail{}, invalid(size, "cells must be between 0 and %d, got %d", MaxCells, n)
		}
	}
	var after CarrierDetail
	err := r.changeCarrier(ctx, carrier, func(tx pgx.Tx, _ CarrierDetail) ([]string, error) {
		// The locker's row lock makes quota changes of one locker take turns.
		if _, err := getLocker(ctx, tx, lockerID, "FOR UPDATE"); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM fleet_carrier_quotas WHERE carrier = $1 AND locker_id = $2`, carrier, lockerID); err != nil {
			return nil, err
		}
		for _, size := range Sizes {
			n, ok := cells[size]
			if !ok {
				continue
			}
			var have, others int
			err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM fleet_cells WHERE locker_id = $1 AND size = $2),
				(SELECT coalesce(sum(cells), 0) FROM fleet_carrier_quotas WHERE locker_id = $1 AND size = $2)`, lockerID, size).Scan(&have, &others)
			if err != nil {
				return nil, err
			}
			if others+n > have {
				return nil, invalid(size, "locker %s has %d cells of size %s and other carriers' quotas take %d: at most %d left for %s, asked %d",
					lockerID, have, size, others, max(have-others, 0), carrier, n)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO fleet_carrier_quotas (carrier, locker_id, size, cells) VALUES ($1, $2, $3, $4)`,
				carrier, lockerID, size, n); err != nil {
				return nil, err
			}
		}
		return []string{lockerID}, nil
	}, &after)
	return after, err
}
