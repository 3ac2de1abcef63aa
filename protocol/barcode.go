package protocol

import (
	"bytes"
	"encoding/json"
	"regexp"
)

// Purposes of a barcode scan (barcode.check).
const (
	ScanDropoff = "dropoff" // a courier loads a parcel: the hub opens its reserved cell
	ScanPickup  = "pickup"  // a recipient takes a parcel out of an open cell
	ScanCollect = "collect" // a courier takes a parcel back (return) out of an open cell
)

// BarcodeCheckParams are the params of the barcode.check ask: the barcode
// the locker's scanner read, what for, and the cell it belongs to (required
// for pickup and collect: the cell that is open; optional for a drop-off: a
// cell the courier chose).
type BarcodeCheckParams struct {
	Barcode string `json:"barcode"`
	Purpose string `json:"purpose,omitempty"` // dropoff (default), pickup, collect
	Cell    string `json:"cell,omitempty"`
}

// BarcodeCheckResult answers barcode.check: the parcel the barcode is and
// its cell; for a drop-off the hub opens that cell by a cell.open command.
type BarcodeCheckResult struct {
	Parcel  string `json:"parcel"`
	Cell    string `json:"cell"`
	Purpose string `json:"purpose"`
}

// Error codes of barcode.check; the locker shows them to the person at it.
const (
	ErrCodeUnknownBarcode  = "unknown_barcode"  // no parcel with this barcode is expected here
	ErrCodeBarcodeMismatch = "barcode_mismatch" // the barcode is not the parcel of this cell or reservation
	ErrCodeOffline         = "offline"          // offline, the locker cannot check this scan (a drop-off needs the hub)
)

// MaxBarcodeBytes bounds a scanned barcode.
const MaxBarcodeBytes = 64

var (
	barcodeRE = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`)
	cellRE    = regexp.MustCompile(`^[A-Z]{1,3}[0-9]{2,3}$`)
)

// DecodeBarcodeCheck reads and checks the params of a barcode.check ask:
// one JSON object of at most 1 KiB, a barcode of 1–64 printable ASCII
// characters, a known purpose (empty means dropoff), a cell name (A01) when
// given, and a cell for pickup and collect.
func DecodeBarcodeCheck(params json.RawMessage) (BarcodeCheckParams, error) {
	var p BarcodeCheckParams
	if len(params) > 1024 {
		return p, invalid("params of %d bytes are over the limit of 1024", len(params))
	}
	if t := bytes.TrimLeft(params, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return p, invalid("params must be a JSON object")
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return BarcodeCheckParams{}, invalid("params: %v", err)
	}
	if !barcodeRE.MatchString(p.Barcode) {
		return BarcodeCheckParams{}, invalid("barcode must be 1 to %d printable ASCII characters", MaxBarcodeBytes)
	}
	if p.Purpose == "" {
		p.Purpose = ScanDropoff
	}
	switch p.Purpose {
	case ScanDropoff, ScanPickup, ScanCollect:
	default:
		return BarcodeCheckParams{}, invalid("purpose must be dropoff, pickup or collect")
	}
	if p.Cell != "" && !cellRE.MatchString(p.Cell) {
		return BarcodeCheckParams{}, invalid("cell must be a cell name such as A01")
	}
	if p.Cell == "" && p.Purpose != ScanDropoff {
		return BarcodeCheckParams{}, invalid("cell is required for %s: the cell that is open", p.Purpose)
	}
	return p, nil
}
