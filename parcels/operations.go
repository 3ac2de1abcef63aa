package parcels

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Refusal is a change the parcel's state does not allow, with a
// machine-readable code (web answers 409 with it). It is an ErrConflict.
type Refusal struct {
	Code    string
	Message string
}

func (r *Refusal) Error() string        { return r.Message }
func (r *Refusal) Is(target error) bool { return target == ErrConflict }

// Codes of refusals.
const (
	RefuseClosed       = "parcel_closed"        // picked up, returned or cancelled before deposit: nothing to change
	RefuseNotStored    = "parcel_not_stored"    // storage: only reserved or deposited parcels
	RefuseSizeLocked   = "size_locked"          // size: only before the cell was opened for drop-off
	RefuseNotInCell    = "parcel_not_in_cell"   // move: only a parcel that is in its cell
	RefuseMoving       = "move_in_progress"     // another move (or a drop-off/collection) must finish first
	RefuseCellNotFree  = "cell_not_free"        // move: the target cell is not a free cell of the parcel's size
	RefuseStorageShort = "storage_not_extended" // storage: the new period must be longer
	RefuseReturnFixed  = "return_fixed"         // a customer return's size and period are bound to its code
)

func refuse(code, format string, args ...any) error {
	return &Refusal{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Edit is a correction of a parcel (PATCH /api/v1/parcels/{id}); nil fields
// stay as they are.
type Edit struct {
	Recipient *Recipient `json:"recipient,omitempty"`
	// StorageHours is the new storage period from the deposit: only longer,
	// only while the parcel is reserved or deposited.
	StorageHours *int `json:"storage_hours,omitempty"`
	// Size moves a reservation to a free cell of another size: only before
	// the cell was opened for drop-off.
	Size *string `json:"size,omitempty"`
}

func closed(p Parcel) bool {
	return !p.holdsCell
}

// Edit corrects a parcel's recipient, storage period or size in one
// transaction (history, audit). A deposited parcel whose storage period
// changes gets a new pickup code (it is bound to the period), sent to the
// recipient.
func (s *Store) Edit(ctx context.Context, c Caller, id string, e Edit) (Parcel, error) {
	if e.Recipient == nil && e.StorageHours == nil && e.Size == nil {
		return Parcel{}, fmt.Errorf("%w: nothing to change (recipient, storage_hours, size)", ErrInvalid)
	}
	p, err := s.get(ctx, s.pool, id)
	if err != nil {
		return Parcel{}, err
	}
	if !visible(c, p) {
		return Parcel{}, fmt.Errorf("%w: parcel %s", ErrNotFound, id)
	}
	if closed(p) {
		return Parcel{}, refuse(RefuseClosed, "parcel %s is %s: nothing can be changed", id, p.State)
	}
	if p.Kind == KindReturn && (e.StorageHours != nil || e.Size != nil) {
		return Parcel{}, refuse(RefuseReturnFixed, "parcel %s is a customer return: its return code is bound to its cell and period", id)
	}
	var sets, notes []string
	var args []any
	set := func(col string, v any) {
		args = append(args, v)
		sets = append(sets, fmt.Sprintf("%s = $%d", col, len(args)+3))
	}
	if e.Recipient != nil {
		n := NewParcel{LockerID: p.LockerID, Size: p.Size, Recipient: *e.Recipient, StorageHours: p.StorageHours}
		if err := s.validate(&n); err != nil {
			return Parcel{}, err
		}
		set("recipient_name", n.Recipient.Name)
		set("recipient_phone", n.Recipient.Phone)
		set("recipient_email", n.Recipient.Email)
		notes = append(notes, "recipient changed")
	}
	newCode := false
	if e.StorageHours != nil {
		h := *e.StorageHours
		switch {
		case p.State != StateReserved && p.State != StateDeposited:
			return Parcel{}, refuse(RefuseNotStored, "parcel %s is %s: the storage period is over", id, p.State)
		case h <= p.StorageHours:
			return Parcel{}, refuse(RefuseStorageShort, "storage_hours %d is not longer than the parcel's %d", h, p.StorageHours)
		case time.Duration(h)*time.Hour > s.cfg.MaxStorage:
			return Parcel{}, fmt.Errorf("%w: storage_hours must be at most %d", ErrInvalid, int(s.cfg.MaxStorage/time.Hour))
		}
		set("storage_hours", h)
		if p.State == StateDeposited {
			expires := p.DepositedAt.Add(time.Duration(h) * time.Hour)
			set("expires_at", expires)
			if expires.Sub(s.cfg.Now()) > s.cfg.ReminderBefore {
				sets = append(sets, "reminded_at = NULL")
			}
			newCode = true
		}
		notes = append(notes, fmt.Sprintf("storage period %d h → %d h", p.StorageHours, h))
	}
	var newCell, newSize string
	var newFree []string
	if e.Size != nil {
		size := strings.ToUpper(strings.TrimSpace(*e.Size))
		switch {
		case !slices.Contains(Sizes, size):
			return Parcel{}, fmt.Errorf("%w: size must be one of %s, got %q", ErrInvalid, strings.Join(Sizes, ", "), size)
		case size == p.Size:
		case p.State != StateReserved || p.DropoffAt != nil:
			return Parcel{}, refuse(RefuseSizeLocked, "parcel %s is %s in cell %s: its size changes only before the drop-off", id, p.State, p.Cell)
		default:
			free, _ := s.fleet.FreeCells(p.LockerID, size)
			if len(free) == 0 {
				return Parcel{}, fmt.Errorf("%w of size %s on locker %s", ErrNoFreeCell, size, p.LockerID)
			}
			newCell, newSize, newFree = free[0], size, free
			set("size", size)
			notes = append(notes, fmt.Sprintf("size %s → %s", p.Size, size))
		}
	}
	if len(sets) == 0 {
		return p, nil // the same size again: nothing changes
	}
	var secret []byte
	if newCode && s.cfg.Keys != nil {
		if secret, err = s.cfg.Keys.Key(ctx, p.LockerID); err != nil {
			return Parcel{}, fmt.Errorf("code key of %s: %w", p.LockerID, err)
		}
	}
	try := func(cell string) (Parcel, error) {
		all, ss := args, sets
		if cell != "" {
			all = append(slices.Clone(args), cell)
			ss = append(slices.Clone(sets), fmt.Sprintf("cell = $%d", len(all)+3))
			if r, ok := s.fleet.Cell(p.LockerID, cell); ok {
				m := maxStamp(r.DoorAt, r.OccupiedAt)
				all = append(all, int64(m.Boot), int64(m.Seq))
				ss = append(ss, fmt.Sprintf("mark_boot = $%d, mark_seq = $%d", len(all)+2, len(all)+3))
			}
		}
		note := strings.Join(notes, "; ")
		if cell != "" {
			note += "; cell " + p.Cell + " → " + cell
		}
		pre := func(tx pgx.Tx) error { return nil }
		if cell != "" {
			pre = func(tx pgx.Tx) error {
				if err := lockLocker(ctx, tx, p.LockerID); err != nil {
					return err
				}
				return s.checkQuota(ctx, tx, p.LockerID, newSize, p.Carrier, newFree)
			}
		}
		return s.changeWith(ctx, pre, p, c.Name, note, "api", strings.Join(ss, ", "), all, func(tx pgx.Tx, after Parcel) error {
			if cell != "" {
				if err := movingCellFree(ctx, tx, p.LockerID, cell); err != nil {
					return err
				}
			}
			if newCode && secret != nil {
				return s.notifyWithCode(ctx, tx, after, TemplateReady, secret, fmt.Sprintf("storage%d", after.StorageHours))
			}
			return nil
		})
	}
	after, err := try(newCell)
	if isUniqueViolation(err) || errors.Is(err, errCellMoving) {
		return Parcel{}, fmt.Errorf("%w of size %s on locker %s (taken meanwhile)", ErrNoFreeCell, *e.Size, p.LockerID)
	}
	if err != nil {
		return Parcel{}, err
	}
	if newCell != "" {
		s.setHeld(p.LockerID, newCell, p.ID, true)
		s.setHeld(p.LockerID, p.Cell, p.ID, false)
	}
	return after, nil
}

var errCellMoving = errors.New("a move is leaving the cell")

// movingCellFree checks, under the locker's lock, that no move is leaving
// the cell.
func movingCellFree(ctx context.Context, tx pgx.Tx, lockerID, cell string) error {
	if err := lockLocker(ctx, tx, lockerID); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM parcels_parcels WHERE locker_id = $1 AND move_from = $2 AND holds_cell`, lockerID, cell).Scan(&n); err != nil {
		return fmt.Errorf("moves of %s: %w", lockerID, err)
	}
	if n > 0 {
		return errCellMoving
	}
	return nil
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Move moves a parcel that is in its cell to another free cell of the same
// locker: the old cell opens by command; once its door closed with the cell
// empty the new one opens; once that door closed with the cell occupied the
// parcel is there. Both cells are held until the move is done; the recipient
// then gets a new pickup code (it is bound to the cell).
func (s *Store) Move(ctx context.Context, c Caller, id, cell string) (Parcel, any, error) {
	cell = strings.ToUpper(strings.TrimSpace(cell))
	p, err := s.get(ctx, s.pool, id)
	if err != nil {
		return Parcel{}, nil, err
	}
	if !visible(c, p) {
		return Parcel{}, nil, fmt.Errorf("%w: parcel %s", ErrNotFound, id)
	}
	switch {
	case cell == "":
		return Parcel{}, nil, fmt.Errorf("%w: cell is required", ErrInvalid)
	case p.MoveFrom != "":
		return Parcel{}, nil, refuse(RefuseMoving, "parcel %s is being moved from %s to %s", id, p.MoveFrom, p.Cell)
	case closed(p) || p.State == StateReserved:
		return Parcel{}, nil, refuse(RefuseNotInCell, "parcel %s is %s: only a parcel in its cell is moved", id, p.State)
	case p.CollectAt != nil:
		return Parcel{}, nil, refuse(RefuseMoving, "parcel %s is being collected for return", id)
	case cell == p.Cell:
		return Parcel{}, nil, fmt.Errorf("%w: parcel %s is in cell %s already", ErrInvalid, id, cell)
	}
	free, _ := s.fleet.FreeCells(p.LockerID, p.Size)
	if !slices.Contains(free, cell) {
		return Parcel{}, nil, refuse(RefuseCellNotFree, "cell %s of locker %s is not a free cell of size %s", cell, p.LockerID, p.Size)
	}
	var mark Stamp
	if r, ok := s.fleet.Cell(p.LockerID, p.Cell); ok {
		mark = maxStamp(r.DoorAt, r.OccupiedAt)
	}
	// The locker's lock first: a create running meanwhile must see the cell
	// this move leaves as held.
	after, err := s.changeWith(ctx, func(tx pgx.Tx) error { return lockLocker(ctx, tx, p.LockerID) }, p, c.Name, "move "+p.Cell+" → "+cell+" asked", "api",
		`cell = $4, move_from = cell, move_stage = 'from', mark_boot = $5, mark_seq = $6`,
		[]any{cell, int64(mark.Boot), int64(mark.Seq)}, func(tx pgx.Tx, _ Parcel) error { return movingCellFree(ctx, tx, p.LockerID, cell) })
	if isUniqueViolation(err) || errors.Is(err, errCellMoving) {
		return Parcel{}, nil, refuse(RefuseCellNotFree, "cell %s of locker %s was taken meanwhile", cell, p.LockerID)
	}
	if err != nil {
		return Parcel{}, nil, err
	}
	s.setHeld(p.LockerID, cell, p.ID, true) // p.Cell stays held (move_from) until the move is done; change gave the locker its offline list without it
	op, err := s.openMoveCell(ctx, c.Name, after, "from")
	if err != nil {
		return after, nil, err
	}
	s.TwinChanged(p.LockerID, nil)
	return after, op.Command, nil
}

// openMoveCell opens a cell of a move: the old one (stage from) or the new
// one (stage to). The key makes it once per move and stage.
func (s *Store) openMoveCell(ctx context.Context, by string, p Parcel, stage string) (Opened, error) {
	cell := p.MoveFrom
	if stage == "to" {
		cell = p.Cell
	}
	op, err := s.fleet.OpenCell(ctx, OpenRequest{LockerID: p.LockerID, Cell: cell,
		IdempotencyKey: "parcel:" + p.ID + ":move:" + p.MoveFrom + ":" + p.Cell + ":" + stage, Caller: "parcels",
		CreatedBy: by + " (parcel " + p.ID + " move " + p.MoveFrom + " → " + p.Cell + ")"})
	if err != nil {
		return Opened{}, fmt.Errorf("open cell %s to move parcel %s: %w", cell, p.ID, err)
	}
	return op, nil
}

// evaluateMove moves a moving parcel on as the twin says.
func (s *Store) evaluateMove(ctx context.Context, p Parcel) error {
	switch p.MoveStage {
	case "from":
		r, ok := s.fleet.Cell(p.LockerID, p.MoveFrom)
		if !ok || r.Door != "closed" || r.Occupied == nil || *r.Occupied || !r.DoorAt.After(p.mark) || !r.OccupiedAt.After(p.mark) {
			return nil
		}
		var mark Stamp
		if t, ok := s.fleet.Cell(p.LockerID, p.Cell); ok {
			mark = maxStamp(t.DoorAt, t.OccupiedAt)
		}
		after, err := s.change(ctx, p, "courier", "taken out of "+p.MoveFrom+": door closed, cell empty", reportSource(maxStamp(r.DoorAt, r.OccupiedAt)),
			`move_stage = 'to', mark_boot = $4, mark_seq = $5`, []any{int64(mark.Boot), int64(mark.Seq)}, nil)
		if err != nil {
			return err
		}
		p = after
		fallthrough
	case "to":
		// Opened at every evaluation of this stage: the key answers the
		// first command, so a crash between the stages still opens it once.
		if _, err := s.openMoveCell(ctx, "hub", p, "to"); err != nil {
			return err
		}
		r, ok := s.fleet.Cell(p.LockerID, p.Cell)
		if !ok || r.Door != "closed" || r.Occupied == nil || !*r.Occupied || !r.DoorAt.After(p.mark) || !r.OccupiedAt.After(p.mark) {
			return nil
		}
		mark := maxStamp(r.DoorAt, r.OccupiedAt)
		var secret []byte
		if p.State == StateDeposited && s.cfg.Keys != nil {
			var err error
			if secret, err = s.cfg.Keys.Key(ctx, p.LockerID); err != nil {
				return fmt.Errorf("code key of %s: %w", p.LockerID, err)
			}
		}
		from := p.MoveFrom
		_, err := s.change(ctx, p, "courier", "moved "+from+" → "+p.Cell+": door closed, cell occupied", reportSource(mark),
			`move_from = '', move_stage = '', mark_boot = $4, mark_seq = $5`, []any{int64(mark.Boot), int64(mark.Seq)},
			func(tx pgx.Tx, after Parcel) error {
				if secret == nil {
					return nil
				}
				return s.notifyWithCode(ctx, tx, after, TemplateReady, secret, "moved:"+after.Cell)
			})
		if err != nil {
			return err
		}
		s.setHeld(p.LockerID, from, p.ID, false)
	}
	return nil
}
