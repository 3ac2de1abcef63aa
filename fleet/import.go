package fleet

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Limits of a bulk import.
const (
	MaxImportBytes = 10 << 20  // CSV body
	MaxImportRows  = 20000     // lockers
	MaxImportCells = 1_000_000 // cells of all the lockers together
)

// ImportColumns are the columns of a locker CSV, in the usual order. Only id
// is required; segments and carriers hold names separated by '|'.
var ImportColumns = []string{"id", "model", "cells", "address", "time_zone", "lat", "lon", "segments", "carriers"}

// ImportError says which line (1 = the header) and column of a CSV is wrong.
// It wraps ErrInvalid, or ErrExists for a locker already registered.
type ImportError struct {
	Line   int
	Column string // "" when the whole line is wrong
	Err    error
}

func (e *ImportError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d, column %s: %v", e.Line, e.Column, e.Err)
}

func (e *ImportError) Unwrap() error { return e.Err }

// importErr builds an ImportError from a validation error, taking the column
// from a FieldError.
func importErr(line int, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &ImportError{Line: line, Column: fe.Field, Err: reason{fe.Msg, ErrInvalid}}
	}
	return &ImportError{Line: line, Err: err}
}

// reason is a message that is one of the sentinel errors without saying so.
type reason struct {
	msg  string
	kind error
}

func (r reason) Error() string { return r.msg }
func (r reason) Unwrap() error { return r.kind }

func invalidf(format string, a ...any) error { return reason{fmt.Sprintf(format, a...), ErrInvalid} }

type importRow struct {
	line int
	n    NewLocker
}

// ParseLockersCSV reads a locker CSV (a header row naming the columns, see
// ImportColumns, then one locker a line) and validates every row on its own.
func ParseLockersCSV(rd io.Reader) ([]NewLocker, error) {
	rows, err := parseCSV(rd)
	out := make([]NewLocker, len(rows))
	for i, r := range rows {
		out[i] = r.n
	}
	return out, err
}

func parseCSV(rd io.Reader) ([]importRow, error) {
	cr := csv.NewReader(rd)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &ImportError{Line: 1, Err: invalidf("empty file: the first line names the columns (%s)", strings.Join(ImportColumns, ","))}
	}
	if err != nil {
		return nil, csvError(err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch {
		case !slices.Contains(ImportColumns, h):
			return nil, &ImportError{Line: 1, Err: invalidf("unknown column %q (columns: %s)", h, strings.Join(ImportColumns, ","))}
		case col[h] != 0:
			return nil, &ImportError{Line: 1, Err: invalidf("column %s appears twice", h)}
		}
		col[h] = i + 1 // 0 = absent
	}
	if col["id"] == 0 {
		return nil, &ImportError{Line: 1, Err: invalidf("no id column (columns: %s)", strings.Join(ImportColumns, ","))}
	}
	var rows []importRow
	seen := map[string]int{} // ID → line
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rows) == MaxImportRows {
			return nil, &ImportError{Line: line, Err: invalidf("more than %d lockers in one import", MaxImportRows)}
		}
		get := func(name string) string {
			if i := col[name]; i > 0 {
				return strings.TrimSpace(rec[i-1])
			}
			return ""
		}
		n := NewLocker{ID: get("id"), Model: get("model"), Address: get("address"), TimeZone: get("time_zone")}
		if s := get("cells"); s != "" {
			if n.Cells, err = strconv.Atoi(s); err != nil {
				return nil, &ImportError{Line: line, Column: "cells", Err: invalidf("%q is not a whole number", s)}
			}
		}
		for _, c := range []struct {
			name string
			dst  **float64
		}{{"lat", &n.Lat}, {"lon", &n.Lon}} {
			s := get(c.name)
			if s == "" {
				continue
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, &ImportError{Line: line, Column: c.name, Err: invalidf("%q is not a number", s)}
			}
			*c.dst = &v
		}
		n.Segments = splitNames(get("segments"))
		n.Carriers = splitNames(get("carriers"))
		if n, err = n.normalize(); err != nil {
			return nil, importErr(line, err)
		}
		if first, dup := seen[n.ID]; dup {
			return nil, &ImportError{Line: line, Column: "id", Err: invalidf("locker %s is also on line %d", n.ID, first)}
		}
		seen[n.ID] = line
		rows = append(rows, importRow{line: line, n: n})
	}
	if len(rows) == 0 {
		return nil, &ImportError{Line: 2, Err: invalidf("no lockers after the header")}
	}
	return rows, nil
}

func splitNames(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "|")
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &ImportError{Line: pe.Line, Err: invalidf("%v", pe.Err)}
	}
	return invalidf("reading CSV: %v", err)
}

// Import registers the lockers of a CSV (see ParseLockersCSV) in one
// transaction: all of them, or none when any line is wrong (an *ImportError
// names the line and column).
func (r *Registry) Import(ctx context.Context, rd io.Reader) ([]Change, error) {
	rows, err := parseCSV(rd)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(rows))
	line := make(map[string]int, len(rows))
	for i, row := range rows {
		ids[i] = row.n.ID
		line[row.n.ID] = row.line
	}
	var created []Locker
	err = pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		rs, err := tx.Query(ctx, `SELECT id FROM fleet_lockers WHERE id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		exists, err := pgx.CollectRows(rs, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(exists) > 0 {
			first := slices.MinFunc(exists, func(a, b string) int { return line[a] - line[b] })
			return &ImportError{Line: line[first], Column: "id", Err: reason{fmt.Sprintf("locker %s is already registered", first), ErrExists}}
		}
		m := &modelLayouts{tx: tx}
		cells := make(map[string][]Cell, len(rows))
		total := 0
		for _, row := range rows {
			c, err := m.layout(ctx, row.n.Model, row.n.Cells)
			if err != nil {
				return importErr(row.line, err)
			}
			cells[row.n.ID] = c
			if total += len(c); total > MaxImportCells {
				return &ImportError{Line: row.line, Err: invalidf("more than %d cells in one import", MaxImportCells)}
			}
		}
		i := 0
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"fleet_lockers"},
			[]string{"id", "model", "cells", "address", "time_zone", "lat", "lon", "segments", "carriers"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if i == len(rows) {
					return nil, nil
				}
				n := rows[i].n
				i++
				var model any
				if n.Model != "" {
					model = n.Model
				}
				return []any{n.ID, model, len(cells[n.ID]), n.Address, n.TimeZone, n.Lat, n.Lon, n.Segments, n.Carriers}, nil
			}))
		if pg.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a locker of the file was registered meanwhile; nothing was imported", ErrExists)
		}
		if err != nil {
			return err
		}
		if err := copyCells(ctx, tx, cells, ids); err != nil {
			return err
		}
		var named []string
		for _, row := range rows {
			named = append(named, row.n.Carriers...)
		}
		if err := registerCarriers(ctx, tx, named); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, `SELECT `+lockerColumns+` FROM fleet_lockers WHERE id = ANY($1) ORDER BY id`, ids)
		if err != nil {
			return err
		}
		created, err = pgx.CollectRows(rs, func(row pgx.CollectableRow) (Locker, error) {
			var l Locker
			return l, row.Scan(lockerFields(&l)...)
		})
		if err != nil {
			return err
		}
		// One record per locker, as for a single create: the log of a
		// locker tells its whole story whichever way it was registered.
		entries := make([]audit.Entry, len(created))
		for i := range created {
			r.fix(&created[i])
			entries[i] = audit.Entry{Action: ActionCreate, ObjectType: EntityLocker, ObjectID: created[i].ID, After: created[i]}
		}
		return audit.RecordAll(ctx, tx, entries)
	})
	if err != nil {
		return nil, wrapUnlessDomain("import lockers", err)
	}
	r.mu.Lock()
	for _, id := range ids {
		r.lockers[id] = &entry{enabled: true}
	}
	r.mu.Unlock()
	changes := make([]Change, len(created))
	for i, l := range created {
		r.fix(&l)
		changes[i] = Change{Entity: EntityLocker, ID: l.ID, Action: ActionCreate, After: l}
	}
	r.notify(changes...)
	return changes, nil
}
