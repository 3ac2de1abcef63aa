package lockersim

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// Offline pickup (docs/protocol.md, "Offline pickup"): the hub sends the
// locker its pickup-code secret (codes.key) and the list of parcels it may
// hand out by itself (parcels.sync). Both are kept on disk, in ID.codes.json
// (0600), across reboots. A code typed while the locker is offline, or when
// the hub does not answer code.check in time, is checked against that list
// with protocol.PickupCodeValid; a match opens the cell with cause
// code:<parcel> (events code_entered_offline and door_opened, queued as QoS 1
// and sent after the reconnect) and drops the parcel from the list. Wrong
// codes are rate-limited: Config.CodeTries per Config.CodeWindow.

// codeStore is ID.codes.json.
type codeStore struct {
	KeyVersion     int64                   `json:"key_version,omitempty"`
	Key            []byte                  `json:"key,omitempty"`
	ParcelsVersion int64                   `json:"parcels_version,omitempty"`
	Parcels        []protocol.LockerParcel `json:"parcels,omitempty"`
}

func codesPath(dir, id string) string { return filepath.Join(dir, id+".codes.json") }

func loadCodes(dir, id string) (codeStore, error) { return loadJSON[codeStore](codesPath(dir, id)) }

func saveCodes(dir, id string, c codeStore) error { return saveJSON(codesPath(dir, id), c, 0o600) }

// execCodesKeyLocked stores a newer code secret; it answers the version held.
func (l *Locker) execCodesKeyLocked(params json.RawMessage) (any, *protocol.Error) {
	var p protocol.CodesKeyParams
	if err := json.Unmarshal(orEmpty(params), &p); err != nil || p.Version <= 0 || len(p.Key) != protocol.PickupKeyBytes {
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams,
			Message: fmt.Sprintf(`params must be {"version":N,"key":"<%d bytes, base64>"}`, protocol.PickupKeyBytes)}
	}
	if p.Version > l.codes.KeyVersion {
		next := l.codes
		next.KeyVersion, next.Key = p.Version, p.Key
		if err := saveCodes(l.env.cfg.DataDir, l.id, next); err != nil {
			return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "storing the key failed"}
		}
		l.codes = next
	}
	return map[string]int64{"version": l.codes.KeyVersion}, nil
}

// execParcelsSyncLocked stores a newer offline parcel list; it answers the version held.
func (l *Locker) execParcelsSyncLocked(params json.RawMessage) (any, *protocol.Error) {
	var p protocol.ParcelsSyncParams
	if err := json.Unmarshal(orEmpty(params), &p); err != nil || p.Version <= 0 {
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: `params must be {"version":N,"parcels":[…]}`}
	}
	for _, pc := range p.Parcels {
		if pc.ID == "" || !protocol.ValidCellName(pc.Cell) || pc.ValidTo <= pc.ValidFrom {
			return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: fmt.Sprintf("parcel %q: id, cell and a window are needed", pc.ID)}
		}
	}
	if p.Version > l.codes.ParcelsVersion {
		next := l.codes
		next.ParcelsVersion, next.Parcels = p.Version, p.Parcels
		if err := saveCodes(l.env.cfg.DataDir, l.id, next); err != nil {
			return nil, &protocol.Error{Code: protocol.ErrCodeInternal, Message: "storing the parcel list failed"}
		}
		l.codes = next
	}
	return map[string]int64{"version": l.codes.ParcelsVersion}, nil
}

// Paths a typed code takes.
const (
	CodeOnline  = "online"  // the hub answered code.check
	CodeOffline = "offline" // checked by the locker against its own list
)

// CodeResult is what happened to a code typed at the keypad.
type CodeResult struct {
	Path   string `json:"path"`             // CodeOnline or CodeOffline
	Opened bool   `json:"opened"`           // offline: the locker opened the cell itself
	Cell   string `json:"cell,omitempty"`   // the parcel's cell (online: from the hub's answer; the hub opens it by a command)
	Parcel string `json:"parcel,omitempty"` // the parcel
	// ID and Result are the ask's id and the hub's result (online).
	ID     string          `json:"id,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *protocol.Error `json:"error,omitempty"` // the refusal: the hub's, or wrong_code / rate_limited offline
}

// EnterCode is a person typing a pickup code. Connected, the locker asks the
// hub (code.check) and waits up to wait for the answer; offline, or without
// an answer in time, it checks the code itself.
func (l *Locker) EnterCode(ctx context.Context, code string, wait time.Duration) CodeResult {
	l.mu.Lock()
	online := l.conn != nil
	l.mu.Unlock()
	if online {
		actx, cancel := context.WithTimeout(ctx, wait)
		res, err := l.Ask(actx, protocol.AskCodeCheck, protocol.CodeCheckParams{Code: code})
		cancel()
		if err == nil {
			out := CodeResult{Path: CodeOnline, ID: res.ID, Result: res.Result, Error: res.Error}
			var r protocol.CodeCheckResult
			if res.Error == nil && json.Unmarshal(res.Result, &r) == nil {
				out.Cell, out.Parcel = r.Cell, r.Parcel
			}
			return out
		}
		l.log.Info("no answer to code.check in time: checking the code offline", "wait", wait)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkCodeLocked(code)
}

// checkCodeLocked is the offline check of a typed code.
func (l *Locker) checkCodeLocked(code string) CodeResult {
	now := l.now()
	out := CodeResult{Path: CodeOffline}
	window := l.env.cfg.CodeWindow
	kept := l.wrongCodes[:0]
	for _, t := range l.wrongCodes {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	l.wrongCodes = kept
	if len(l.wrongCodes) >= l.env.cfg.CodeTries {
		l.env.stats.CodesRefused.Add(1)
		retry := window - now.Sub(l.wrongCodes[0])
		out.Error = &protocol.Error{Code: protocol.ErrCodeRateLimited,
			Message: fmt.Sprintf("%d wrong codes within %s: try again in %s", len(l.wrongCodes), window, retry.Round(time.Second))}
		return out
	}
	for i, p := range l.codes.Parcels {
		in := protocol.PickupCodeInput{LockerID: l.id, ParcelID: p.ID, Cell: p.Cell,
			ValidFrom: time.UnixMilli(p.ValidFrom), ValidTo: time.UnixMilli(p.ValidTo)}
		if !protocol.PickupCodeValid(l.codes.Key, in, code, now) {
			continue
		}
		c, ok := l.cell(p.Cell)
		if !ok {
			break // a parcel in a cell this locker does not have: no match
		}
		next := l.codes
		next.Parcels = append(append([]protocol.LockerParcel{}, l.codes.Parcels[:i]...), l.codes.Parcels[i+1:]...)
		if err := saveCodes(l.env.cfg.DataDir, l.id, next); err != nil {
			// Not opened: a parcel the list still holds could be opened twice.
			l.log.Error("storing the parcel list failed", "err", err)
			out.Error = &protocol.Error{Code: protocol.ErrCodeInternal, Message: "storing the parcel list failed"}
			return out
		}
		l.codes = next
		cause := "code:" + p.ID
		l.eventLocked(protocol.EventCodeOffline, p.Cell, cause, nil)
		if c.door != protocol.DoorOpen {
			l.openLocked(p.Cell, cause, true)
		}
		l.env.stats.CodesOffline.Add(1)
		if l.handedOut == nil {
			l.handedOut = map[string]protocol.LockerParcel{}
		}
		l.handedOut[p.Cell] = p
		out.Opened, out.Cell, out.Parcel = true, p.Cell, p.ID
		return out
	}
	l.wrongCodes = append(l.wrongCodes, now)
	l.env.stats.CodesRefused.Add(1)
	out.Error = &protocol.Error{Code: protocol.ErrCodeWrongCode, Message: "no parcel here has this code"}
	return out
}

// ScanResult is what the hub answered to a barcode the scanner read: the
// parcel and its cell (a drop-off: the hub opens that cell by a command), or
// the refusal the screen shows (unknown_barcode, barcode_mismatch, …).
type ScanResult struct {
	ID     string          `json:"id"`
	Parcel string          `json:"parcel,omitempty"`
	Cell   string          `json:"cell,omitempty"`
	Error  *protocol.Error `json:"error,omitempty"`
}

// ScanBarcode is the scanner reading a parcel's label: connected, the
// locker asks the hub (barcode.check, docs/protocol.md section 9.2) and
// waits until ctx ends; offline, or without an answer, it checks a pickup
// or collection scan against its parcel list itself (a drop-off needs the
// hub: "offline"). It opens nothing itself: for a drop-off the hub sends
// cell.open.
func (l *Locker) ScanBarcode(ctx context.Context, p protocol.BarcodeCheckParams) (ScanResult, error) {
	l.mu.Lock()
	online := l.conn != nil && !time.Now().Before(l.offlineUntil)
	l.mu.Unlock()
	if !online {
		return l.scanOffline(p), nil
	}
	wait := l.env.cfg.AskTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := l.Ask(actx, protocol.AskBarcodeCheck, p)
	out := ScanResult{ID: res.ID, Error: res.Error}
	if err != nil {
		return l.scanOffline(p), nil
	}
	if res.Error == nil {
		var r protocol.BarcodeCheckResult
		if err := json.Unmarshal(res.Result, &r); err != nil {
			return out, fmt.Errorf("barcode.check %s: bad result: %w", res.ID, err)
		}
		out.Parcel, out.Cell = r.Parcel, r.Cell
	}
	return out, nil
}

// scanOffline checks a scan against the offline parcel list: at pickup the
// barcode must be that of the parcel in (or just handed out of) the cell.
func (l *Locker) scanOffline(p protocol.BarcodeCheckParams) ScanResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.Purpose == "" || p.Purpose == protocol.ScanDropoff || p.Cell == "" {
		return ScanResult{Error: &protocol.Error{Code: protocol.ErrCodeOffline, Message: "offline: a drop-off scan needs the connection; try again later"}}
	}
	lp, ok := l.handedOut[p.Cell]
	for _, c := range l.codes.Parcels {
		if c.Cell == p.Cell {
			lp, ok = c, true
		}
	}
	if !ok || lp.Barcode == "" || lp.Barcode != p.Barcode {
		return ScanResult{Error: &protocol.Error{Code: protocol.ErrCodeBarcodeMismatch, Message: "this is not the parcel of cell " + p.Cell}}
	}
	return ScanResult{Parcel: lp.ID, Cell: lp.Cell}
}
