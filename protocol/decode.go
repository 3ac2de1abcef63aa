package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
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

// Limits of telemetry samples.
const (
	MaxTelemetryBytes   = 4 << 10
	MaxTelemetryMetrics = 64
)

var metricName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// ValidMetricName reports whether s can name a measurement: lower snake
// case, starting with a letter, at most 48 characters (temp_c, battery_v).
func ValidMetricName(s string) bool { return metricName.MatchString(s) }

// telemetryWire is a telemetry payload as sent; pointers tell absent fields
// from zero ones.
type telemetryWire struct {
	Boot *uint32        `json:"boot"`
	Seq  *uint64        `json:"seq"`
	TS   *int64         `json:"ts"`
	M    map[string]any `json:"m"`
}

// DecodeTelemetry decodes and checks lockers/{id}/telemetry: a JSON object
// with boot > 0, seq, ts > 0 and "m", a non-empty object of at most
// MaxTelemetryMetrics measurements whose names pass ValidMetricName and whose
// values are finite JSON numbers. Unknown fields are refused.
func DecodeTelemetry(payload []byte) (Telemetry, error) {
	if len(payload) > MaxTelemetryBytes {
		return Telemetry{}, invalid("payload of %d bytes is over the limit of %d", len(payload), MaxTelemetryBytes)
	}
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return Telemetry{}, invalid("telemetry is not a JSON object")
	}
	var w telemetryWire
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return Telemetry{}, invalid("not JSON of the expected shape: %v", err)
	}
	if dec.More() {
		return Telemetry{}, invalid("trailing data after the JSON object")
	}
	switch {
	case w.Boot == nil || *w.Boot == 0:
		return Telemetry{}, invalid("boot is missing or 0")
	case w.Seq == nil:
		return Telemetry{}, invalid("seq is missing")
	case w.TS == nil || *w.TS <= 0:
		return Telemetry{}, invalid("ts is missing or not positive")
	case len(w.M) == 0:
		return Telemetry{}, invalid(`"m" is missing or has no measurements`)
	case len(w.M) > MaxTelemetryMetrics:
		return Telemetry{}, invalid(`"m" has %d measurements, more than %d`, len(w.M), MaxTelemetryMetrics)
	}
	t := Telemetry{Header: Header{Boot: *w.Boot, Seq: *w.Seq, TS: *w.TS}, M: make(map[string]float64, len(w.M))}
	for name, v := range w.M {
		if !ValidMetricName(name) {
			return Telemetry{}, invalid("measurement name %q (want lower snake case, e.g. temp_c)", name)
		}
		n, ok := v.(json.Number)
		if !ok {
			return Telemetry{}, invalid("measurement %s is %s, not a number", name, jsonKind(v))
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return Telemetry{}, invalid("measurement %s: %s is not a finite number", name, n)
		}
		t.M[name] = f
	}
	return t, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Limits of asks.
const (
	MaxAskBytes     = 8 << 10
	MaxAskIDLen     = 64
	MaxAskMethodLen = 64
)

// askWire is an ask as sent; pointers tell absent fields from zero ones.
type askWire struct {
	ID     *string         `json:"id"`
	Boot   *uint32         `json:"boot"`
	Seq    *uint64         `json:"seq"`
	TS     *int64          `json:"ts"`
	Method *string         `json:"method"`
	Params json.RawMessage `json:"params"`
}

// DecodeAsk decodes and checks lockers/{id}/ask/req: a JSON object of at
// most MaxAskBytes with an id (1–MaxAskIDLen printable ASCII characters), the
// header (boot > 0, seq, ts > 0), a method (1–MaxAskMethodLen characters of
// a–z, 0–9, '.', '_') and params, absent, null or a JSON object. Other fields
// are ignored (section 1 of docs/protocol.md).
func DecodeAsk(payload []byte) (Request, error) {
	if len(payload) > MaxAskBytes {
		return Request{}, invalid("payload of %d bytes is over the limit of %d", len(payload), MaxAskBytes)
	}
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return Request{}, invalid("ask is not a JSON object")
	}
	var w askWire
	if err := decodeStrict(payload, MaxAskBytes, &w); err != nil {
		return Request{}, err
	}
	switch {
	case w.ID == nil || *w.ID == "" || len(*w.ID) > MaxAskIDLen || !printableASCII(*w.ID):
		return Request{}, invalid("id must be 1 to %d printable ASCII characters", MaxAskIDLen)
	case w.Boot == nil || *w.Boot == 0:
		return Request{}, invalid("boot is missing or 0")
	case w.Seq == nil:
		return Request{}, invalid("seq is missing")
	case w.TS == nil || *w.TS <= 0:
		return Request{}, invalid("ts is missing or not positive")
	case w.Method == nil || !validAskMethod(*w.Method):
		return Request{}, invalid("method must be 1 to %d characters of a-z, 0-9, '.' and '_'", MaxAskMethodLen)
	}
	req := Request{ID: *w.ID, Header: &Header{Boot: *w.Boot, Seq: *w.Seq, TS: *w.TS}, Method: *w.Method}
	if p := bytes.TrimSpace(w.Params); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		if p[0] != '{' {
			return Request{}, invalid("params must be a JSON object")
		}
		req.Params = json.RawMessage(p)
	}
	return req, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func validAskMethod(s string) bool {
	if s == "" || len(s) > MaxAskMethodLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
