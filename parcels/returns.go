package parcels

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Kinds of parcels.
const (
	KindDelivery = "delivery"
	KindReturn   = "return"
)

// TemplateReturnCode tells the sender of a customer return the code that
// opens the cell.
const TemplateReturnCode = "return_code"

// NewReturn is a customer return (POST /api/v1/returns): the sender drops
// the parcel at the locker with a return code (sent to the sender by SMS or
// e-mail) and the carrier's courier collects it.
type NewReturn struct {
	LockerID     string    `json:"locker"`
	Size         string    `json:"size"`
	Sender       Recipient `json:"sender"`
	Reference    string    `json:"reference"`
	Barcode      string    `json:"barcode,omitempty"`
	StorageHours int       `json:"storage_hours"` // how long the return code is valid
	Carrier      string    `json:"carrier,omitempty"`
	// IdempotencyKey is scoped to the caller, as for deliveries.
	IdempotencyKey string `json:"-"`
}

// CreateReturn reserves a cell for a customer return, a cell held for
// returns first, and sends the sender the return code.
func (s *Store) CreateReturn(ctx context.Context, c Caller, n NewReturn) (Parcel, bool, error) {
	return s.Create(ctx, c, NewParcel{LockerID: n.LockerID, Size: n.Size, Recipient: n.Sender, Reference: n.Reference,
		Barcode: n.Barcode, StorageHours: n.StorageHours, Carrier: n.Carrier, IdempotencyKey: n.IdempotencyKey, kind: KindReturn})
}

// sendReturnCode tells the sender the code of a reserved return.
func (s *Store) sendReturnCode(ctx context.Context, tx pgx.Tx, p Parcel, secret []byte) error {
	data, err := s.recipientData(ctx, p)
	if err != nil {
		return err
	}
	_, to := codeWindow(p)
	data["expires_at"] = to.UTC().Format("2006-01-02T15:04:05Z07:00")
	code, err := s.codeFor(secret, p)
	if err != nil {
		return err
	}
	data["code"] = code
	return s.notify(ctx, tx, p, TemplateReturnCode, data)
}

// depositReturn: the sender put the return in and closed the door. It is
// marked for return at once and waits for the courier; it never expires.
// The sender is told it was accepted, in the same transaction.
func (s *Store) depositReturn(ctx context.Context, p Parcel, mark Stamp) error {
	_, err := s.change(ctx, p, "sender", "return dropped off: door closed, cell occupied", reportSource(mark),
		`state = 'deposited', to_return = true, deposited_at = $3, mark_boot = $4, mark_seq = $5`,
		[]any{int64(mark.Boot), int64(mark.Seq)}, func(tx pgx.Tx, after Parcel) error {
			data, err := s.recipientData(ctx, after)
			if err != nil {
				return err
			}
			return s.notify(ctx, tx, after, TemplateReturnAccepted, data)
		})
	return err
}

// ReturnGroup is what a courier collects at one locker for one carrier.
type ReturnGroup struct {
	LockerID string   `json:"locker_id"`
	Carrier  string   `json:"carrier"`
	Parcels  []Parcel `json:"parcels"`
}

// ToCollect lists the parcels waiting for a courier (expired, cancelled
// after deposit, customer returns dropped off), grouped by locker and
// carrier, for the lockers and carrier asked ("" all) and the caller's.
func (s *Store) ToCollect(ctx context.Context, c Caller, lockerID, carrier string) ([]ReturnGroup, error) {
	if c.Carrier != "" {
		if carrier != "" && carrier != c.Carrier {
			return []ReturnGroup{}, nil
		}
		carrier = c.Carrier
	}
	ps, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels
		WHERE holds_cell AND to_return AND move_from = '' AND ($1 = '' OR locker_id = $1) AND ($2 = '' OR carrier = $2)
		AND ($3 = 0 OR client_id = $3)
		ORDER BY locker_id, carrier, cell LIMIT 10000`, lockerID, carrier, c.ClientID))
	if err != nil {
		return nil, fmt.Errorf("parcels to collect: %w", err)
	}
	groups := []ReturnGroup{}
	for _, p := range ps {
		if n := len(groups); n == 0 || groups[n-1].LockerID != p.LockerID || groups[n-1].Carrier != p.Carrier {
			groups = append(groups, ReturnGroup{LockerID: p.LockerID, Carrier: p.Carrier})
		}
		groups[len(groups)-1].Parcels = append(groups[len(groups)-1].Parcels, p)
	}
	return groups, nil
}
