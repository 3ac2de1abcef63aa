package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Pickup codes (DESIGN decision 18). A code is 8 decimal digits derived by
// HMAC-SHA256 from the locker's secret (sent by the codes.key RPC) and the
// parcel it opens: locker, parcel, cell and validity window. The hub and the
// locker compute the same code, so a locker that lost its connection can
// check a code typed at its keypad against its own parcel list.

// PickupCodeDigits is the length of a pickup code.
const PickupCodeDigits = 8

// PickupKeyBytes is the length of a locker's code secret.
const PickupKeyBytes = 32

// PickupCodeInput is what a pickup code is bound to. The window is in whole
// seconds (Unix, UTC); a code is valid from ValidFrom up to, not including,
// ValidTo.
type PickupCodeInput struct {
	LockerID  string
	ParcelID  string
	Cell      string
	ValidFrom time.Time
	ValidTo   time.Time
}

// pickupCodeMessage is the byte string the HMAC is taken over. Its fields are
// separated by NUL, which no ID, cell name or number contains.
func pickupCodeMessage(in PickupCodeInput) []byte {
	b := make([]byte, 0, 64)
	b = append(b, "lockerhub-pickup-v1"...)
	for _, f := range []string{in.LockerID, in.ParcelID, in.Cell,
		strconv.FormatInt(in.ValidFrom.Unix(), 10), strconv.FormatInt(in.ValidTo.Unix(), 10)} {
		b = append(b, 0)
		b = append(b, f...)
	}
	return b
}

// PickupCode derives the 8-digit code for a parcel from the locker's secret.
// It fails on a secret of the wrong length.
func PickupCode(secret []byte, in PickupCodeInput) (string, error) {
	if len(secret) != PickupKeyBytes {
		return "", fmt.Errorf("%w: pickup code secret is %d bytes, want %d", ErrInvalid, len(secret), PickupKeyBytes)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(pickupCodeMessage(in))
	sum := mac.Sum(nil)
	// 2^64 mod 10^8 is tiny next to 2^64: the digits are as good as uniform.
	n := binary.BigEndian.Uint64(sum[:8]) % 100_000_000
	return fmt.Sprintf("%08d", n), nil
}

// PickupCodeValid reports whether code is the code for in under secret and
// at is inside the window. The comparison takes the same time for every
// wrong code.
func PickupCodeValid(secret []byte, in PickupCodeInput, code string, at time.Time) bool {
	want, err := PickupCode(secret, in)
	if err != nil || len(code) != PickupCodeDigits {
		return false
	}
	if at.Before(in.ValidFrom) || !at.Before(in.ValidTo) {
		return false
	}
	return hmac.Equal([]byte(want), []byte(code))
}

// MethodParcelsSync gives a locker the list of parcels it may hand out by
// itself while offline (prepaid parcels deposited in it).
const MethodParcelsSync = "parcels.sync"

// CodesKeyParams are the params of codes.key: the locker's code secret and
// its version. The locker stores it on disk and answers {"version": N}. A
// key of a lower version than the one it holds is ignored (answered with the
// version it holds).
type CodesKeyParams struct {
	Version int64  `json:"version"`
	Key     []byte `json:"key"` // PickupKeyBytes, base64 in JSON
}

// LockerParcel is a parcel a locker may hand out offline: the code typed at
// the keypad must equal PickupCode(secret, {locker, ID, Cell, window}).
type LockerParcel struct {
	ID        string `json:"id"`
	Cell      string `json:"cell"`
	ValidFrom int64  `json:"valid_from"` // Unix ms
	ValidTo   int64  `json:"valid_to"`   // Unix ms
	// Barcode is the parcel label's, for the offline barcode check at pickup
	// (docs/protocol.md 9.2); empty when the parcel has none.
	Barcode string `json:"barcode,omitempty"`
}

// ParcelsSyncParams replace the locker's whole offline parcel list. Version
// grows with every change; the locker ignores a lower one and answers
// {"version": N} with the version it holds.
type ParcelsSyncParams struct {
	Version int64          `json:"version"`
	Parcels []LockerParcel `json:"parcels"`
}

// CodeCheckParams are the params of the code.check ask.
type CodeCheckParams struct {
	Code string `json:"code"`
}

// CodeCheckResult answers code.check: the cell the hub opens (by a cell.open
// command) for the parcel. Charge is set when an amount is due first.
type CodeCheckResult struct {
	Cell   string          `json:"cell"`
	Parcel string          `json:"parcel"`
	Charge json.RawMessage `json:"charge"`
}

// Error codes of asks.
const (
	ErrCodeWrongCode   = "wrong_code"   // code.check: no parcel with this code here
	ErrCodeRateLimited = "rate_limited" // too many wrong codes: wait before trying again
)
