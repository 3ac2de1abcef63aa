package parcels

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Carrier quotas (docs/parcels.md, "Carriers"): in a shared locker a carrier
// may hold at most its quota of cells of a size, and that many cells are
// kept for it: a carrier without a quota there (or a parcel of no carrier)
// may take a free cell only while more cells are free than the carriers with
// quotas still have left. Reservations check it inside the transaction that
// holds the locker's lock (lockLocker), so two reservations for the last
// cell of a quota take turns and one of them is refused.

// ErrQuota refuses a reservation over a carrier's quota, even when cells
// are free; web answers 409 carrier_quota.
var ErrQuota = errors.New("carrier quota")

// Quota is a carrier's quota of cells of a size at a locker.
type Quota struct {
	Carrier  string
	LockerID string
	Size     string
	Cells    int
}

// Queryer is the pool or a transaction.
type Queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// QuotaSource reads the carriers' quotas of lockers through q (the fleet
// keeps them; app adapts it).
type QuotaSource interface {
	Quotas(ctx context.Context, q Queryer, lockerIDs []string) ([]Quota, error)
}

// Use is how many cells of a size a carrier's open parcels hold at a locker.
type Use struct {
	Carrier  string `json:"carrier"`
	LockerID string `json:"locker"`
	Size     string `json:"size"`
	Cells    int    `json:"cells"`
}

// usage counts the cells open parcels hold, by locker, size and carrier.
func usage(ctx context.Context, q Queryer, lockerIDs []string) (map[string]map[string]map[string]int, error) {
	cond, arg := `locker_id = ANY($1)`, any(lockerIDs)
	if lockerIDs == nil {
		cond, arg = `$1::int IS NULL`, nil
	}
	rows, err := q.Query(ctx, `SELECT locker_id, size, carrier, count(*) FROM parcels_parcels
		WHERE holds_cell AND `+cond+` GROUP BY 1, 2, 3`, arg)
	if err != nil {
		return nil, fmt.Errorf("cells held by carrier: %w", err)
	}
	out := map[string]map[string]map[string]int{}
	var l, size, carrier string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&l, &size, &carrier, &n}, func() error {
		if out[l] == nil {
			out[l] = map[string]map[string]int{}
		}
		if out[l][size] == nil {
			out[l][size] = map[string]int{}
		}
		out[l][size][carrier] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cells held by carrier: %w", err)
	}
	return out, nil
}

// Usage lists the cells the carriers' open parcels hold (parcels of no
// carrier left out), by carrier, locker and size.
func (s *Store) Usage(ctx context.Context) ([]Use, error) {
	rows, err := s.pool.Query(ctx, `SELECT carrier, locker_id, size, count(*) FROM parcels_parcels
		WHERE holds_cell AND carrier <> '' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("carrier usage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Use, error) {
		var u Use
		return u, r.Scan(&u.Carrier, &u.LockerID, &u.Size, &u.Cells)
	})
	if err != nil {
		return nil, fmt.Errorf("carrier usage: %w", err)
	}
	return out, nil
}

// room is how many of free cells of a size a carrier may still take, given
// the quotas of that locker and size (carrier → cells) and the cells each
// carrier holds there.
func room(carrier string, free int, quotas, held map[string]int) int {
	if q, ok := quotas[carrier]; ok {
		return max(0, min(free, q-held[carrier]))
	}
	kept := 0
	for c, q := range quotas {
		if c != carrier {
			kept += max(0, q-held[c])
		}
	}
	return max(0, free-kept)
}

func quotaMap(qs []Quota) map[string]map[string]map[string]int {
	out := map[string]map[string]map[string]int{}
	for _, q := range qs {
		if out[q.LockerID] == nil {
			out[q.LockerID] = map[string]map[string]int{}
		}
		if out[q.LockerID][q.Size] == nil {
			out[q.LockerID][q.Size] = map[string]int{}
		}
		out[q.LockerID][q.Size][q.Carrier] = q.Cells
	}
	return out
}

// Usable narrows free cell counts (locker → size → free cells) to what the
// carrier may still take ("" for a caller of the whole fleet: unchanged).
func (s *Store) Usable(ctx context.Context, carrier string, free map[string]map[string]int) (map[string]map[string]int, error) {
	if carrier == "" || s.cfg.Quotas == nil || len(free) == 0 {
		return free, nil
	}
	ids := make([]string, 0, len(free))
	for id := range free {
		ids = append(ids, id)
	}
	qs, err := s.cfg.Quotas.Quotas(ctx, s.pool, ids)
	if err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return free, nil
	}
	held, err := usage(ctx, s.pool, ids)
	if err != nil {
		return nil, err
	}
	quotas := quotaMap(qs)
	out := make(map[string]map[string]int, len(free))
	for id, sizes := range free {
		m := make(map[string]int, len(sizes))
		for size, n := range sizes {
			m[size] = room(carrier, n, quotas[id][size], held[id][size])
		}
		out[id] = m
	}
	return out, nil
}

// checkQuota refuses a reservation of a cell of size at the locker for
// carrier over its quota (or into cells kept for others'), with free the
// free cells seen before the locker was locked. It runs inside the
// reservation's transaction, after lockLocker.
func (s *Store) checkQuota(ctx context.Context, tx pgx.Tx, lockerID, size, carrier string, free []string) error {
	if s.cfg.Quotas == nil {
		return nil
	}
	qs, err := s.cfg.Quotas.Quotas(ctx, tx, []string{lockerID})
	if err != nil {
		return err
	}
	quotas := quotaMap(qs)[lockerID][size]
	if len(quotas) == 0 {
		return nil
	}
	held, err := usage(ctx, tx, []string{lockerID})
	if err != nil {
		return err
	}
	h := held[lockerID][size]
	// Free cells taken since they were listed (by the reservation that held
	// the lock before this one) do not count.
	var taken int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM parcels_parcels WHERE locker_id = $1 AND holds_cell
		AND (cell = ANY($2) OR move_from = ANY($2))`, lockerID, free).Scan(&taken); err != nil {
		return fmt.Errorf("cells taken meanwhile: %w", err)
	}
	if room(carrier, len(free)-taken, quotas, h) > 0 {
		return nil
	}
	who := carrier
	if who == "" {
		who = "a parcel of no carrier"
	}
	if q, ok := quotas[carrier]; ok {
		if h[carrier] >= q {
			s.m.quotaRefusals.Inc()
			return fmt.Errorf("%w: carrier %s holds %d of its %d cells of size %s at locker %s", ErrQuota, carrier, h[carrier], q, size, lockerID)
		}
		return fmt.Errorf("%w of size %s on locker %s", ErrNoFreeCell, size, lockerID)
	}
	if len(free)-taken <= 0 {
		return fmt.Errorf("%w of size %s on locker %s", ErrNoFreeCell, size, lockerID)
	}
	s.m.quotaRefusals.Inc()
	return fmt.Errorf("%w: the %d free cells of size %s at locker %s are kept for carriers with a quota there; %s has none",
		ErrQuota, len(free)-taken, size, lockerID, who)
}
