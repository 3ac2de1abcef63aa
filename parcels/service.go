package parcels

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Service access (docs/parcels.md "Service access"): a technician opens any
// cell in service mode, from the dashboard (ServiceOpen) or with a one-time
// code typed at the locker (IssueServiceCode, then code.check). Either way
// the cell.open command is created by "service:<user>" and audited.

// ServiceCodeTTL is how long a service code is valid.
const ServiceCodeTTL = 15 * time.Minute

// ServiceCode is a one-time code as issued to the technician (the only time
// it is shown).
type ServiceCode struct {
	LockerID  string    `json:"locker_id"`
	Cell      string    `json:"cell"`
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

func serviceCause(user string) string { return "service:" + user }

func (s *Store) checkCell(lockerID, cell string) error {
	if cell == "" {
		return fmt.Errorf("%w: cell is required", ErrInvalid)
	}
	if _, ok := s.fleet.Cell(lockerID, cell); !ok {
		return fmt.Errorf("%w: cell %s of locker %s (not reported by the locker)", ErrNotFound, cell, lockerID)
	}
	return nil
}

// ServiceOpen opens a cell of a locker in service mode for a technician
// (user is the technician's name): a cell.open command created by
// service:<user>, audited with that cause.
func (s *Store) ServiceOpen(ctx context.Context, c Caller, user, lockerID, cell string) (Opened, error) {
	cell = strings.ToUpper(strings.TrimSpace(cell))
	if err := s.checkCell(lockerID, cell); err != nil {
		return Opened{}, err
	}
	op, err := s.fleet.OpenCell(ctx, OpenRequest{LockerID: lockerID, Cell: cell, IdempotencyKey: "service:" + strings.ToLower(rand.Text()),
		Caller: c.Scope, CreatedBy: serviceCause(user)})
	if err != nil {
		return Opened{}, fmt.Errorf("service open of %s %s: %w", lockerID, cell, err)
	}
	if err := audit.Record(ctx, s.pool, audit.Entry{Action: "service_open", ObjectType: "cell", ObjectID: lockerID + "/" + cell,
		After: map[string]any{"locker": lockerID, "cell": cell, "cause": serviceCause(user), "command": op.ID, "via": "dashboard"}}); err != nil {
		return Opened{}, err
	}
	return op, nil
}

func serviceHash(lockerID, code string) []byte {
	h := sha256.Sum256([]byte("lockerhub-service-v1\x00" + lockerID + "\x00" + code))
	return h[:]
}

// IssueServiceCode makes a one-time code that opens the cell once at the
// locker within ServiceCodeTTL. Only its hash is stored; the audit record
// does not hold it.
func (s *Store) IssueServiceCode(ctx context.Context, user, lockerID, cell string) (ServiceCode, error) {
	cell = strings.ToUpper(strings.TrimSpace(cell))
	if err := s.checkCell(lockerID, cell); err != nil {
		return ServiceCode{}, err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return ServiceCode{}, err
	}
	code := fmt.Sprintf("%08d", n.Int64())
	now := s.cfg.Now().UTC()
	sc := ServiceCode{LockerID: lockerID, Cell: cell, Code: code, ExpiresAt: now.Add(ServiceCodeTTL).Truncate(time.Millisecond)}
	err = pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO parcels_service_codes (locker_id, cell, code_hash, issued_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, lockerID, cell, serviceHash(lockerID, code), user, now, sc.ExpiresAt).Scan(&id); err != nil {
			return fmt.Errorf("service code: %w", err)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: "service_code", ObjectID: fmt.Sprint(id),
			After: map[string]any{"locker": lockerID, "cell": cell, "issued_to": user, "expires_at": sc.ExpiresAt}})
	})
	if err != nil {
		return ServiceCode{}, err
	}
	return sc, nil
}

var errNoServiceCode = errors.New("no service code")

// useServiceCode spends a valid service code of the locker typed at its
// keypad and opens its cell (code.check, after no parcel matched).
func (s *Store) useServiceCode(ctx context.Context, lockerID, askID, code string, now time.Time) (string, error) {
	var cell, user string
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE parcels_service_codes SET used_at = $3
			WHERE id = (SELECT id FROM parcels_service_codes WHERE locker_id = $1 AND code_hash = $2 AND used_at IS NULL AND expires_at > $3 LIMIT 1)
			RETURNING cell, issued_by`, lockerID, serviceHash(lockerID, code), now.UTC()).Scan(&cell, &user)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNoServiceCode
		}
		if err != nil {
			return fmt.Errorf("service code: %w", err)
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "service_open", ObjectType: "cell", ObjectID: lockerID + "/" + cell,
			After: map[string]any{"locker": lockerID, "cell": cell, "cause": serviceCause(user), "via": "service code", "ask": askID}})
	})
	if err != nil {
		return "", err
	}
	if _, err := s.fleet.OpenCell(ctx, OpenRequest{LockerID: lockerID, Cell: cell, IdempotencyKey: "ask:" + lockerID + ":" + askID,
		Caller: "parcels", CreatedBy: serviceCause(user)}); err != nil {
		return "", err
	}
	s.log.Info("service code used", "locker", lockerID, "cell", cell, "user", user)
	return cell, nil
}

// ServiceCodeResult is code.check's answer for a service code: the cell,
// no parcel.
func serviceResult(cell string) protocol.CodeCheckResult {
	return protocol.CodeCheckResult{Cell: cell, Parcel: "", Charge: []byte("null")}
}
