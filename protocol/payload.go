package protocol

import "encoding/json"

// Header is carried by every device message. Order is (Boot, Seq): Boot is a
// counter the locker keeps on disk and increments at every boot, Seq increases
// within a boot. TS is the locker's clock in Unix milliseconds UTC.
type Header struct {
	Boot uint32 `json:"boot"`
	Seq  uint64 `json:"seq"`
	TS   int64  `json:"ts"`
}

// Before reports whether h was sent before o by the same locker.
func (h Header) Before(o Header) bool {
	if h.Boot != o.Boot {
		return h.Boot < o.Boot
	}
	return h.Seq < o.Seq
}

// Telemetry is one sample: lockers/{id}/telemetry.
type Telemetry struct {
	Header
	M map[string]float64 `json:"m"`
}

// Cell door, lock values.
const (
	DoorOpen     = "open"
	DoorClosed   = "closed"
	LockLocked   = "locked"
	LockUnlocked = "unlocked"
	LockJammed   = "jammed"
)

// CellState is the reported state of one cell; absent fields are unchanged.
type CellState struct {
	Door     string `json:"door,omitempty"`
	Lock     string `json:"lock,omitempty"`
	Occupied *bool  `json:"occupied,omitempty"`
}

// Power is the reported power state.
type Power struct {
	Mains    *bool    `json:"mains,omitempty"`
	BatteryV *float64 `json:"battery_v,omitempty"`
}

// State is a full or partial report: lockers/{id}/state.
type State struct {
	Header
	Full           bool                 `json:"full,omitempty"`
	Cells          map[string]CellState `json:"cells,omitempty"`
	Power          *Power               `json:"power,omitempty"`
	Firmware       string               `json:"firmware,omitempty"`
	DesiredVersion *int64               `json:"desired_version,omitempty"`
}

// Event types.
const (
	EventDoorOpened   = "door_opened"
	EventDoorClosed   = "door_closed"
	EventDoorForced   = "door_forced"
	EventCodeOffline  = "code_entered_offline"
	EventBarcode      = "barcode_scanned"
	EventPayment      = "payment"
	EventTamper       = "tamper"
	EventPowerLost    = "power_lost"
	EventPowerRestore = "power_restored"
)

// Event is a discrete event with a device-unique ID: lockers/{id}/events.
// Cause names who opened a door: "command:<id>", "code:<parcel>", "service:<user>";
// a door opened with no cause is forced.
type Event struct {
	ID string `json:"id"`
	Header
	Type  string          `json:"type"`
	Cell  string          `json:"cell,omitempty"`
	Cause string          `json:"cause,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// RPC methods the hub calls on a locker.
const (
	MethodCellOpen       = "cell.open"
	MethodCellStatus     = "cell.status"
	MethodLockerReboot   = "locker.reboot"
	MethodPowerCycle     = "power.cycle"
	MethodDisplayMessage = "display.message"
	MethodOTAInstall     = "ota.install"
	MethodVideoStart     = "video.start"
	MethodVideoStop      = "video.stop"
	MethodPOSCharge      = "pos.charge"
	MethodCodesKey       = "codes.key"
)

// Ask methods a locker calls on the hub.
const (
	AskCodeCheck    = "code.check"
	AskBarcodeCheck = "barcode.check"
)

// Error codes in RPC and ask responses.
const (
	ErrCodeExpired       = "expired"        // received after not_after
	ErrCodeUnknownMethod = "unknown_method" // method not implemented
	ErrCodeBadParams     = "bad_params"     // params missing or malformed
	ErrCodeUnknownCell   = "unknown_cell"
	ErrCodeJammed        = "jammed" // the lock did not release
	ErrCodeBusy          = "busy"
	ErrCodeInternal      = "internal"
)

// Request is an RPC request (rpc/req, hub→locker) or an ask (ask/req,
// locker→hub; then Header is set). Key and NotAfter are set on physical commands.
type Request struct {
	ID string `json:"id"`
	*Header
	Method   string          `json:"method"`
	Params   json.RawMessage `json:"params,omitempty"`
	Key      string          `json:"key,omitempty"`
	NotAfter int64           `json:"not_after,omitempty"`
}

// Response answers a Request: rpc/res or ask/res.
type Response struct {
	ID     string          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Error is a refusal by the other side.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// CellOpenParams are the params of cell.open and cell.status.
type CellOpenParams struct {
	Cell string `json:"cell"`
}

// DisplayMessageParams are the params of display.message.
type DisplayMessageParams struct {
	Text       string `json:"text"`
	TTLSeconds int    `json:"ttl_s,omitempty"`
}

// Desired is the hub's desired configuration: lockers/{id}/desired.
type Desired struct {
	Version int64           `json:"version"`
	Config  json.RawMessage `json:"config"`
}
