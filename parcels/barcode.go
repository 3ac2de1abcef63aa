package parcels

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Scan is one barcode a locker read, as the parcel's page shows it.
type Scan struct {
	At      time.Time `json:"at"`
	Locker  string    `json:"locker"`
	Cell    string    `json:"cell,omitempty"`
	Barcode string    `json:"barcode"`
	Purpose string    `json:"purpose"`
	Result  string    `json:"result"` // ok, or the error code the locker showed
	Ask     string    `json:"ask"`
}

// CheckBarcode answers the barcode.check ask of a locker (registered with
// the fleet's ask transport, DESIGN decision 18). For a drop-off the barcode
// must be a reserved delivery of this locker (and of the cell, when the
// courier named one): the hub opens its cell by a cell.open command keyed by
// the ask. For a pickup or a collection it must be the parcel of the open
// cell. A mismatch opens nothing and is answered with a code the locker
// shows (unknown_barcode, barcode_mismatch). Every scan is recorded.
func (s *Store) CheckBarcode(ctx context.Context, lockerID, askID string, params json.RawMessage) (json.RawMessage, *protocol.Error) {
	in, err := protocol.DecodeBarcodeCheck(params)
	if err != nil {
		s.m.scans.WithLabelValues(protocol.ErrCodeBadParams).Inc()
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: err.Error()}
	}
	match, expected, perr := s.scanTarget(ctx, lockerID, in)
	if perr != nil && perr.Code == protocol.ErrCodeInternal {
		s.m.scans.WithLabelValues(perr.Code).Inc()
		return nil, perr
	}
	result := "ok"
	if perr != nil {
		result = perr.Code
	}
	target := match
	if target == nil {
		target = expected // the parcel the scan was checked against, if any
	}
	cell := in.Cell
	if match != nil {
		cell = match.Cell
	}
	if err := s.recordScan(ctx, lockerID, askID, in, cell, target, result); err != nil {
		s.log.Error("barcode scan not recorded", "locker", lockerID, "error", err)
		s.m.scans.WithLabelValues(protocol.ErrCodeInternal).Inc()
		return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "try again"}
	}
	s.m.scans.WithLabelValues(result).Inc()
	if perr != nil {
		return nil, perr
	}
	if in.Purpose == protocol.ScanDropoff {
		op, err := s.fleet.OpenCell(ctx, OpenRequest{LockerID: lockerID, Cell: match.Cell,
			IdempotencyKey: "ask:" + lockerID + ":" + askID, Caller: "parcels", CreatedBy: "courier (parcel " + match.ID + " drop-off, barcode scanned)"})
		if err != nil {
			s.log.Error("drop-off by barcode: opening the cell failed", "locker", lockerID, "parcel", match.ID, "error", err)
			return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "the cell could not be opened; try again"}
		}
		if match.DropoffAt == nil {
			if _, err := s.change(ctx, *match, "courier", "drop-off by barcode scan: cell.open "+op.ID, "scan:"+askID+" command:"+op.ID,
				`dropoff_at = $3`, nil, nil); err != nil {
				s.log.Warn("drop-off by barcode: not recorded", "parcel", match.ID, "error", err)
			}
		}
		s.TwinChanged(lockerID, nil)
	}
	res, _ := json.Marshal(protocol.BarcodeCheckResult{Parcel: match.ID, Cell: match.Cell, Purpose: in.Purpose})
	return res, nil
}

// scanTarget finds the parcel a scan is: match when it is the right one;
// otherwise the refusal and, when known, the parcel that was expected.
func (s *Store) scanTarget(ctx context.Context, lockerID string, in protocol.BarcodeCheckParams) (match, expected *Parcel, _ *protocol.Error) {
	internal := func(err error) (*Parcel, *Parcel, *protocol.Error) {
		s.log.Error("barcode check: reading parcels failed", "locker", lockerID, "error", err)
		return nil, nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "try again"}
	}
	var inCell *Parcel
	if in.Cell != "" {
		ps, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE locker_id = $1 AND cell = $2 AND holds_cell`, lockerID, in.Cell))
		if err != nil {
			return internal(err)
		}
		if len(ps) > 0 {
			inCell = &ps[0]
		}
	}
	if in.Purpose != protocol.ScanDropoff {
		want := map[string]bool{protocol.ScanPickup: inCell != nil && inCell.State == StateDeposited && !inCell.ToReturn,
			protocol.ScanCollect: inCell != nil && inCell.ToReturn}[in.Purpose]
		switch {
		case !want:
			return nil, inCell, &protocol.Error{Code: protocol.ErrCodeBarcodeMismatch, Message: fmt.Sprintf("no parcel for %s in cell %s", in.Purpose, in.Cell)}
		case inCell.Barcode != in.Barcode:
			return nil, inCell, &protocol.Error{Code: protocol.ErrCodeBarcodeMismatch, Message: fmt.Sprintf("this is not the parcel of cell %s", in.Cell)}
		}
		return inCell, nil, nil
	}
	ps, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels
		WHERE locker_id = $1 AND barcode = $2 AND barcode <> '' AND state = 'reserved' AND kind = 'delivery' ORDER BY created_at LIMIT 1`, lockerID, in.Barcode))
	if err != nil {
		return internal(err)
	}
	switch {
	case len(ps) == 0 && inCell != nil:
		return nil, inCell, &protocol.Error{Code: protocol.ErrCodeBarcodeMismatch, Message: fmt.Sprintf("cell %s expects another parcel", in.Cell)}
	case len(ps) == 0:
		return nil, nil, &protocol.Error{Code: protocol.ErrCodeUnknownBarcode, Message: "no parcel with this barcode is expected here"}
	case in.Cell != "" && ps[0].Cell != in.Cell:
		return nil, &ps[0], &protocol.Error{Code: protocol.ErrCodeBarcodeMismatch, Message: fmt.Sprintf("this parcel goes in cell %s, not %s", ps[0].Cell, in.Cell)}
	}
	return &ps[0], nil, nil
}

// recordScan stores the scan and, when it concerns a parcel, a step of the
// parcel's history, in one transaction.
func (s *Store) recordScan(ctx context.Context, lockerID, askID string, in protocol.BarcodeCheckParams, cell string, p *Parcel, result string) error {
	return pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var parcelID *string
		if p != nil {
			parcelID = &p.ID
		}
		if _, err := tx.Exec(ctx, `INSERT INTO parcels_scans (locker_id, ask_id, at, barcode, purpose, cell, parcel_id, result)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, lockerID, askID, s.cfg.Now().UTC(), in.Barcode, in.Purpose, cell, parcelID, result); err != nil {
			return fmt.Errorf("record scan: %w", err)
		}
		if p == nil {
			return nil
		}
		return s.record(ctx, tx, *p, p.State, p.State, "locker "+lockerID, fmt.Sprintf("barcode %s scanned (%s): %s", in.Barcode, in.Purpose, result), "scan:"+askID)
	})
}

// scansOf lists the scans checked against a parcel, oldest first.
func (s *Store) scansOf(ctx context.Context, id string) ([]Scan, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, locker_id, cell, barcode, purpose, result, ask_id FROM parcels_scans WHERE parcel_id = $1 ORDER BY id LIMIT 1000`, id)
	if err != nil {
		return nil, fmt.Errorf("scans of %s: %w", id, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Scan, error) {
		var sc Scan
		err := r.Scan(&sc.At, &sc.Locker, &sc.Cell, &sc.Barcode, &sc.Purpose, &sc.Result, &sc.Ask)
		sc.At = sc.At.UTC()
		return sc, err
	})
}
