// Package connectors translates partners' own formats to and from the hub's
// deliveries, so that a marketplace or store that speaks, say, an XML order
// feed is connected by configuration and a mapping rather than new code
// paths (issue 13, integrations). A Connector decodes a partner's order and
// cancellation into Order and Cancel and encodes Status and errors back;
// web serves every connector under /api/v1/connectors/{name}/… and turns
// orders into deliveries through the same parcels API as JSON callers.
//
// Decoders take untrusted input: they bound sizes, refuse what they do not
// understand with ErrInvalid and a clear message, and are fuzzed.
package connectors

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// ErrInvalid marks a partner document that cannot be taken (400).
var ErrInvalid = errors.New("invalid")

// MaxDocument bounds a partner document (the request body).
const MaxDocument = 64 << 10

// Order is a partner's delivery request in the hub's terms. OrderID is the
// partner's own id: the delivery is created once per OrderID (a repeat
// returns the first delivery), and the parcel's reference is the OrderID.
type Order struct {
	OrderID      string
	LockerID     string
	Size         string
	Name         string
	Phone        string
	Email        string
	StorageHours int // 0: the hub's default
}

// Cancel is a partner's cancellation of an order.
type Cancel struct {
	OrderID string
	Reason  string
}

// Status is a delivery's state as a partner sees it.
type Status struct {
	OrderID   string
	ParcelID  string
	State     string // the parcel state: reserved, deposited, picked_up, expired, returned, cancelled …
	LockerID  string
	Cell      string
	ExpiresAt *time.Time // end of the storage period, once deposited
	UpdatedAt time.Time
}

// Callback is a status webhook for a partner: which event (the webhook type,
// e.g. parcel.deposited), its stable id and time, and the delivery's status
// after it.
type Callback struct {
	ID     string
	Event  string
	At     time.Time
	Status Status
}

// Connector is one partner format.
type Connector interface {
	// Name is the connector's name in URLs: lowercase letters, digits, '-'.
	Name() string
	// ContentType is the media type of what it reads and writes.
	ContentType() string
	DecodeOrder(doc []byte) (Order, error)
	DecodeCancel(doc []byte) (Cancel, error)
	EncodeStatus(s Status) ([]byte, error)
	// EncodeCallback renders a status callback, the outbound direction: a
	// delivery's state change pushed to the partner's webhook endpoint (an
	// endpoint with this connector's name as its format), signed like the
	// JSON webhooks. The callback's ID is the webhook's stable id, which the
	// partner deduplicates on.
	EncodeCallback(c Callback) ([]byte, error)
	// EncodeError renders an error for the partner: code is the hub's
	// machine-readable code (invalid, not_found, no_free_cell, conflict …).
	EncodeError(code, message string) []byte
}

// Set is the connectors a hub serves, by name.
type Set map[string]Connector

// NewSet returns a set of cs; names must be unique.
func NewSet(cs ...Connector) (Set, error) {
	s := Set{}
	for _, c := range cs {
		if _, dup := s[c.Name()]; dup {
			return nil, fmt.Errorf("connectors: %q twice", c.Name())
		}
		s[c.Name()] = c
	}
	return s, nil
}

// Names lists the set's connector names, sorted.
func (s Set) Names() []string {
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Default is the set every hub serves.
func Default() Set {
	s, _ := NewSet(XMLOrders{})
	return s
}
