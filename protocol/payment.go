package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// Payment at the locker (docs/protocol.md 8.3, DESIGN decision 18). A parcel
// with an amount due is charged on the locker's POS terminal before its cell
// opens: code.check finds the parcel, the hub sends pos.charge (a physical
// command: key, not_after) and waits for the terminal's answer, then opens
// the cell with cell.open. The terminal charges each payment id at most once.

// POSChargeParams are the params of pos.charge.
type POSChargeParams struct {
	// Payment is the hub's payment id. The locker charges a payment id at
	// most once: asked again (a new request after a lost answer), it answers
	// the first outcome without charging.
	Payment  string `json:"payment"`
	Parcel   string `json:"parcel"`
	Amount   int64  `json:"amount"`   // minor units of Currency, > 0
	Currency string `json:"currency"` // ISO 4217, upper case
}

// POSChargeResult is pos.charge's result: the terminal approved the charge.
// A declined charge is the error ErrCodeDeclined (or ErrCodePaymentCancelled);
// a locker without a terminal answers unknown_method.
type POSChargeResult struct {
	Approved  bool   `json:"approved"`  // true
	Reference string `json:"reference"` // the terminal's transaction reference, 1–64 printable ASCII
}

// Error codes of pos.charge (the locker's) and of code.check for a parcel
// with an amount due (the hub's answer to the locker, which shows it).
const (
	ErrCodeDeclined         = "declined"  // pos.charge: the card or the acquirer declined; message says why
	ErrCodePaymentCancelled = "cancelled" // pos.charge: the customer cancelled at the terminal

	ErrCodePaymentDeclined = "payment_declined" // code.check: the charge was declined; the cell stays shut
	ErrCodePaymentFailed   = "payment_failed"   // code.check: nothing was charged (no terminal, terminal error); the cell stays shut
	ErrCodePaymentPending  = "payment_pending"  // code.check: the terminal did not answer in time; asking again settles it without charging twice
)

// MaxAmount bounds an amount due (minor units): 10,000,000.00 in a
// currency with two decimals.
const MaxAmount = 1_000_000_000

var (
	currencyRE  = regexp.MustCompile(`^[A-Z]{3}$`)
	paymentIDRE = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`)
)

// ValidCurrency reports whether c is an ISO 4217 code as the protocol writes it (EUR).
func ValidCurrency(c string) bool { return currencyRE.MatchString(c) }

// strict decodes one JSON object of at most 1 KiB without unknown fields.
func strict(raw []byte, v any) error {
	if len(raw) > 1<<10 {
		return fmt.Errorf("%w: more than 1 KiB", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrInvalid)
	}
	return nil
}

// DecodePOSChargeParams decodes and checks pos.charge params (the locker's side).
func DecodePOSChargeParams(raw []byte) (POSChargeParams, error) {
	var p POSChargeParams
	if err := strict(raw, &p); err != nil {
		return POSChargeParams{}, err
	}
	switch {
	case !paymentIDRE.MatchString(p.Payment):
		return POSChargeParams{}, fmt.Errorf("%w: payment must be 1–64 printable ASCII characters", ErrInvalid)
	case !paymentIDRE.MatchString(p.Parcel):
		return POSChargeParams{}, fmt.Errorf("%w: parcel must be 1–64 printable ASCII characters", ErrInvalid)
	case p.Amount <= 0 || p.Amount > MaxAmount:
		return POSChargeParams{}, fmt.Errorf("%w: amount must be 1 to %d minor units", ErrInvalid, MaxAmount)
	case !ValidCurrency(p.Currency):
		return POSChargeParams{}, fmt.Errorf("%w: currency must be an ISO 4217 code such as EUR", ErrInvalid)
	}
	return p, nil
}

// DecodePOSChargeResult decodes and checks a locker's pos.charge result (the
// hub's side): approved must be true and the reference printable.
func DecodePOSChargeResult(raw []byte) (POSChargeResult, error) {
	var r POSChargeResult
	if err := strict(raw, &r); err != nil {
		return POSChargeResult{}, err
	}
	if !r.Approved {
		return POSChargeResult{}, fmt.Errorf("%w: a result says approved: true (a decline is the error %q)", ErrInvalid, ErrCodeDeclined)
	}
	if !paymentIDRE.MatchString(r.Reference) {
		return POSChargeResult{}, fmt.Errorf("%w: reference must be 1–64 printable ASCII characters", ErrInvalid)
	}
	return r, nil
}

// Charge is what code.check's result carries in "charge" when the parcel was
// paid at the locker (null for a prepaid parcel).
type Charge struct {
	Payment   string `json:"payment"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"` // the terminal's
}
