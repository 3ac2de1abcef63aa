package fleet

import (
	"encoding/json"
	"fmt"
)

// Entities and actions of change records.
const (
	EntityLocker = "locker"
	EntityModel  = "model"

	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// Change records one create, update or delete of the fleet's registry, for
// the audit log: what was there before and what is there after. Before is nil
// for a create, After nil for a delete; otherwise each holds the whole entity
// (a Locker or a Model value).
type Change struct {
	Entity string `json:"entity"`
	ID     string `json:"id"`
	Action string `json:"action"`
	Before any    `json:"before"`
	After  any    `json:"after"`
}

// OnChange registers fn to be called with every change after it is committed,
// in the order of the calls that made them for each entity. fn runs on the
// caller's goroutine and must not block; register before serving requests.
func (r *Registry) OnChange(fn func(Change)) {
	r.mu.Lock()
	r.observers = append(r.observers, fn)
	r.mu.Unlock()
}

func (r *Registry) notify(changes ...Change) {
	r.tell(changes...)
	r.mu.RLock()
	announce := r.announce
	r.mu.RUnlock()
	if announce == nil {
		return
	}
	var ids []string
	for _, c := range changes {
		if c.Entity == EntityLocker {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) > 0 {
		announce(ids)
	}
}

// tell calls the observers (a change made here, or read after another
// node made it).
func (r *Registry) tell(changes ...Change) {
	r.mu.RLock()
	obs := r.observers
	r.mu.RUnlock()
	for _, c := range changes {
		for _, fn := range obs {
			fn(c)
		}
	}
}

// FieldError is invalid input in one field; it wraps ErrInvalid.
type FieldError struct {
	Field string // the JSON name, e.g. "time_zone" or "layout[3].size"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Opt is one field of a JSON merge patch (RFC 7396): Set when the field was
// present, Null when it was present as null (which clears the field), else V.
type Opt[T any] struct {
	Set, Null bool
	V         T
}

// Value returns an Opt that sets v.
func Value[T any](v T) Opt[T] { return Opt[T]{Set: true, V: v} }

// UnmarshalJSON records presence; encoding/json calls it for null too.
func (o *Opt[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.V)
}

// MarshalJSON writes V, or null.
func (o Opt[T]) MarshalJSON() ([]byte, error) {
	if o.Null {
		return []byte("null"), nil
	}
	return json.Marshal(o.V)
}
