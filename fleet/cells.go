package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Cell sizes, smallest first.
const (
	SizeS  = "S"
	SizeM  = "M"
	SizeL  = "L"
	SizeXL = "XL"
)

// Sizes lists the cell sizes, smallest first.
var Sizes = []string{SizeS, SizeM, SizeL, SizeXL}

// Holds: what a cell may be kept for, so that it is not free for loading.
const (
	// HoldReturns keeps a cell for parcels that recipients send back.
	HoldReturns = "returns"
)

// ColumnCells is how many cells a column holds in the layout of a locker
// registered with only a cell count.
const ColumnCells = 10

// Cell is one cell of a locker or of a model's layout. Name is what is printed
// on the locker: the column's letters and a two-digit row (A01, B10, AA03).
// Col and Row are its position, both from 1: Col is the column's number
// (A = 1, Z = 26, AA = 27), Row the printed row. In API input Col and Row may
// be left out; they are always derived from Name.
//
// Hold, when set, keeps the cell for a purpose (HoldReturns) rather than for
// loading: the fleet's free cells do not count it.
type Cell struct {
	Name string `json:"name"`
	Size string `json:"size"`
	Col  int    `json:"col"`
	Row  int    `json:"row"`
	Hold string `json:"hold,omitempty"`
}

// ParseCellName returns the column and row numbers of a cell name such as
// "A01" (1, 1) or "AB12" (28, 12).
func ParseCellName(name string) (col, row int, err error) {
	i := 0
	for i < len(name) && name[i] >= 'A' && name[i] <= 'Z' {
		col = col*26 + int(name[i]-'A'+1)
		i++
	}
	digits := name[i:]
	if i == 0 || i > 2 || len(digits) != 2 || digits[0] < '0' || digits[0] > '9' || digits[1] < '0' || digits[1] > '9' {
		return 0, 0, fmt.Errorf("cell name %q is not one or two column letters (A–Z) and a two-digit row, like A01", name)
	}
	row = int(digits[0]-'0')*10 + int(digits[1]-'0')
	if row == 0 {
		return 0, 0, fmt.Errorf("cell name %q: rows start at 01", name)
	}
	return col, row, nil
}

// ColumnName returns the letters of column col (1 = A, 26 = Z, 27 = AA).
func ColumnName(col int) string {
	var b []byte
	for c := col; c > 0; c = (c - 1) / 26 {
		b = append([]byte{byte('A' + (c-1)%26)}, b...)
	}
	return string(b)
}

// CellName returns the name of the cell at col and row (1, 1 → "A01").
func CellName(col, row int) string { return fmt.Sprintf("%s%02d", ColumnName(col), row) }

// DefaultLayout is the layout of a locker registered with only a cell count:
// columns of ColumnCells (A01–A10, B01–B10, …), every cell of size M.
func DefaultLayout(n int) []Cell {
	cells := make([]Cell, n)
	for i := range cells {
		col, row := i/ColumnCells+1, i%ColumnCells+1
		cells[i] = Cell{Name: CellName(col, row), Size: SizeM, Col: col, Row: row}
	}
	return cells
}

// normalizeLayout checks a layout (names, sizes, no name twice, at most
// MaxCells) and returns it with Col and Row set, ordered by column and row.
func normalizeLayout(field string, in []Cell) ([]Cell, error) {
	if len(in) == 0 {
		return nil, invalid(field, "a layout has at least one cell")
	}
	if len(in) > MaxCells {
		return nil, invalid(field, "at most %d cells, got %d", MaxCells, len(in))
	}
	out := make([]Cell, len(in))
	seen := make(map[string]bool, len(in))
	for i, c := range in {
		col, row, err := ParseCellName(c.Name)
		if err != nil {
			return nil, invalid(fmt.Sprintf("%s[%d].name", field, i), "%v", err)
		}
		if seen[c.Name] {
			return nil, invalid(fmt.Sprintf("%s[%d].name", field, i), "cell %s appears twice", c.Name)
		}
		seen[c.Name] = true
		size := strings.ToUpper(c.Size)
		if !slices.Contains(Sizes, size) {
			return nil, invalid(fmt.Sprintf("%s[%d].size", field, i), "cell %s: size %q is not one of S, M, L, XL", c.Name, c.Size)
		}
		if c.Hold != "" && c.Hold != HoldReturns {
			return nil, invalid(fmt.Sprintf("%s[%d].hold", field, i), "cell %s: hold %q is not %q (or empty)", c.Name, c.Hold, HoldReturns)
		}
		out[i] = Cell{Name: c.Name, Size: size, Col: col, Row: row, Hold: c.Hold}
	}
	sortCells(out)
	return out, nil
}

func sortCells(cells []Cell) {
	slices.SortFunc(cells, func(a, b Cell) int {
		if a.Col != b.Col {
			return a.Col - b.Col
		}
		return a.Row - b.Row
	})
}

// Cells returns the cells of a locker ordered by column and row.
func (r *Registry) Cells(ctx context.Context, lockerID string) ([]Cell, error) {
	rows, err := r.pool.Query(ctx, `SELECT name, size, col, row, coalesce(hold, '') FROM fleet_cells WHERE locker_id = $1 ORDER BY col, row`, lockerID)
	if err != nil {
		return nil, fmt.Errorf("cells of %s: %w", lockerID, err)
	}
	cells, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Cell])
	if err != nil {
		return nil, fmt.Errorf("cells of %s: %w", lockerID, err)
	}
	if len(cells) == 0 { // every locker has at least one cell
		if _, err := r.Get(ctx, lockerID); err != nil {
			return nil, err
		}
	}
	return cells, nil
}

// AllCells returns the cells of every locker, by locker ID, each ordered by
// column and row: one query for building the twins of the whole fleet.
func (r *Registry) AllCells(ctx context.Context) (map[string][]Cell, error) {
	rows, err := r.pool.Query(ctx, `SELECT locker_id, name, size, col, row, coalesce(hold, '') FROM fleet_cells ORDER BY locker_id, col, row`)
	if err != nil {
		return nil, fmt.Errorf("cells: %w", err)
	}
	out := map[string][]Cell{}
	var id string
	var c Cell
	if _, err := pgx.ForEachRow(rows, []any{&id, &c.Name, &c.Size, &c.Col, &c.Row, &c.Hold}, func() error {
		out[id] = append(out[id], c)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("cells: %w", err)
	}
	return out, nil
}

// currentCells reads a locker's cells inside a transaction.
func currentCells(ctx context.Context, q querier, lockerID string) ([]Cell, error) {
	rows, err := q.Query(ctx, `SELECT name, size, col, row, coalesce(hold, '') FROM fleet_cells WHERE locker_id = $1 ORDER BY col, row`, lockerID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Cell])
}

// replaceCells sets the cells of the given lockers.
func replaceCells(ctx context.Context, tx pgx.Tx, lockerID string, cells []Cell) error {
	if _, err := tx.Exec(ctx, `DELETE FROM fleet_cells WHERE locker_id = $1`, lockerID); err != nil {
		return err
	}
	return copyCells(ctx, tx, map[string][]Cell{lockerID: cells}, []string{lockerID})
}

// copyCells inserts the cells of the lockers in ids (in that order) with COPY.
func copyCells(ctx context.Context, tx pgx.Tx, cells map[string][]Cell, ids []string) error {
	i, j := 0, 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		for i < len(ids) && j >= len(cells[ids[i]]) {
			i, j = i+1, 0
		}
		if i == len(ids) {
			return nil, nil
		}
		c := cells[ids[i]][j]
		j++
		var hold *string
		if c.Hold != "" {
			hold = &c.Hold
		}
		return []any{ids[i], c.Name, c.Size, c.Col, c.Row, hold}, nil
	})
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"fleet_cells"}, []string{"locker_id", "name", "size", "col", "row", "hold"}, src)
	return err
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
