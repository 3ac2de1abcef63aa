package parcels

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// code derives a deposited parcel's pickup code.
func (s *Store) code(secret []byte, p Parcel) (string, error) {
	return s.codeFor(secret, p)
}

// codeFor derives the code that opens a parcel's cell (codeWindow).
func (s *Store) codeFor(secret []byte, p Parcel) (string, error) {
	from, to := codeWindow(p)
	return protocol.PickupCode(secret, protocol.PickupCodeInput{LockerID: p.LockerID, ParcelID: p.ID, Cell: p.Cell, ValidFrom: from, ValidTo: to})
}

// rateLimited reports whether the locker has had WrongCodes wrong codes
// within WrongWindow, dropping older ones.
func (s *Store) rateLimited(lockerID string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.wrong[lockerID]
	keep := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < s.cfg.WrongWindow {
			keep = append(keep, t)
		}
	}
	if len(keep) == 0 {
		delete(s.wrong, lockerID)
	} else {
		s.wrong[lockerID] = keep
	}
	return len(keep) >= s.cfg.WrongCodes
}

// wrongCode counts a wrong code; true when it reached the limit.
func (s *Store) wrongCode(lockerID string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrong[lockerID] = append(s.wrong[lockerID], now)
	return len(s.wrong[lockerID]) == s.cfg.WrongCodes
}

// CheckCode answers the code.check ask of a locker (registered with the
// fleet's ask transport): the deposited parcel on that locker whose pickup
// code matches gets its cell opened by a cell.open command whose idempotency
// key is the ask's, so a re-delivered ask opens once. Wrong codes are
// rate-limited per locker. The code is never logged.
func (s *Store) CheckCode(ctx context.Context, lockerID, askID string, params json.RawMessage) (json.RawMessage, *protocol.Error) {
	now := s.cfg.Now()
	if s.rateLimited(lockerID, now) {
		s.m.codeChecks.WithLabelValues("rate_limited").Inc()
		return nil, &protocol.Error{Code: protocol.ErrCodeRateLimited, Message: "too many wrong codes; try again later"}
	}
	var p protocol.CodeCheckParams
	if err := json.Unmarshal(params, &p); err != nil {
		s.m.codeChecks.WithLabelValues("error").Inc()
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: `params must be {"code":"12345678"}`}
	}
	match, perr := s.findByCode(ctx, lockerID, p.Code, now)
	if perr != nil {
		s.m.codeChecks.WithLabelValues("error").Inc()
		return nil, perr
	}
	if match == nil && len(p.Code) == protocol.PickupCodeDigits {
		cell, err := s.useServiceCode(ctx, lockerID, askID, p.Code, now)
		switch {
		case err == nil:
			s.m.codeChecks.WithLabelValues("service").Inc()
			res, _ := json.Marshal(serviceResult(cell))
			return res, nil
		case !errors.Is(err, errNoServiceCode):
			s.m.codeChecks.WithLabelValues("error").Inc()
			s.log.Error("service code: opening the cell failed", "locker", lockerID, "error", err)
			return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "try again"}
		}
	}
	if match == nil {
		s.m.codeChecks.WithLabelValues("wrong").Inc()
		if s.wrongCode(lockerID, now) {
			s.m.bruteForce.Inc()
			s.log.Warn("pickup codes: too many wrong codes at a locker; further tries are refused for a while",
				"locker", lockerID, "limit", s.cfg.WrongCodes, "window", s.cfg.WrongWindow)
		}
		return nil, &protocol.Error{Code: protocol.ErrCodeWrongCode, Message: "no parcel with this code here"}
	}
	charge := json.RawMessage("null")
	if match.Kind == KindDelivery && match.AmountDue != nil {
		// Paid at the terminal first; only an approved charge opens the cell.
		c, perr := s.chargeFor(ctx, lockerID, askID, *match)
		if perr != nil {
			s.m.codeChecks.WithLabelValues("payment").Inc()
			return nil, perr
		}
		charge, _ = json.Marshal(c)
	}
	op, err := s.fleet.OpenCell(ctx, OpenRequest{LockerID: lockerID, Cell: match.Cell,
		IdempotencyKey: "ask:" + lockerID + ":" + askID, Caller: "parcels", CreatedBy: "recipient (parcel " + match.ID + " pickup)"})
	if err != nil {
		s.m.codeChecks.WithLabelValues("error").Inc()
		s.log.Error("pickup: opening the cell failed", "locker", lockerID, "parcel", match.ID, "error", err)
		return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "the cell could not be opened; try again"}
	}
	switch {
	case match.Kind == KindReturn && (op.Created || match.DropoffAt == nil):
		// The sender drops the return off: the deposit follows from the
		// door closed with the cell occupied, as a courier's drop-off.
		if _, err := s.change(ctx, *match, "sender", "return code accepted at the locker: cell.open "+op.ID, "ask:"+askID+" command:"+op.ID,
			`dropoff_at = coalesce(dropoff_at, $3)`, nil, nil); err != nil {
			s.log.Warn("return: drop-off not recorded", "parcel", match.ID, "error", err)
		}
		s.TwinChanged(lockerID, nil)
	case op.Created:
		if _, err := s.change(ctx, *match, "recipient", "pickup code accepted at the locker: cell.open "+op.ID, "ask:"+askID+" command:"+op.ID, `mark_boot = mark_boot`, nil, nil); err != nil {
			s.log.Warn("pickup: history not written", "parcel", match.ID, "error", err)
		}
	}
	s.m.codeChecks.WithLabelValues("ok").Inc()
	res, _ := json.Marshal(protocol.CodeCheckResult{Cell: match.Cell, Parcel: match.ID, Charge: charge})
	return res, nil
}

// findByCode finds the deposited parcel of the locker that the code opens.
func (s *Store) findByCode(ctx context.Context, lockerID, code string, now time.Time) (*Parcel, *protocol.Error) {
	if len(code) != protocol.PickupCodeDigits {
		return nil, nil
	}
	if s.cfg.Keys == nil {
		return nil, nil
	}
	ps, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels
		WHERE locker_id = $1 AND move_from = '' AND ((state = 'deposited' AND kind = 'delivery') OR (state = 'reserved' AND kind = 'return'))`, lockerID))
	if err != nil {
		s.log.Error("pickup: reading parcels failed", "locker", lockerID, "error", err)
		return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "try again"}
	}
	if len(ps) == 0 {
		return nil, nil
	}
	secret, err := s.cfg.Keys.Key(ctx, lockerID)
	if err != nil {
		s.log.Error("pickup: code key failed", "locker", lockerID, "error", err)
		return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "try again"}
	}
	var match *Parcel
	for i := range ps { // every parcel is checked: the time does not tell which matched
		from, to := codeWindow(ps[i])
		in := protocol.PickupCodeInput{LockerID: lockerID, ParcelID: ps[i].ID, Cell: ps[i].Cell, ValidFrom: from, ValidTo: to}
		if protocol.PickupCodeValid(secret, in, code, now) && match == nil {
			match = &ps[i]
		}
	}
	return match, nil
}

// codeWindow is the validity window of the code that opens a parcel's cell:
// a delivery's pickup code from the deposit to the end of the storage
// period, a return's code from its creation for the storage period.
func codeWindow(p Parcel) (from, to time.Time) {
	if p.Kind == KindReturn {
		from = p.CreatedAt.Truncate(time.Second)
		return from, from.Add(time.Duration(p.StorageHours) * time.Hour)
	}
	return window(p)
}
