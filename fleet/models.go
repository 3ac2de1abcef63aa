package fleet

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// ErrInUse refuses to delete or reshape what others still use.
var ErrInUse = errors.New("in use")

// Capabilities a locker model may have.
const (
	CapCamera  = "camera"
	CapKeypad  = "keypad"
	CapPOS     = "pos"
	CapScanner = "scanner"
	CapScreen  = "screen"
)

// Capabilities lists the known capabilities in alphabetical order.
var Capabilities = []string{CapCamera, CapKeypad, CapPOS, CapScanner, CapScreen}

// Model is a locker model: who makes it, its cell layout and its hardware.
type Model struct {
	ID           string    `json:"id"`
	Manufacturer string    `json:"manufacturer"`
	Name         string    `json:"name"`
	Layout       []Cell    `json:"layout"` // ordered by column and row
	Cells        int       `json:"cells"`  // len(Layout)
	Capabilities []string  `json:"capabilities"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// NewModel defines a model: the body of POST /api/v1/models, and of PUT
// /api/v1/models/{id}, where ID may be left out.
type NewModel struct {
	ID           string   `json:"id"`
	Manufacturer string   `json:"manufacturer"`
	Name         string   `json:"name"`
	Layout       []Cell   `json:"layout"`
	Capabilities []string `json:"capabilities"`
}

var modelIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidateModelID checks a model ID: a slug of 1–64 lower-case letters,
// digits, '.', '_' and '-', starting with a letter or digit.
func ValidateModelID(id string) error {
	if !modelIDPattern.MatchString(id) {
		return invalid("id", "model ID %q is not a slug of 1–64 lower-case letters, digits, '.', '_' or '-'", id)
	}
	return nil
}

// normalize checks a model definition and returns it with its layout
// ordered and completed and its capabilities sorted, without duplicates.
func (n NewModel) normalize() (NewModel, error) {
	if err := ValidateModelID(n.ID); err != nil {
		return n, err
	}
	var err error
	if n.Manufacturer, err = text("manufacturer", n.Manufacturer, 100, true); err != nil {
		return n, err
	}
	if n.Name, err = text("name", n.Name, 100, true); err != nil {
		return n, err
	}
	if n.Layout, err = normalizeLayout("layout", n.Layout); err != nil {
		return n, err
	}
	caps := make([]string, 0, len(n.Capabilities))
	for _, c := range n.Capabilities {
		c = strings.ToLower(strings.TrimSpace(c))
		if !slices.Contains(Capabilities, c) {
			return n, invalid("capabilities", "%q is not one of %s", c, strings.Join(Capabilities, ", "))
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	slices.Sort(caps)
	n.Capabilities = caps
	return n, nil
}

const modelColumns = `id, manufacturer, name, layout, capabilities, created_at, updated_at`

func scanModel(row pgx.Row) (Model, error) {
	var m Model
	err := row.Scan(&m.ID, &m.Manufacturer, &m.Name, &m.Layout, &m.Capabilities, &m.CreatedAt, &m.UpdatedAt)
	if m.Layout == nil {
		m.Layout = []Cell{}
	}
	if m.Capabilities == nil {
		m.Capabilities = []string{}
	}
	m.Cells = len(m.Layout)
	return m, err
}

// CreateModel adds a locker model.
func (r *Registry) CreateModel(ctx context.Context, n NewModel) (Model, Change, error) {
	n, err := n.normalize()
	if err != nil {
		return Model{}, Change{}, err
	}
	var m Model
	err = pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		m, err = scanModel(tx.QueryRow(ctx, `INSERT INTO fleet_models (id, manufacturer, name, layout, capabilities)
			VALUES ($1, $2, $3, $4, $5) RETURNING `+modelColumns, n.ID, n.Manufacturer, n.Name, n.Layout, n.Capabilities))
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: ActionCreate, ObjectType: EntityModel, ObjectID: m.ID, After: m})
	})
	if pg.IsUniqueViolation(err) {
		return Model{}, Change{}, fmt.Errorf("%w: model %s", ErrExists, n.ID)
	}
	if err != nil {
		return Model{}, Change{}, fmt.Errorf("create model: %w", err)
	}
	c := Change{Entity: EntityModel, ID: m.ID, Action: ActionCreate, After: m}
	r.notify(c)
	return m, c, nil
}

// Models returns every model ordered by ID.
func (r *Registry) Models(ctx context.Context) ([]Model, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+modelColumns+` FROM fleet_models ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	out := []Model{}
	defer rows.Close()
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// GetModel returns one model.
func (r *Registry) GetModel(ctx context.Context, id string) (Model, error) {
	return getModel(ctx, r.pool, id, "")
}

func getModel(ctx context.Context, q querier, id, lock string) (Model, error) {
	m, err := scanModel(q.QueryRow(ctx, `SELECT `+modelColumns+` FROM fleet_models WHERE id = $1 `+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Model{}, fmt.Errorf("%w: model %s", ErrNotFound, id)
	}
	if err != nil {
		return Model{}, fmt.Errorf("get model: %w", err)
	}
	return m, nil
}

// UpdateModel replaces a model's definition. Its layout may change only while
// no locker uses the model (ErrInUse): the lockers' cells come from it.
func (r *Registry) UpdateModel(ctx context.Context, id string, n NewModel) (Model, Change, error) {
	if n.ID != "" && n.ID != id {
		return Model{}, Change{}, invalid("id", "the model ID cannot change (%s in the path, %s in the body)", id, n.ID)
	}
	n.ID = id
	n, err := n.normalize()
	if err != nil {
		return Model{}, Change{}, err
	}
	var before, after Model
	err = pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		if before, err = getModel(ctx, tx, id, "FOR UPDATE"); err != nil {
			return err
		}
		if !slices.Equal(before.Layout, n.Layout) {
			if used, err := modelUsers(ctx, tx, id); err != nil {
				return err
			} else if used > 0 {
				return fmt.Errorf("%w: model %s is used by %d lockers: its layout cannot change (add a new model instead)", ErrInUse, id, used)
			}
		}
		after, err = scanModel(tx.QueryRow(ctx, `UPDATE fleet_models SET manufacturer = $2, name = $3, layout = $4,
			capabilities = $5, updated_at = now() WHERE id = $1 RETURNING `+modelColumns,
			id, n.Manufacturer, n.Name, n.Layout, n.Capabilities))
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: ActionUpdate, ObjectType: EntityModel, ObjectID: id, Before: before, After: after})
	})
	if err != nil {
		return Model{}, Change{}, wrapUnlessDomain("update model", err)
	}
	c := Change{Entity: EntityModel, ID: id, Action: ActionUpdate, Before: before, After: after}
	r.notify(c)
	return after, c, nil
}

// DeleteModel removes a model no locker uses (else ErrInUse).
func (r *Registry) DeleteModel(ctx context.Context, id string) (Change, error) {
	var before Model
	err := pg.Tx(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		if before, err = getModel(ctx, tx, id, "FOR UPDATE"); err != nil {
			return err
		}
		if used, err := modelUsers(ctx, tx, id); err != nil {
			return err
		} else if used > 0 {
			return fmt.Errorf("%w: model %s is used by %d lockers", ErrInUse, id, used)
		}
		_, err = tx.Exec(ctx, `DELETE FROM fleet_models WHERE id = $1`, id)
		if pg.IsCode(err, "23503") { // a locker took it meanwhile
			return fmt.Errorf("%w: model %s is used by a locker", ErrInUse, id)
		}
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: ActionDelete, ObjectType: EntityModel, ObjectID: id, Before: before})
	})
	if err != nil {
		return Change{}, wrapUnlessDomain("delete model", err)
	}
	c := Change{Entity: EntityModel, ID: id, Action: ActionDelete, Before: before}
	r.notify(c)
	return c, nil
}

func modelUsers(ctx context.Context, q querier, id string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM fleet_lockers WHERE model = $1`, id).Scan(&n)
	return n, err
}

// wrapUnlessDomain adds context to database errors; domain errors already
// say what is wrong and pass as they are.
func wrapUnlessDomain(what string, err error) error {
	for _, d := range []error{ErrInvalid, ErrNotFound, ErrExists, ErrInUse, ErrDisabled} {
		if errors.Is(err, d) {
			return err
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
