package parcels

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// Payment at the locker (docs/parcels.md "Payment at the locker", DESIGN
// decision 18). A parcel may carry an amount due. When its pickup code is
// typed at the locker (code.check), the hub charges it on the locker's POS
// terminal with a pos.charge command and waits for the answer; only an
// approved charge opens the cell. Each charge is a row of parcels_payments;
// an approved one gets a fiscal receipt through the outbox (message id = the
// payment id, which the fiscal service deduplicates on), and a cancellation
// or return after payment records a refund with a refund receipt.
//
// Nothing is charged twice: a parcel has at most one approved charge (a
// later code.check opens the cell without charging), at most one unsettled
// one (pending, or unknown after the terminal did not answer), which a later
// code.check sends again under the same payment id, and the terminal
// charges a payment id at most once (docs/protocol.md 8.3). Parcels with an
// amount due are never in a locker's offline list.

// Money is an amount in minor units of an ISO 4217 currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Payment kinds and states.
const (
	PaymentCharge = "charge"
	PaymentRefund = "refund"

	PaymentPending  = "pending"  // the terminal works on it
	PaymentApproved = "approved" // charged (a refund: recorded)
	PaymentDeclined = "declined" // the terminal declined: nothing charged
	PaymentFailed   = "failed"   // nothing charged: no terminal, a terminal error, or the command never reached it
	PaymentUnknown  = "unknown"  // no answer in time: the next code.check asks the terminal again under the same id
)

// RefuseNoPOS refuses a parcel with an amount due for a locker whose model
// has no POS terminal (capability "pos").
const RefuseNoPOS = "locker_has_no_pos"

// Payment is one charge or refund as the parcel page shows it.
type Payment struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"` // charge, refund
	Amount      int64      `json:"amount"`
	Currency    string     `json:"currency"`
	State       string     `json:"state"`
	Reason      string     `json:"reason,omitempty"`
	TerminalRef string     `json:"terminal_reference,omitempty"`
	Command     string     `json:"command,omitempty"` // the last pos.charge command
	RefundOf    string     `json:"refund_of,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	DecidedAt   *time.Time `json:"decided_at,omitempty"`
	// Receipt is the fiscal receipt's delivery (approved payments only).
	Receipt *Receipt `json:"receipt,omitempty"`
}

// Receipt is the state of a payment's fiscal receipt at the fiscal service.
type Receipt struct {
	ID        string     `json:"id"`   // = the payment id: the Idempotency-Key the service deduplicates on
	Type      string     `json:"type"` // sale, refund
	State     string     `json:"state"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	Number    string     `json:"number,omitempty"` // the service's receipt id, when it answered one
}

// Receipts reads the delivery state of fiscal receipts by id (app wires the outbox).
type Receipts interface {
	Receipts(ctx context.Context, ids []string) (map[string]Receipt, error)
}

// ChargeRequest asks the locker's terminal to charge a payment: a pos.charge
// command with the idempotency key given (per ask, so a repeated ask finds
// the same command), valid for ValidFor.
type ChargeRequest struct {
	LockerID, IdempotencyKey, CreatedBy string
	Params                              protocol.POSChargeParams
	ValidFor                            time.Duration
}

// ChargeOutcome is the pos.charge command when it ended or the wait did:
// State is the command's (pending or sent when the wait ended first).
type ChargeOutcome struct {
	Command string
	State   string
	Result  json.RawMessage
	Code    string // the error code of a failed, expired or unconfirmed command
	Message string
}

// Command states as ChargeOutcome reports them (fleet's).
const (
	cmdSucceeded   = "succeeded"
	cmdFailed      = "failed"
	cmdExpired     = "expired"
	cmdUnconfirmed = "unconfirmed"
)

// Receipt types: the fiscal message's template is "receipt." + type.
const (
	ReceiptSale   = "sale"
	ReceiptRefund = "refund"
)

// ChannelFiscal is the outbox channel of fiscal receipts.
const ChannelFiscal = "fiscal"

func newPaymentID(kind string) string {
	if kind == PaymentRefund {
		return "ref-" + strings.ToLower(rand.Text()[:16])
	}
	return "pay-" + strings.ToLower(rand.Text()[:16])
}

// validateAmountDue checks the amount due of a new parcel.
func validateAmountDue(m *Money) error {
	if m == nil {
		return nil
	}
	m.Currency = strings.ToUpper(strings.TrimSpace(m.Currency))
	if m.Amount <= 0 || m.Amount > protocol.MaxAmount {
		return fmt.Errorf("%w: amount_due.amount must be 1 to %d minor units (prepaid: leave amount_due out)", ErrInvalid, protocol.MaxAmount)
	}
	if !protocol.ValidCurrency(m.Currency) {
		return fmt.Errorf("%w: amount_due.currency must be an ISO 4217 code (EUR)", ErrInvalid)
	}
	return nil
}

// checkPOS refuses an amount due for a locker without a POS terminal.
func (s *Store) checkPOS(ctx context.Context, n NewParcel) error {
	if n.AmountDue == nil {
		return nil
	}
	if n.kind == KindReturn {
		return fmt.Errorf("%w: a customer return has no amount due", ErrInvalid)
	}
	ok, err := s.fleet.HasPOS(ctx, n.LockerID)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(RefuseNoPOS, "locker %s has no POS terminal (its model lacks the capability \"pos\"): it cannot take a parcel with an amount due", n.LockerID)
	}
	return nil
}

func (s *Store) scanPayments(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, parcelID string) ([]Payment, error) {
	rows, err := q.Query(ctx, `SELECT id, kind, amount, currency, state, reason, terminal_ref, command_id, coalesce(refund_of, ''), created_at, decided_at
		FROM parcels_payments WHERE parcel_id = $1 ORDER BY created_at, id`, parcelID)
	if err != nil {
		return nil, fmt.Errorf("payments of %s: %w", parcelID, err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Payment, error) {
		var p Payment
		err := r.Scan(&p.ID, &p.Kind, &p.Amount, &p.Currency, &p.State, &p.Reason, &p.TerminalRef, &p.Command, &p.RefundOf, &p.CreatedAt, &p.DecidedAt)
		p.CreatedAt = p.CreatedAt.UTC()
		if p.DecidedAt != nil {
			u := p.DecidedAt.UTC()
			p.DecidedAt = &u
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("payments of %s: %w", parcelID, err)
	}
	return ps, nil
}

// payments returns a parcel's payments with their receipts' state.
func (s *Store) payments(ctx context.Context, parcelID string) ([]Payment, error) {
	ps, err := s.scanPayments(ctx, s.pool, parcelID)
	if err != nil || len(ps) == 0 {
		return ps, err
	}
	var ids []string
	for _, p := range ps {
		if p.State == PaymentApproved {
			ids = append(ids, p.ID)
		}
	}
	var got map[string]Receipt
	if s.cfg.Receipts != nil && len(ids) > 0 {
		if got, err = s.cfg.Receipts.Receipts(ctx, ids); err != nil {
			return nil, err
		}
	}
	for i := range ps {
		if ps[i].State != PaymentApproved {
			continue
		}
		typ := ReceiptSale
		if ps[i].Kind == PaymentRefund {
			typ = ReceiptRefund
		}
		r, ok := got[ps[i].ID]
		if !ok {
			r = Receipt{State: "unknown"} // no outbox wired, or deleted after its retention
		}
		r.ID, r.Type = ps[i].ID, typ
		ps[i].Receipt = &r
	}
	return ps, nil
}

// receipt enqueues the fiscal receipt of an approved payment in tx.
func (s *Store) receipt(ctx context.Context, tx pgx.Tx, p Parcel, pay Payment, typ string) error {
	at := s.cfg.Now().UTC()
	if pay.DecidedAt != nil {
		at = *pay.DecidedAt
	}
	desc := "Parcel " + p.ID
	if p.Reference != "" {
		desc += " (" + p.Reference + ")"
	}
	data := map[string]any{
		"id": pay.ID, "type": typ, "payment": pay.ID, "parcel": p.ID, "reference": p.Reference, "carrier": p.Carrier,
		"locker": p.LockerID, "amount": pay.Amount, "currency": pay.Currency, "terminal_reference": pay.TerminalRef,
		"at":    at.Format(time.RFC3339Nano),
		"items": []map[string]any{{"description": desc, "quantity": 1, "amount": pay.Amount}},
	}
	if pay.RefundOf != "" {
		data["refund_of"] = pay.RefundOf
	}
	if err := s.enqueue(ctx, tx, OutMessage{ID: pay.ID, Channel: ChannelFiscal, Template: "receipt." + typ, Data: data, Parcel: p.ID, Carrier: p.Carrier}); err != nil {
		return err
	}
	s.m.receipts.WithLabelValues(typ).Inc()
	return nil
}

// chargeFor charges a deposited parcel's amount due at the locker before its
// cell opens (code.check). It returns the approved charge, or the error the
// locker shows. A parcel paid before (the cell did not open, the recipient
// closed the door again) is not charged again.
func (s *Store) chargeFor(ctx context.Context, lockerID, askID string, p Parcel) (*protocol.Charge, *protocol.Error) {
	fail := func(result, msg string, err error) (*protocol.Charge, *protocol.Error) {
		s.m.charges.WithLabelValues(result).Inc()
		s.log.Error("payment: "+msg, "locker", lockerID, "parcel", p.ID, "error", err)
		return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "try again"}
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	var pay Payment
	var paid bool
	// again: the payment was asked before with no answer, so the terminal
	// may have charged it. Then a command that never reached the terminal
	// leaves it unknown, not failed: a failed charge lets the next code.check
	// start a new payment, which the terminal would charge a second time.
	var again bool
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		// One code.check of a parcel decides at a time.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM parcels_parcels WHERE id = $1 FOR UPDATE`, p.ID); err != nil {
			return err
		}
		ps, err := s.scanPayments(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		for _, x := range ps {
			switch {
			case x.Kind == PaymentCharge && x.State == PaymentApproved:
				pay, paid = x, true
				return nil
			case x.Kind == PaymentCharge && (x.State == PaymentPending || x.State == PaymentUnknown):
				pay = x // asked again under the same payment id: the terminal charges it once
			}
		}
		if pay.ID != "" {
			again = true
			_, err := tx.Exec(ctx, `UPDATE parcels_payments SET state = 'pending', ask_id = $2, updated_at = $3 WHERE id = $1`, pay.ID, askID, now)
			return err
		}
		pay = Payment{ID: newPaymentID(PaymentCharge), Kind: PaymentCharge, Amount: p.AmountDue.Amount, Currency: p.AmountDue.Currency, State: PaymentPending, CreatedAt: now}
		if _, err := tx.Exec(ctx, `INSERT INTO parcels_payments (id, parcel_id, locker_id, kind, amount, currency, state, ask_id, created_at, updated_at)
			VALUES ($1, $2, $3, 'charge', $4, $5, 'pending', $6, $7, $7)`, pay.ID, p.ID, lockerID, pay.Amount, pay.Currency, askID, now); err != nil {
			return fmt.Errorf("insert payment: %w", err)
		}
		return nil
	})
	if err != nil {
		return fail("error", "recording the charge failed", err)
	}
	if paid {
		s.m.charges.WithLabelValues("paid_before").Inc()
		return &protocol.Charge{Payment: pay.ID, Amount: pay.Amount, Currency: pay.Currency, Reference: pay.TerminalRef}, nil
	}

	wait, cancel := context.WithTimeout(ctx, s.cfg.ChargeTimeout+2*time.Second) // the command ends at not_after; a little more for its sweep
	defer cancel()
	out, err := s.fleet.Charge(wait, ChargeRequest{LockerID: lockerID, IdempotencyKey: "pos:" + pay.ID + ":" + askID,
		CreatedBy: "recipient (parcel " + p.ID + " payment " + pay.ID + ")", ValidFor: s.cfg.ChargeTimeout,
		Params: protocol.POSChargeParams{Payment: pay.ID, Parcel: p.ID, Amount: pay.Amount, Currency: pay.Currency}})
	if err != nil && out.Command == "" {
		// No command: nothing reached the terminal this time.
		state, perr := PaymentFailed, &protocol.Error{Code: protocol.ErrCodePaymentFailed, Message: "the payment could not be started; nothing was charged"}
		if again { // its first answer is still unknown
			state, perr = PaymentUnknown, &protocol.Error{Code: protocol.ErrCodePaymentPending, Message: "the terminal could not be asked; type the code again"}
		}
		s.settle(ctx, p, pay.ID, state, "not_sent: "+err.Error(), "", "")
		s.m.charges.WithLabelValues(state).Inc()
		s.log.Warn("payment: the pos.charge command was not created", "locker", lockerID, "parcel", p.ID, "error", err)
		return nil, perr
	}
	state, reason, ref := PaymentUnknown, "", ""
	switch out.State {
	case cmdSucceeded:
		r, err := protocol.DecodePOSChargeResult(out.Result)
		if err != nil {
			// An approval we cannot read: we do not open, and we do not
			// charge again either (asking again gets the same answer).
			reason = "bad_result: " + err.Error()
			break
		}
		state, ref = PaymentApproved, r.Reference
	case cmdFailed:
		reason = out.Code + ": " + out.Message
		state = PaymentFailed
		if out.Code == protocol.ErrCodeDeclined || out.Code == protocol.ErrCodePaymentCancelled {
			state = PaymentDeclined
		}
	case cmdExpired: // never executed by the terminal
		state, reason = PaymentFailed, out.Code+": "+out.Message
		if again { // … this time: an earlier ask may have charged
			state, reason = PaymentUnknown, "not_asked: "+out.Code+": "+out.Message
		}
	default: // unconfirmed (sent, no answer), or the wait ended first
		reason = "no_answer: the terminal did not answer in time"
	}
	settled, err := s.settle(ctx, p, pay.ID, state, reason, ref, out.Command)
	if err != nil {
		return fail("error", "recording the charge's outcome failed", err)
	}
	s.m.charges.WithLabelValues(state).Inc()
	switch state {
	case PaymentApproved:
		return &protocol.Charge{Payment: settled.ID, Amount: settled.Amount, Currency: settled.Currency, Reference: settled.TerminalRef}, nil
	case PaymentDeclined:
		return nil, &protocol.Error{Code: protocol.ErrCodePaymentDeclined, Message: "the payment was declined: " + out.Message}
	case PaymentFailed:
		return nil, &protocol.Error{Code: protocol.ErrCodePaymentFailed, Message: "nothing was charged: " + out.Code}
	default:
		return nil, &protocol.Error{Code: protocol.ErrCodePaymentPending, Message: "the terminal did not answer; type the code again"}
	}
}

// settle records a charge's outcome with the parcel's history, audit and, for
// an approved one, the fiscal receipt, all in one transaction.
func (s *Store) settle(ctx context.Context, p Parcel, paymentID, state, reason, ref, command string) (Payment, error) {
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	var out Payment
	// Recorded even when the ask's context just ended: the terminal answered.
	ctx = context.WithoutCancel(ctx)
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		decided := &now
		if state == PaymentPending || state == PaymentUnknown {
			decided = nil
		}
		tag, err := tx.Exec(ctx, `UPDATE parcels_payments SET state = $2, reason = $3, terminal_ref = $4, command_id = coalesce(nullif($5, ''), command_id),
			updated_at = $6, decided_at = $7 WHERE id = $1 AND state = 'pending'`, paymentID, state, reason, ref, command, now, decided)
		if err != nil {
			return fmt.Errorf("update payment %s: %w", paymentID, err)
		}
		ps, err := s.scanPayments(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		for _, x := range ps {
			if x.ID == paymentID {
				out = x
			}
		}
		if tag.RowsAffected() == 0 {
			return nil // settled by a concurrent ask: its record stands
		}
		note := fmt.Sprintf("payment %s %s: %s at the locker", paymentID, state, formatMoney(out.Amount, out.Currency))
		if reason != "" {
			note += " (" + reason + ")"
		}
		src := "command:" + command
		if command == "" {
			src = "hub"
		}
		if err := s.record(ctx, tx, p, p.State, p.State, "recipient", note, src); err != nil {
			return err
		}
		if err := audit.Record(ctx, tx, audit.Entry{Action: "payment_" + state, ObjectType: "payment", ObjectID: paymentID,
			After: map[string]any{"parcel": p.ID, "locker": p.LockerID, "amount": out.Amount, "currency": out.Currency, "state": state, "reason": reason, "terminal_reference": ref}}); err != nil {
			return err
		}
		if state == PaymentApproved {
			return s.receipt(ctx, tx, p, out, ReceiptSale)
		}
		return nil
	})
	return out, err
}

// refundIfPaid records a refund of a parcel's approved charge, with its
// refund receipt, in the transaction that cancels or expires the parcel.
func (s *Store) refundIfPaid(ctx context.Context, tx pgx.Tx, p Parcel, why string) error {
	ps, err := s.scanPayments(ctx, tx, p.ID)
	if err != nil {
		return err
	}
	var charge *Payment
	refunded := map[string]bool{}
	for i, x := range ps {
		if x.Kind == PaymentCharge && x.State == PaymentApproved {
			charge = &ps[i]
		}
		if x.Kind == PaymentRefund {
			refunded[x.RefundOf] = true
		}
	}
	if charge == nil || refunded[charge.ID] {
		return nil
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	ref := Payment{ID: newPaymentID(PaymentRefund), Kind: PaymentRefund, Amount: charge.Amount, Currency: charge.Currency,
		State: PaymentApproved, TerminalRef: charge.TerminalRef, RefundOf: charge.ID, CreatedAt: now, DecidedAt: &now}
	if _, err := tx.Exec(ctx, `INSERT INTO parcels_payments (id, parcel_id, locker_id, kind, amount, currency, state, reason, terminal_ref, refund_of, created_at, updated_at, decided_at)
		VALUES ($1, $2, $3, 'refund', $4, $5, 'approved', $6, $7, $8, $9, $9, $9)`,
		ref.ID, p.ID, p.LockerID, ref.Amount, ref.Currency, why, ref.TerminalRef, charge.ID, now); err != nil {
		return fmt.Errorf("insert refund: %w", err)
	}
	if err := s.record(ctx, tx, p, p.State, p.State, "hub", fmt.Sprintf("refund %s of payment %s: %s (%s)", ref.ID, charge.ID, formatMoney(ref.Amount, ref.Currency), why), "hub"); err != nil {
		return err
	}
	if err := audit.Record(ctx, tx, audit.Entry{Action: "payment_refund", ObjectType: "payment", ObjectID: ref.ID,
		After: map[string]any{"parcel": p.ID, "refund_of": charge.ID, "amount": ref.Amount, "currency": ref.Currency, "why": why}}); err != nil {
		return err
	}
	s.m.charges.WithLabelValues("refunded").Inc()
	return s.receipt(ctx, tx, p, ref, ReceiptRefund)
}

// formatMoney writes minor units with two decimals (the common case; the
// currency code says what they are).
func formatMoney(amount int64, currency string) string {
	return fmt.Sprintf("%d.%02d %s", amount/100, amount%100, currency)
}
