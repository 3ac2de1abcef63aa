package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
)

// ErrInvalid is wrapped by every decoding error of device input.
var ErrInvalid = errors.New("invalid device message")

// Size limits of device payloads.
const (
	MaxStateBytes = 64 << 10
	MaxEventBytes = 16 << 10
	MaxCells      = 1000
)

var cellName = regexp.MustCompile(`^[A-Z]{1,2}[0-9]{2}$`)

// ValidCellName reports whether s names a cell: column letter(s) and a
// two-digit row as printed on the locker (A01, B10, AA03).
func ValidCellName(s string) bool { return cellName.MatchString(s) }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func decodeStrict(payload []byte, limit int, v any) error {
	if len(payload) > limit {
		return invalid("payload of %d bytes is over the limit of %d", len(payload), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		return invalid("not JSON of the expected shape: %v", err)
	}
	if dec.More() {
		return invalid("trailing data after the JSON object")
	}
	return nil
}

func (h Header) validate() error {
	if h.Boot == 0 {
		return invalid("boot is missing or 0")
	}
	if h.TS <= 0 {
		return invalid("ts is missing")
	}
	return nil
}

// DecodeState decodes and checks lockers/{id}/state.
func DecodeState(payload []byte) (State, error) {
	var s State
	if err := decodeStrict(payload, MaxStateBytes, &s); err != nil {
		return State{}, err
	}
	if err := s.Header.validate(); err != nil {
		return State{}, err
	}
	if len(s.Cells) > MaxCells {
		return State{}, invalid("%d cells is more than %d", len(s.Cells), MaxCells)
	}
	for name, c := range s.Cells {
		if !ValidCellName(name) {
			return State{}, invalid("cell name %q (want a column letter and a two-digit row, e.g. A01)", name)
		}
		switch c.Door {
		case "", DoorOpen, DoorClosed:
		default:
			return State{}, invalid("cell %s: door %q (want open or closed)", name, c.Door)
		}
		switch c.Lock {
		case "", LockLocked, LockUnlocked, LockJammed:
		default:
			return State{}, invalid("cell %s: lock %q (want locked, unlocked or jammed)", name, c.Lock)
		}
	}
	if s.Power != nil && s.Power.BatteryV != nil {
		if v := *s.Power.BatteryV; math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 100 {
			return State{}, invalid("power.battery_v %v is not a plausible voltage", v)
		}
	}
	if len(s.Firmware) > 64 {
		return State{}, invalid("firmware version is longer than 64 characters")
	}
	if s.DesiredVersion != nil && *s.DesiredVersion < 0 {
		return State{}, invalid("desired_version is negative")
	}
	return s, nil
}

// DecodeEvent decodes and checks lockers/{id}/events.
func DecodeEvent(payload []byte) (Event, error) {
	var e Event
	if err := decodeStrict(payload, MaxEventBytes, &e); err != nil {
		return Event{}, err
	}
	if err := e.Header.validate(); err != nil {
		return Event{}, err
	}
	if e.ID == "" || len(e.ID) > 64 {
		return Event{}, invalid("event id must be 1 to 64 characters")
	}
	if e.Type == "" || len(e.Type) > 64 {
		return Event{}, invalid("event type must be 1 to 64 characters")
	}
	if e.Cell != "" && !ValidCellName(e.Cell) {
		return Event{}, invalid("cell name %q", e.Cell)
	}
	if len(e.Cause) > 128 {
		return Event{}, invalid("cause is longer than 128 characters")
	}
	return e, nil
}
