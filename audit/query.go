package audit

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// MaxExport bounds one CSV export; the next part starts at its cursor.
	MaxExport = 100_000
)

// ErrInvalid is a bad filter or cursor.
var ErrInvalid = errors.New("invalid")

// Filter selects records; empty fields select everything.
type Filter struct {
	Actor      string    // actor name or id
	ObjectType string    // e.g. "locker"
	ObjectID   string    // e.g. "L1"
	Action     string    // e.g. "update"
	From, To   time.Time // from ≤ at < to (zero: open)
	Limit      int       // 0: DefaultLimit
	Cursor     string    // from a previous page's Next: records older than it
}

// Page is one page of records, newest first; Next is the cursor of the
// following (older) page, "" at the end.
type Page struct {
	Records []Row  `json:"records"`
	Next    string `json:"next_cursor"`
}

// Store reads the audit log.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a reader of the audit log on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const rowColumns = `id, at, actor_kind, actor_id, actor_name, actor_role, remote_addr, request_id,
	action, object_type, object_id, before, after`

func rowFields(r *Row) []any {
	return []any{&r.ID, &r.At, &r.Actor.Kind, &r.Actor.ID, &r.Actor.Name, &r.Actor.Role, &r.Actor.Addr,
		&r.Actor.RequestID, &r.Action, &r.ObjectType, &r.ObjectID, &r.Before, &r.After}
}

// query builds the SELECT of f with keyset pagination on id (newest first).
// Ids come from a sequence, so a record committed late with a smaller id
// than a page already read appears only on later pages, never twice.
func (f Filter) query(max int) (string, []any, int, error) {
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > max {
		return "", nil, 0, fmt.Errorf("%w: limit must be between 1 and %d, got %d", ErrInvalid, max, f.Limit)
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Actor != "" {
		add(`(actor_name = $? OR actor_id = $?)`, f.Actor)
	}
	if f.ObjectType != "" {
		add(`object_type = $?`, f.ObjectType)
	}
	if f.ObjectID != "" {
		add(`object_id = $?`, f.ObjectID)
	}
	if f.Action != "" {
		add(`action = $?`, f.Action)
	}
	if !f.From.IsZero() {
		add(`at >= $?`, f.From)
	}
	if !f.To.IsZero() {
		add(`at < $?`, f.To)
	}
	if f.Cursor != "" {
		id, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || id < 1 {
			return "", nil, 0, fmt.Errorf("%w: cursor %q is not one this API gave", ErrInvalid, f.Cursor)
		}
		add(`id < $?`, id)
	}
	q := `SELECT ` + rowColumns + ` FROM audit_log`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit+1)
	return q, args, limit, nil
}

// List returns one page of records matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) (Page, error) {
	q, args, limit, err := f.query(MaxLimit)
	if err != nil {
		return Page{}, err
	}
	p := Page{Records: []Row{}}
	err = s.each(ctx, q, args, func(r Row) error {
		if len(p.Records) == limit {
			p.Next = strconv.FormatInt(p.Records[limit-1].ID, 10)
			return nil
		}
		p.Records = append(p.Records, r)
		return nil
	})
	return p, err
}

func (s *Store) each(ctx context.Context, q string, args []any, fn func(Row) error) error {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("audit query: %w", err)
	}
	var r Row
	_, err = pgx.ForEachRow(rows, rowFields(&r), func() error {
		c := r
		return fn(c)
	})
	if err != nil {
		return fmt.Errorf("audit query: %w", err)
	}
	return nil
}

// CSVHeader is the first line of an export.
var CSVHeader = []string{"id", "at", "actor_kind", "actor_id", "actor_name", "actor_role", "remote_addr",
	"request_id", "action", "object_type", "object_id", "before", "after"}

// ExportCSV writes the records matching f, newest first, as CSV (f.Limit
// defaults to MaxExport) and returns the cursor of the rest ("" when all
// were written). The first call that fails to write ends it.
func (s *Store) ExportCSV(ctx context.Context, f Filter, w io.Writer) (string, error) {
	if f.Limit == 0 {
		f.Limit = MaxExport
	}
	q, args, limit, err := f.query(MaxExport)
	if err != nil {
		return "", err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return "", err
	}
	n := 0
	var last int64
	next := ""
	err = s.each(ctx, q, args, func(r Row) error {
		if n == limit {
			next = strconv.FormatInt(last, 10)
			return nil
		}
		n++
		last = r.ID
		return cw.Write([]string{strconv.FormatInt(r.ID, 10), r.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			r.Actor.Kind, r.Actor.ID, cell(r.Actor.Name), r.Actor.Role, r.Actor.Addr, r.Actor.RequestID,
			r.Action, r.ObjectType, cell(r.ObjectID), string(r.Before), string(r.After)})
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	return next, err
}

// cell keeps a spreadsheet from reading a value as a formula (OWASP "CSV
// injection"): the name tried at a failed login is whatever was typed, so
// a value starting with = + - @ or a control character gets a leading '.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
