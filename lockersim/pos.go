package lockersim

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// The POS terminal (pos.charge, docs/protocol.md 8.3). Each locker has one
// whose behaviour is set by --pos and, per locker, by the control API
// (POST /lockers/{id}/pos):
//
//	approve  charges and answers {"approved":true,"reference":"T-…"}
//	decline  answers the error declined with the reason given ("insufficient_funds")
//	timeout  never answers (a terminal that hangs): the hub's command ends unanswered
//	none     no terminal: unknown_method
//
// A payment id is charged at most once: asked again (a new command after a
// lost answer or a timeout), the terminal answers the first outcome, kept
// on disk for 7 days (--data/ID.pos.json).

// POS modes.
const (
	POSApprove = "approve"
	POSDecline = "decline"
	POSTimeout = "timeout"
	POSNone    = "none"
)

// POSModes lists the modes.
var POSModes = []string{POSApprove, POSDecline, POSTimeout, POSNone}

// POSCharge is one pos.charge the terminal handled (or ignored, in timeout).
type POSCharge struct {
	Payment   string    `json:"payment"`
	Parcel    string    `json:"parcel"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Outcome   string    `json:"outcome"` // approved, declined, no_answer, repeat (answered from the first outcome)
	Reference string    `json:"reference,omitempty"`
	At        time.Time `json:"at"`
}

// POSView is the terminal as the control API shows it.
type POSView struct {
	Mode    string      `json:"mode"`
	Reason  string      `json:"reason,omitempty"` // decline: the reason given
	Charges []POSCharge `json:"charges"`          // oldest first
	Charged int         `json:"charged"`          // payments actually charged (approved, each once)
}

// posOutcome is a payment's first outcome, kept on disk (<data>/<id>.pos.json)
// for posKeep, so a reboot does not make a payment chargeable again.
type posOutcome struct {
	Result *protocol.POSChargeResult `json:"result,omitempty"`
	Err    *protocol.Error           `json:"error,omitempty"`
	At     time.Time                 `json:"at"`
}

// posKeep is how long a payment's outcome is kept (protocol.md 8.3: at least 7 days).
const posKeep = 7 * 24 * time.Hour

func posPath(dir, id string) string { return filepath.Join(dir, id+".pos.json") }

type posTerminal struct {
	mode    string
	reason  string
	charges []POSCharge
	done    map[string]posOutcome // payment id → first outcome
}

func (l *Locker) posLocked() *posTerminal {
	if l.pos == nil {
		mode := l.env.cfg.POS
		if mode == "" {
			mode = POSApprove
		}
		done, err := loadJSON[map[string]posOutcome](posPath(l.env.cfg.DataDir, l.id))
		if err != nil {
			l.log.Error("reading the POS outcomes", "err", err)
		}
		if done == nil {
			done = map[string]posOutcome{}
		}
		for id, o := range done {
			if time.Since(o.At) > posKeep {
				delete(done, id)
			}
		}
		l.pos = &posTerminal{mode: mode, reason: "insufficient_funds", done: done}
	}
	return l.pos
}

// SetPOS sets the terminal's mode (and a decline's reason).
func (l *Locker) SetPOS(mode, reason string) error {
	ok := false
	for _, m := range POSModes {
		ok = ok || m == mode
	}
	if !ok {
		return badRequest("mode must be one of " + strings.Join(POSModes, ", "))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.posLocked()
	t.mode = mode
	if reason != "" {
		t.reason = reason
	}
	return nil
}

// POS returns the terminal's mode and the charges it handled.
func (l *Locker) POS() POSView {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.posLocked()
	v := POSView{Mode: t.mode, Charges: append([]POSCharge{}, t.charges...)}
	if t.mode == POSDecline {
		v.Reason = t.reason
	}
	for _, c := range t.charges {
		if c.Outcome == "approved" {
			v.Charged++
		}
	}
	return v
}

// posSilentLocked reports whether a pos.charge goes unanswered (timeout mode,
// for a payment not decided before), recording it.
func (l *Locker) posSilentLocked(req protocol.Request) bool {
	t := l.posLocked()
	if t.mode != POSTimeout {
		return false
	}
	p, err := protocol.DecodePOSChargeParams(orEmpty(req.Params))
	if err != nil {
		return false
	}
	if _, decided := t.done[p.Payment]; decided {
		return false
	}
	t.charges = append(t.charges, POSCharge{Payment: p.Payment, Parcel: p.Parcel, Amount: p.Amount, Currency: p.Currency, Outcome: "no_answer", At: time.Now()})
	return true
}

func (l *Locker) execPOSChargeLocked(params json.RawMessage) (any, *protocol.Error) {
	t := l.posLocked()
	if t.mode == POSNone {
		return nil, &protocol.Error{Code: protocol.ErrCodeUnknownMethod, Message: "this locker has no POS terminal"}
	}
	p, err := protocol.DecodePOSChargeParams(orEmpty(params))
	if err != nil {
		return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: err.Error()}
	}
	rec := POSCharge{Payment: p.Payment, Parcel: p.Parcel, Amount: p.Amount, Currency: p.Currency, At: time.Now()}
	if o, ok := t.done[p.Payment]; ok {
		rec.Outcome = "repeat"
		if o.Result != nil {
			rec.Reference = o.Result.Reference
		}
		t.charges = append(t.charges, rec)
		if o.Err != nil {
			return nil, o.Err
		}
		return o.Result, nil
	}
	o := posOutcome{At: time.Now().UTC()}
	if t.mode == POSDecline {
		rec.Outcome = "declined"
		o.Err = &protocol.Error{Code: protocol.ErrCodeDeclined, Message: t.reason}
	} else {
		rec.Outcome = "approved"
		rec.Reference = fmt.Sprintf("T-%s-%04d", l.id, len(t.done)+1)
		o.Result = &protocol.POSChargeResult{Approved: true, Reference: rec.Reference}
	}
	t.done[p.Payment] = o
	if err := saveJSON(posPath(l.env.cfg.DataDir, l.id), t.done, 0o600); err != nil {
		l.log.Error("writing the POS outcomes", "err", err) // kept in memory; a reboot forgets it
	}
	t.charges = append(t.charges, rec)
	if o.Err != nil {
		return nil, o.Err
	}
	return o.Result, nil
}
