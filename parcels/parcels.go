// Package parcels is the parcel lifecycle for delivery services (docs/parcels.md):
// a delivery reserves a free cell of a size on a locker, the courier drops it
// off, the recipient picks it up with a code, or it expires and the courier
// collects it for return.
//
//	reserved ──dropoff, door closed occupied──▶ deposited ──code, door closed empty──▶ picked_up
//	    │                                           │
//	 cancel (cell released)                 storage over / cancel: marked for return
//	    ▼                                           ▼
//	cancelled                         expired | cancelled (to_return) ──collect, door closed empty──▶ returned
//
// Steps that follow from the locker's reports (deposited, picked_up,
// returned) are derived from the durable twin (DESIGN decision 10): the
// twin's cell state is stored before the report is acknowledged, and the
// Store evaluates the open parcels of a locker against it after every twin
// change and for every locker at start. A step needs the cell's door closed
// and its occupancy reported by reports newer (boot, seq) than the stamp the
// step began at, so nothing transient has to be caught on the way.
package parcels

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations returns the package's schema.
func Migrations() pg.Migrations { return pg.Embedded("parcels", migrationsFS, "migrations") }

// States of a parcel.
const (
	StateReserved  = "reserved"
	StateDeposited = "deposited"
	StatePickedUp  = "picked_up"
	StateCancelled = "cancelled"
	StateExpired   = "expired"
	StateReturned  = "returned"
	// StateReservationExpired: reserved, but not dropped off before the
	// reservation's deadline (reserved_until); the cell is released.
	StateReservationExpired = "reservation_expired"
)

// States lists every state.
var States = []string{StateReserved, StateDeposited, StatePickedUp, StateCancelled, StateExpired, StateReturned, StateReservationExpired}

// Sizes of cells.
var Sizes = []string{"S", "M", "L", "XL"}

// Errors of parcels; web maps them to HTTP.
var (
	ErrInvalid    = errors.New("invalid")
	ErrNotFound   = errors.New("not found")
	ErrNoFreeCell = errors.New("no free cell")
	ErrConflict   = errors.New("conflict") // the parcel's state does not allow the step
	// ErrIdempotencyConflict: the key belongs to a parcel for another locker or size.
	ErrIdempotencyConflict = errors.New("idempotency key already used for another parcel")
)

// Stamp orders a locker's reports: (boot, seq).
type Stamp struct {
	Boot uint32
	Seq  uint64
}

// After reports whether s is strictly after o.
func (s Stamp) After(o Stamp) bool {
	if s.Boot != o.Boot {
		return s.Boot > o.Boot
	}
	return s.Seq > o.Seq
}

func maxStamp(a, b Stamp) Stamp {
	if b.After(a) {
		return b
	}
	return a
}

// CellReport is a cell's state in the locker's twin, each field with the
// stamp of the report that set it.
type CellReport struct {
	Door       string // open, closed
	DoorAt     Stamp
	Occupied   *bool
	OccupiedAt Stamp
}

// OpenRequest asks for a cell.open command.
type OpenRequest struct {
	LockerID, Cell string
	IdempotencyKey string // scoped to Caller
	Caller         string
	CreatedBy      string
}

// Fleet is what parcels needs of the fleet (app adapts fleet's overview,
// twins and commands).
type Fleet interface {
	// FreeCells lists a locker's free cells of a size; ok is false for an
	// unknown locker.
	FreeCells(lockerID, size string) (cells []string, ok bool)
	// ReturnCells lists a locker's cells of a size held for returns that
	// are ready (closed, empty, not taken).
	ReturnCells(lockerID, size string) (cells []string, ok bool)
	// SetTaken tells the fleet which cells of a locker parcels hold, so they
	// stop counting as free.
	SetTaken(lockerID string, cells []string)
	// Cell is a cell's reported state.
	Cell(lockerID, cell string) (CellReport, bool)
	// OpenCell creates (or, for a known key, finds) a cell.open command.
	OpenCell(ctx context.Context, r OpenRequest) (Opened, error)
	// Place is a locker's address and IANA time zone ("" when not set), for
	// what recipients are told.
	Place(ctx context.Context, lockerID string) (address, timeZone string, err error)
	// HasPOS reports whether the locker has a POS terminal (its model's
	// capability "pos").
	HasPOS(ctx context.Context, lockerID string) (bool, error)
	// Charge creates (or, for a known key, finds) a pos.charge command and
	// waits until it ends or ctx does. Without a command it returns the error
	// and an empty Command.
	Charge(ctx context.Context, r ChargeRequest) (ChargeOutcome, error)
}

// Opened is a cell.open command: its id, whether this request created it
// (false: the key was known), and the command as the API shows it.
type Opened struct {
	ID      string
	Created bool
	Command any
}

// CodeKeys gives a locker's pickup-code secret. The secret is never logged,
// audited, streamed or returned.
type CodeKeys interface {
	Key(ctx context.Context, lockerID string) (secret []byte, err error)
}

// OutMessage is a notification or webhook for the outbox.
type OutMessage struct {
	ID       string // stable: receivers deduplicate on it
	Channel  string // webhook, sms, email
	ClientID int64  // webhook: the API client whose endpoint receives it
	To       string // sms, email
	Template string
	Data     map[string]any
	Parcel   string // the parcel it tells of (a parcel's notifications are listed by it)
	Carrier  string // sms, email: the parcel's carrier and …
	Language string // … the recipient's language choose the template
}

// Channels of messages.
const (
	ChannelWebhook = "webhook"
	ChannelSMS     = "sms"
	ChannelEmail   = "email"
)

// Templates of recipient notifications.
const (
	TemplateReady    = "parcel_ready"
	TemplateReminder = "pickup_reminder"
	TemplateExpired  = "parcel_expired"
	TemplatePickedUp = "parcel_picked_up"
	// TemplateReturnAccepted tells a customer that a return was accepted
	// at a locker (sent by the customer-returns flow).
	TemplateReturnAccepted = "return_accepted"
)

// Outbox takes messages inside the transaction of the change they tell of.
type Outbox interface {
	Enqueue(ctx context.Context, tx pgx.Tx, m OutMessage) error
}

// OfflineLists keeps each locker's list of the parcels it may hand out by
// itself while offline (fleet.LockerSync delivers it by parcels.sync). The
// same list twice changes nothing.
type OfflineLists interface {
	SetParcels(ctx context.Context, lockerID string, parcels []protocol.LockerParcel) error
}

// DefaultChargeTimeout is how long a locker's terminal has to answer pos.charge.
const DefaultChargeTimeout = time.Minute

// Config tunes the store; zero values take the defaults noted.
type Config struct {
	DefaultStorage time.Duration // 72 h
	MinStorage     time.Duration // 1 h
	MaxStorage     time.Duration // 30 days
	ReminderBefore time.Duration // 24 h before the storage period ends
	Sweep          time.Duration // reminders and expiry, 30 s
	SweepBatch     int           // parcels per kind and tick, 100
	WrongCodes     int           // wrong codes per locker in WrongWindow before rate_limited, 5
	WrongWindow    time.Duration // 5 min
	// ReservationTime is how long a reservation waits for the drop-off
	// before it expires and frees its cell, unless the creating API client
	// has a time of its own (ReservationHours), 48 h.
	ReservationTime time.Duration
	// ReservationHours gives an API client's own reservation time in hours
	// (0: ReservationTime); nil: every reservation gets ReservationTime.
	ReservationHours func(ctx context.Context, clientID int64) (int, error)
	// DropoffGrace: a reservation whose drop-off was asked this recently,
	// or whose cell door is open, is not expired yet (the courier is at
	// the cell), 15 min.
	DropoffGrace time.Duration
	Now          func() time.Time
	Keys         CodeKeys     // nil: no codes (deposits still happen; codes are not sent)
	Outbox       Outbox       // nil: messages are dropped
	Offline      OfflineLists // nil: lockers get no offline parcel list
	// ChargeTimeout is how long the locker's terminal has to answer
	// pos.charge (the command's validity), 60 s.
	ChargeTimeout time.Duration
	Receipts      Receipts    // nil: receipts show no delivery state
	Quotas        QuotaSource // nil: no carrier quotas
}

func (c *Config) defaults() {
	if c.DefaultStorage == 0 {
		c.DefaultStorage = 72 * time.Hour
	}
	if c.MinStorage == 0 {
		c.MinStorage = time.Hour
	}
	if c.MaxStorage == 0 {
		c.MaxStorage = 30 * 24 * time.Hour
	}
	if c.ReminderBefore == 0 {
		c.ReminderBefore = 24 * time.Hour
	}
	if c.Sweep == 0 {
		c.Sweep = 30 * time.Second
	}
	if c.SweepBatch == 0 {
		c.SweepBatch = 100
	}
	if c.WrongCodes == 0 {
		c.WrongCodes = 5
	}
	if c.WrongWindow == 0 {
		c.WrongWindow = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ChargeTimeout == 0 {
		c.ChargeTimeout = DefaultChargeTimeout
	}
	if c.ReservationTime <= 0 {
		c.ReservationTime = 48 * time.Hour
	}
	if c.DropoffGrace <= 0 {
		c.DropoffGrace = 15 * time.Minute
	}
	c.DefaultStorage = min(max(c.DefaultStorage, c.MinStorage), c.MaxStorage)
}

// Recipient is who picks the parcel up.
type Recipient struct {
	Name  string `json:"name"`
	Phone string `json:"phone"`
	Email string `json:"email"`
	// Language is the recipient's language (BCP 47: "de", "de-AT"), which
	// chooses the language of notifications; optional.
	Language string `json:"language,omitempty"`
}

// Parcel is one delivery as the API shows it. It never holds the pickup code.
type Parcel struct {
	ID           string     `json:"id"`
	Carrier      string     `json:"carrier"`
	CreatedBy    string     `json:"created_by"`
	LockerID     string     `json:"locker_id"`
	Size         string     `json:"size"`
	Cell         string     `json:"cell"`
	State        string     `json:"state"`
	ToReturn     bool       `json:"to_return"` // marked for return (expired, or cancelled after deposit)
	Recipient    Recipient  `json:"recipient"`
	Reference    string     `json:"reference"`
	StorageHours int        `json:"storage_hours"`
	CreatedAt    time.Time  `json:"created_at"`
	DropoffAt    *time.Time `json:"dropoff_at,omitempty"`
	DepositedAt  *time.Time `json:"deposited_at,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	RemindedAt   *time.Time `json:"reminded_at,omitempty"`
	PickedUpAt   *time.Time `json:"picked_up_at,omitempty"`
	ExpiredAt    *time.Time `json:"expired_at,omitempty"`
	CancelledAt  *time.Time `json:"cancelled_at,omitempty"`
	CollectAt    *time.Time `json:"collect_at,omitempty"`
	ReturnedAt   *time.Time `json:"returned_at,omitempty"`
	CancelReason string     `json:"cancel_reason,omitempty"`
	UpdatedAt    time.Time  `json:"updated_at"`
	// What the parcel is: the barcode on its label, its declared contents
	// and value (minor units of Currency).
	Barcode       string `json:"barcode,omitempty"`
	Contents      string `json:"contents,omitempty"`
	DeclaredValue int64  `json:"declared_value,omitempty"`
	Currency      string `json:"currency,omitempty"`
	// A move to another cell in progress: the cell it leaves and the stage
	// (from: that cell is open to take the parcel out; to: Cell is open).
	MoveFrom  string `json:"move_from,omitempty"`
	MoveStage string `json:"move_stage,omitempty"`
	// Kind: delivery (to a recipient) or return (from a customer to the
	// carrier: dropped with a return code, collected by the courier).
	Kind string `json:"kind"`
	// AmountDue is charged at the locker's POS terminal before pickup;
	// absent for a prepaid parcel.
	AmountDue *Money `json:"amount_due,omitempty"`
	// ReservedUntil: a reserved parcel not dropped off by then expires
	// (state reservation_expired) and its cell is released.
	ReservedUntil *time.Time `json:"reserved_until,omitempty"`
	History       []Step     `json:"history,omitempty"`
	// Payments are the charges at the locker and refunds, with their
	// fiscal receipts (Get only).
	Payments []Payment `json:"payments,omitempty"`
	// Scans are the barcodes lockers read and checked against this parcel.
	Scans []Scan `json:"scans,omitempty"`

	clientID  int64
	holdsCell bool
	mark      Stamp
}

// Step is one entry of a parcel's history.
type Step struct {
	At     time.Time `json:"at"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	By     string    `json:"by"`
	Note   string    `json:"note,omitempty"`
	Locker string    `json:"locker,omitempty"`
	Cell   string    `json:"cell,omitempty"`
	// Source is what was behind the step: command:<id>, report:<boot>.<seq>
	// (the locker's report that showed it), ask:<id>, scan:<id>, api, sweep.
	Source string `json:"source,omitempty"`
}

// Caller is who asks for a change: the idempotency scope, a readable name,
// the carrier the caller is limited to ("" for the whole fleet) and the API
// client (0 when a user).
type Caller struct {
	Scope    string
	Name     string
	Carrier  string
	ClientID int64
}

// NewParcel is a request for a delivery.
type NewParcel struct {
	LockerID      string    `json:"locker"`
	Size          string    `json:"size"`
	Recipient     Recipient `json:"recipient"`
	Reference     string    `json:"reference"`
	StorageHours  int       `json:"storage_hours"`
	Carrier       string    `json:"carrier,omitempty"` // callers of the whole fleet only; else the caller's
	Barcode       string    `json:"barcode,omitempty"`
	Contents      string    `json:"contents,omitempty"`
	DeclaredValue int64     `json:"declared_value,omitempty"` // minor units of currency
	Currency      string    `json:"currency,omitempty"`       // ISO 4217, required with a value
	// AmountDue is charged at the locker before pickup (the locker needs
	// a POS terminal); nil: prepaid.
	AmountDue      *Money `json:"amount_due,omitempty"`
	IdempotencyKey string `json:"-"`

	kind string // "" delivery, KindReturn
}

// Store keeps the parcels.
type Store struct {
	pool  *pgxpool.Pool
	fleet Fleet
	cfg   Config
	log   *slog.Logger
	m     *metrics

	mu    sync.Mutex
	held  map[string]map[string]string // locker → cell → parcel holding it
	dirty map[string]bool              // lockers whose parcels to evaluate against their twin
	wrong map[string][]time.Time       // locker → times of recent wrong codes
	wake  chan struct{}
}

// New returns a store; Load it, then Run it.
func New(pool *pgxpool.Pool, fleet Fleet, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Store {
	cfg.defaults()
	return &Store{pool: pool, fleet: fleet, cfg: cfg, log: log, m: newMetrics(reg),
		held: map[string]map[string]string{}, dirty: map[string]bool{}, wrong: map[string][]time.Time{}, wake: make(chan struct{}, 1)}
}

const columns = `id, carrier, created_by, coalesce(client_id, 0), locker_id, size, cell, state, holds_cell, to_return,
	recipient_name, recipient_phone, recipient_email, recipient_language, reference, storage_hours, mark_boot, mark_seq,
	created_at, dropoff_at, deposited_at, expires_at, reminded_at, picked_up_at, expired_at, cancelled_at, collect_at, returned_at,
	cancel_reason, updated_at, barcode, contents, declared_value, currency, move_from, move_stage, kind, amount_due, amount_currency, reserved_until`

func scan(row pgx.Row) (Parcel, error) {
	var p Parcel
	var boot, seq, due int64
	var dueCurrency string
	err := row.Scan(&p.ID, &p.Carrier, &p.CreatedBy, &p.clientID, &p.LockerID, &p.Size, &p.Cell, &p.State, &p.holdsCell, &p.ToReturn,
		&p.Recipient.Name, &p.Recipient.Phone, &p.Recipient.Email, &p.Recipient.Language, &p.Reference, &p.StorageHours, &boot, &seq,
		&p.CreatedAt, &p.DropoffAt, &p.DepositedAt, &p.ExpiresAt, &p.RemindedAt, &p.PickedUpAt, &p.ExpiredAt, &p.CancelledAt,
		&p.CollectAt, &p.ReturnedAt, &p.CancelReason, &p.UpdatedAt, &p.Barcode, &p.Contents, &p.DeclaredValue, &p.Currency, &p.MoveFrom, &p.MoveStage, &p.Kind, &due, &dueCurrency, &p.ReservedUntil)
	if due > 0 {
		p.AmountDue = &Money{Amount: due, Currency: dueCurrency}
	}
	p.mark = Stamp{Boot: uint32(boot), Seq: uint64(seq)}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	for _, t := range []**time.Time{&p.DropoffAt, &p.DepositedAt, &p.ExpiresAt, &p.RemindedAt, &p.PickedUpAt, &p.ExpiredAt, &p.CancelledAt, &p.CollectAt, &p.ReturnedAt, &p.ReservedUntil} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return p, err
}

func collect(rows pgx.Rows, err error) ([]Parcel, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Parcel, error) { return scan(r) })
}

// Load reads which cells open parcels hold, tells the fleet, and marks every
// locker with open parcels for evaluation against its twin (steps reported
// while the hub was down or not evaluated before a crash).
func (s *Store) Load(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT id, locker_id, cell FROM parcels_parcels WHERE holds_cell
		UNION ALL SELECT id, locker_id, move_from FROM parcels_parcels WHERE holds_cell AND move_from <> ''`)
	if err != nil {
		return fmt.Errorf("load parcels: %w", err)
	}
	held := map[string]map[string]string{}
	for rows.Next() {
		var id, locker, cell string
		if err := rows.Scan(&id, &locker, &cell); err != nil {
			rows.Close()
			return fmt.Errorf("load parcels: %w", err)
		}
		if held[locker] == nil {
			held[locker] = map[string]string{}
		}
		held[locker][cell] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load parcels: %w", err)
	}
	s.mu.Lock()
	s.held = held
	for l := range held {
		s.dirty[l] = true
	}
	s.mu.Unlock()
	for l := range held {
		s.tellFleet(l)
	}
	s.poke()
	return nil
}

func (s *Store) tellFleet(lockerID string) {
	s.mu.Lock()
	cells := make([]string, 0, len(s.held[lockerID]))
	for c := range s.held[lockerID] {
		cells = append(cells, c)
	}
	s.mu.Unlock()
	slices.Sort(cells)
	s.fleet.SetTaken(lockerID, cells)
}

func (s *Store) setHeld(lockerID, cell, parcelID string, holds bool) {
	s.mu.Lock()
	if holds {
		if s.held[lockerID] == nil {
			s.held[lockerID] = map[string]string{}
		}
		s.held[lockerID][cell] = parcelID
	} else if s.held[lockerID][cell] == parcelID {
		delete(s.held[lockerID], cell)
		if len(s.held[lockerID]) == 0 {
			delete(s.held, lockerID)
		}
	}
	s.mu.Unlock()
	s.tellFleet(lockerID)
}

func (s *Store) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// TwinChanged tells the store that cells of a locker's twin changed (the app
// calls it from the twins' observer, after the commit; nil cells: any). It
// never blocks: a locker with a changed cell that a parcel holds is marked
// (one mark per locker, so the set is bounded by the fleet) and evaluated by
// Run; changes of other cells cost a map lookup.
func (s *Store) TwinChanged(lockerID string, cells []string) {
	s.mu.Lock()
	held := s.held[lockerID]
	mark := len(held) > 0 && cells == nil
	for _, c := range cells {
		if _, ok := held[c]; ok {
			mark = true
			break
		}
	}
	if mark {
		s.dirty[lockerID] = true
	}
	s.mu.Unlock()
	if mark {
		s.poke()
	}
}

var (
	phoneRE = regexp.MustCompile(`^\+?[0-9 ()-]{5,30}$`)
	refMax  = 200
)

func (s *Store) validate(n *NewParcel) error {
	n.Size = strings.ToUpper(strings.TrimSpace(n.Size))
	if !slices.Contains(Sizes, n.Size) {
		return fmt.Errorf("%w: size must be one of %s, got %q", ErrInvalid, strings.Join(Sizes, ", "), n.Size)
	}
	if n.LockerID == "" {
		return fmt.Errorf("%w: locker is required", ErrInvalid)
	}
	r := &n.Recipient
	r.Name, r.Phone, r.Email, r.Language = strings.TrimSpace(r.Name), strings.TrimSpace(r.Phone), strings.TrimSpace(r.Email), strings.TrimSpace(r.Language)
	if r.Language != "" && !languageRE.MatchString(r.Language) {
		return fmt.Errorf("%w: recipient.language %q must be a BCP 47 tag such as \"de\" or \"de-AT\"", ErrInvalid, r.Language)
	}
	if r.Phone == "" && r.Email == "" {
		return fmt.Errorf("%w: recipient needs a phone or an e-mail address for the pickup code", ErrInvalid)
	}
	if r.Phone != "" && !phoneRE.MatchString(r.Phone) {
		return fmt.Errorf("%w: recipient.phone %q is not a phone number", ErrInvalid, r.Phone)
	}
	if r.Email != "" {
		if a, err := mail.ParseAddress(r.Email); err != nil || a.Address != r.Email {
			return fmt.Errorf("%w: recipient.email %q is not an e-mail address", ErrInvalid, r.Email)
		}
	}
	if len(r.Name) > 200 || len(n.Reference) > refMax || len(n.IdempotencyKey) > 200 {
		return fmt.Errorf("%w: recipient.name, reference and the idempotency key are at most 200 bytes", ErrInvalid)
	}
	if err := validateGoods(&n.Barcode, &n.Contents, &n.Currency, n.DeclaredValue); err != nil {
		return err
	}
	if err := validateAmountDue(n.AmountDue); err != nil {
		return err
	}
	if n.StorageHours == 0 {
		n.StorageHours = int(s.cfg.DefaultStorage / time.Hour)
	}
	if d := time.Duration(n.StorageHours) * time.Hour; d < s.cfg.MinStorage || d > s.cfg.MaxStorage {
		return fmt.Errorf("%w: storage_hours must be between %d and %d, got %d", ErrInvalid,
			int(s.cfg.MinStorage/time.Hour), int(s.cfg.MaxStorage/time.Hour), n.StorageHours)
	}
	return nil
}

func newID() string { return "p-" + strings.ToLower(rand.Text()[:16]) }

// Create reserves a free cell of the size on the locker for a new parcel. A
// repeated idempotency key of the same caller returns the first parcel
// (created false).
func (s *Store) Create(ctx context.Context, c Caller, n NewParcel) (Parcel, bool, error) {
	if err := s.validate(&n); err != nil {
		return Parcel{}, false, err
	}
	switch {
	case c.Carrier != "" && n.Carrier != "" && n.Carrier != c.Carrier:
		return Parcel{}, false, fmt.Errorf("%w: carrier: you create parcels for %s only", ErrInvalid, c.Carrier)
	case c.Carrier != "":
		n.Carrier = c.Carrier
	}
	if n.IdempotencyKey != "" {
		if p, err := s.byKey(ctx, s.pool, c.Scope, n.IdempotencyKey); err == nil {
			return p, false, sameRequest(p, n)
		} else if !errors.Is(err, ErrNotFound) {
			return Parcel{}, false, err
		}
	}
	free, ok := s.fleet.FreeCells(n.LockerID, n.Size)
	if !ok {
		return Parcel{}, false, fmt.Errorf("%w: locker %s", ErrNotFound, n.LockerID)
	}
	if err := s.checkPOS(ctx, n); err != nil {
		return Parcel{}, false, err
	}
	var due Money
	if n.AmountDue != nil {
		due = *n.AmountDue
	}
	kind := KindDelivery
	var secret []byte
	if n.kind == KindReturn {
		kind = KindReturn
		// Cells held for returns first, then any free cell.
		held, _ := s.fleet.ReturnCells(n.LockerID, n.Size)
		free = append(held, free...)
		if s.cfg.Keys == nil {
			return Parcel{}, false, fmt.Errorf("%w: this hub has no code keys: no return codes", ErrInvalid)
		}
		var err error
		if secret, err = s.cfg.Keys.Key(ctx, n.LockerID); err != nil {
			return Parcel{}, false, fmt.Errorf("code key of %s: %w", n.LockerID, err)
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	reserve := s.cfg.ReservationTime
	if c.ClientID != 0 && s.cfg.ReservationHours != nil {
		h, err := s.cfg.ReservationHours(ctx, c.ClientID)
		if err != nil {
			return Parcel{}, false, fmt.Errorf("reservation time of client %d: %w", c.ClientID, err)
		}
		if h > 0 {
			reserve = time.Duration(h) * time.Hour
		}
	}
	var reservedUntil *time.Time
	if kind == KindDelivery {
		// A customer return's cell waits for the sender as long as its
		// return code is valid (its storage period), not this.
		t := now.Add(reserve)
		reservedUntil = &t
	}
	var out Parcel
	created := false
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		// Creates and moves of one locker take turns: a cell a move is
		// leaving is not reserved meanwhile.
		if err := lockLocker(ctx, tx, n.LockerID); err != nil {
			return err
		}
		if err := s.checkQuota(ctx, tx, n.LockerID, n.Size, n.Carrier, free); err != nil {
			return err
		}
		for _, cell := range free {
			var mark Stamp
			if r, ok := s.fleet.Cell(n.LockerID, cell); ok {
				mark = maxStamp(r.DoorAt, r.OccupiedAt)
			}
			id := newID()
			var key *string
			if n.IdempotencyKey != "" {
				key = &n.IdempotencyKey
			}
			var clientID *int64
			if c.ClientID != 0 {
				clientID = &c.ClientID
			}
			tag, err := tx.Exec(ctx, `INSERT INTO parcels_parcels (id, carrier, created_by, caller, client_id, idempotency_key, locker_id, size, cell,
					state, recipient_name, recipient_phone, recipient_email, reference, storage_hours, mark_boot, mark_seq, created_at, updated_at, recipient_language,
					barcode, contents, declared_value, currency, kind, amount_due, amount_currency, reserved_until)
				SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'reserved', $10, $11, $12, $13, $14, $15, $16, $17, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26
				WHERE NOT EXISTS (SELECT 1 FROM parcels_parcels WHERE locker_id = $7 AND move_from = $9 AND holds_cell)
				ON CONFLICT DO NOTHING`,
				id, n.Carrier, c.Name, c.Scope, clientID, key, n.LockerID, n.Size, cell,
				n.Recipient.Name, n.Recipient.Phone, n.Recipient.Email, n.Reference, n.StorageHours, int64(mark.Boot), int64(mark.Seq), now, n.Recipient.Language,
				n.Barcode, n.Contents, n.DeclaredValue, n.Currency, kind, due.Amount, due.Currency, reservedUntil)
			if err != nil {
				return fmt.Errorf("insert parcel: %w", err)
			}
			if tag.RowsAffected() == 0 {
				// The cell was taken by another open parcel, or a concurrent
				// request with the same key won.
				if key != nil {
					if p, err := s.byKey(ctx, tx, c.Scope, n.IdempotencyKey); err == nil {
						out = p
						return nil
					}
				}
				continue
			}
			p, err := s.get(ctx, tx, id)
			if err != nil {
				return err
			}
			if err := s.record(ctx, tx, p, "", StateReserved, c.Name, "cell "+cell+" reserved", "api"); err != nil {
				return err
			}
			if err := audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: "parcel", ObjectID: id, After: p}); err != nil {
				return err
			}
			if err := s.webhook(ctx, tx, p); err != nil {
				return err
			}
			if kind == KindReturn {
				if err := s.sendReturnCode(ctx, tx, p, secret); err != nil {
					return err
				}
			}
			out, created = p, true
			return nil
		}
		return fmt.Errorf("%w of size %s on locker %s", ErrNoFreeCell, n.Size, n.LockerID)
	})
	if err != nil {
		return Parcel{}, false, err
	}
	if !created {
		return out, false, sameRequest(out, n)
	}
	s.m.transitions.WithLabelValues(StateReserved).Inc()
	s.setHeld(out.LockerID, out.Cell, out.ID, true)
	return out, true, nil
}

// sameRequest checks that a repeated idempotency key asks for the same parcel.
func sameRequest(p Parcel, n NewParcel) error {
	if p.LockerID != n.LockerID || p.Size != n.Size || p.Reference != n.Reference {
		return fmt.Errorf("%w: the key belongs to parcel %s (locker %s, size %s, reference %q)", ErrIdempotencyConflict, p.ID, p.LockerID, p.Size, p.Reference)
	}
	return nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) byKey(ctx context.Context, q querier, scope, key string) (Parcel, error) {
	p, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE caller = $1 AND idempotency_key = $2`, scope, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return Parcel{}, ErrNotFound
	}
	if err != nil {
		return Parcel{}, fmt.Errorf("parcel by idempotency key: %w", err)
	}
	return p, nil
}

func (s *Store) get(ctx context.Context, q querier, id string) (Parcel, error) {
	p, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Parcel{}, fmt.Errorf("%w: parcel %s", ErrNotFound, id)
	}
	if err != nil {
		return Parcel{}, fmt.Errorf("get parcel %s: %w", id, err)
	}
	return p, nil
}

// visible reports whether the caller may see the parcel: an API client the
// parcels it created, a user limited to a carrier the carrier's parcels.
func visible(c Caller, p Parcel) bool {
	if c.ClientID != 0 && c.ClientID != p.clientID {
		return false
	}
	return c.Carrier == "" || c.Carrier == p.Carrier
}

// Get returns a parcel with its history; another carrier's is not found.
func (s *Store) Get(ctx context.Context, c Caller, id string) (Parcel, error) {
	p, err := s.get(ctx, s.pool, id)
	if err != nil {
		return Parcel{}, err
	}
	if !visible(c, p) {
		return Parcel{}, fmt.Errorf("%w: parcel %s", ErrNotFound, id)
	}
	rows, err := s.pool.Query(ctx, `SELECT at, from_state, to_state, by, note, locker_id, cell, source FROM parcels_history WHERE parcel_id = $1 ORDER BY id`, id)
	if err != nil {
		return Parcel{}, fmt.Errorf("parcel history: %w", err)
	}
	p.History, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Step, error) {
		var st Step
		err := r.Scan(&st.At, &st.From, &st.To, &st.By, &st.Note, &st.Locker, &st.Cell, &st.Source)
		st.At = st.At.UTC()
		return st, err
	})
	if err != nil {
		return Parcel{}, fmt.Errorf("parcel history: %w", err)
	}
	if p.Scans, err = s.scansOf(ctx, id); err != nil {
		return Parcel{}, err
	}
	if p.Payments, err = s.payments(ctx, id); err != nil {
		return Parcel{}, err
	}
	return p, nil
}

// Filter selects parcels for List; empty fields select all. Every filter
// has an index of its own (migrations/014_operations.sql).
type Filter struct {
	LockerID, State, Carrier, Reference string
	// Tracking matches the parcel's id or the delivery service's reference.
	Tracking string
	Barcode  string
	Phone    string // the recipient's, as stored (spaces ignored)
	Email    string // the recipient's, case-insensitive
	// From and To bound created_at: From ≤ created_at < To.
	From, To      time.Time
	Limit, Offset int
}

// MaxPage bounds a page of List.
const MaxPage = 1000

// List returns a page of the parcels the caller may see, newest first, and
// how many match.
func (s *Store) List(ctx context.Context, c Caller, f Filter) ([]Parcel, int, error) {
	if f.State != "" && !slices.Contains(States, f.State) {
		return nil, 0, fmt.Errorf("%w: state must be one of %s", ErrInvalid, strings.Join(States, ", "))
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, 0, fmt.Errorf("%w: from must be before to", ErrInvalid)
	}
	if c.Carrier != "" {
		if f.Carrier != "" && f.Carrier != c.Carrier {
			return []Parcel{}, 0, nil
		}
		f.Carrier = c.Carrier
	}
	if f.Limit <= 0 || f.Limit > MaxPage {
		f.Limit = min(max(f.Limit, 100), MaxPage)
	}
	// Only the filters given are in the statement, so the planner picks
	// the index of the most selective one.
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if f.LockerID != "" {
		add("locker_id = ?", f.LockerID)
	}
	if f.State != "" {
		add("state = ?", f.State)
	}
	if f.Carrier != "" {
		add("carrier = ? AND carrier <> ''", f.Carrier)
	}
	if f.Reference != "" {
		add("reference = ? AND reference <> ''", f.Reference)
	}
	if t := strings.TrimSpace(f.Tracking); t != "" {
		add("(id = ? OR (reference = ? AND reference <> ''))", t)
		conds[len(conds)-1] = strings.ReplaceAll(conds[len(conds)-1], "reference = ?", fmt.Sprintf("reference = $%d", len(args)))
	}
	if b := strings.TrimSpace(f.Barcode); b != "" {
		add("barcode = ? AND barcode <> ''", b)
	}
	if ph := strings.TrimSpace(f.Phone); ph != "" {
		add("recipient_phone = ? AND recipient_phone <> ''", ph)
	}
	if e := strings.TrimSpace(f.Email); e != "" {
		add("lower(recipient_email) = lower(?) AND recipient_email <> ''", e)
	}
	if !f.From.IsZero() {
		add("created_at >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		add("created_at < ?", f.To.UTC())
	}
	if c.ClientID != 0 {
		add("client_id = ?", c.ClientID)
	}
	where := "true"
	if len(conds) > 0 {
		where = strings.Join(conds, " AND ")
	}
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM parcels_parcels WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count parcels: %w", err)
	}
	n := len(args)
	ps, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE `+where+
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d OFFSET $%d`, n+1, n+2), append(args, f.Limit, f.Offset)...))
	if err != nil {
		return nil, 0, fmt.Errorf("list parcels: %w", err)
	}
	return ps, total, nil
}

// record writes a history entry.
func (s *Store) record(ctx context.Context, tx pgx.Tx, p Parcel, from, to, by, note, source string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO parcels_history (parcel_id, at, from_state, to_state, by, note, locker_id, cell, source)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		p.ID, s.cfg.Now().UTC(), from, to, by, note, p.LockerID, p.Cell, source); err != nil {
		return fmt.Errorf("parcel history: %w", err)
	}
	return nil
}

func (s *Store) enqueue(ctx context.Context, tx pgx.Tx, m OutMessage) error {
	if s.cfg.Outbox == nil {
		return nil
	}
	if err := s.cfg.Outbox.Enqueue(ctx, tx, m); err != nil {
		return fmt.Errorf("outbox %s %s: %w", m.Channel, m.ID, err)
	}
	return nil
}

// webhook tells the creating API client of the parcel's state.
func (s *Store) webhook(ctx context.Context, tx pgx.Tx, p Parcel) error {
	if p.clientID == 0 {
		return nil
	}
	p.History = nil
	return s.enqueue(ctx, tx, OutMessage{ID: p.ID + ":" + p.State, Channel: ChannelWebhook, ClientID: p.clientID,
		Template: "parcel." + p.State, Data: map[string]any{"event": "parcel." + p.State, "parcel": p}, Parcel: p.ID})
}

// notify sends a recipient notification by SMS and e-mail (those it has).
func (s *Store) notify(ctx context.Context, tx pgx.Tx, p Parcel, template string, data map[string]any) error {
	return s.notifyVariant(ctx, tx, p, template, "", data)
}

// notifyVariant is notify for a second message of a template (a new code
// after a move or a longer storage period): variant makes its ID another.
func (s *Store) notifyVariant(ctx context.Context, tx pgx.Tx, p Parcel, template, variant string, data map[string]any) error {
	kind := template
	if variant != "" {
		kind += ":" + variant
	}
	for _, ch := range []struct{ channel, to string }{{ChannelSMS, p.Recipient.Phone}, {ChannelEmail, p.Recipient.Email}} {
		if ch.to == "" {
			continue
		}
		if err := s.enqueue(ctx, tx, OutMessage{ID: p.ID + ":" + kind + ":" + ch.channel, Channel: ch.channel, To: ch.to,
			Template: template, Data: data, Parcel: p.ID, Carrier: p.Carrier, Language: p.Recipient.Language}); err != nil {
			return err
		}
	}
	return nil
}

// NotificationData returns a parcel (as Get: another carrier's is not
// found) and the data its notifications are rendered with, for a template
// preview. The pickup code is masked: it is never in an answer.
func (s *Store) NotificationData(ctx context.Context, c Caller, id string) (Parcel, map[string]any, error) {
	p, err := s.Get(ctx, c, id)
	if err != nil {
		return Parcel{}, nil, err
	}
	d, err := s.recipientData(ctx, p)
	if err != nil {
		return Parcel{}, nil, err
	}
	d["code"] = "********" // as outbox.CodeMask
	return p, d, nil
}

// localTime is how notifications show a time.
const localTime = "Mon 2 Jan 2006, 15:04 MST"

// languageRE is a BCP 47 tag of a language and an optional region or
// script ("de", "de-AT", "zh-Hant", "es-419").
var languageRE = regexp.MustCompile(`^[a-zA-Z]{2,3}(-([a-zA-Z]{2}|[0-9]{3}|[a-zA-Z]{4}))?$`)

func (s *Store) recipientData(ctx context.Context, p Parcel) (map[string]any, error) {
	d := map[string]any{"parcel": p.ID, "locker": p.LockerID, "cell": p.Cell, "reference": p.Reference, "name": p.Recipient.Name, "carrier": p.Carrier}
	address, tz, err := s.fleet.Place(ctx, p.LockerID)
	if err != nil {
		return nil, fmt.Errorf("place of locker %s: %w", p.LockerID, err)
	}
	if address == "" {
		address = "locker " + p.LockerID
	}
	d["address"] = address
	// Times as the recipient reads them: the locker's local time.
	loc := time.UTC
	if l, err := time.LoadLocation(tz); err == nil && tz != "" {
		loc = l
	}
	if p.ExpiresAt != nil {
		d["expires_at"] = p.ExpiresAt.Format(time.RFC3339)
		d["deadline"] = p.ExpiresAt.In(loc).Format(localTime)
	}
	if p.PickedUpAt != nil {
		d["picked_up"] = p.PickedUpAt.In(loc).Format(localTime)
	}
	if p.DepositedAt != nil {
		d["accepted"] = p.DepositedAt.In(loc).Format(localTime) // a customer return's drop-off
	}
	return d, nil
}

// change moves a parcel from one state (or step) to the next in one
// transaction: the update (only if the parcel is still as read), its history,
// the audit record, the webhook and what extra adds (notifications).
func (s *Store) change(ctx context.Context, before Parcel, by, note, source string, set string, args []any,
	extra func(tx pgx.Tx, after Parcel) error) (Parcel, error) {
	return s.changeWith(ctx, nil, before, by, note, source, set, args, extra)
}

// changeWith is change with pre run in the transaction before the update
// (a lock to take first).
func (s *Store) changeWith(ctx context.Context, pre func(tx pgx.Tx) error, before Parcel, by, note, source string, set string, args []any,
	extra func(tx pgx.Tx, after Parcel) error) (Parcel, error) {
	var after Parcel
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if pre != nil {
			if err := pre(tx); err != nil {
				return err
			}
		}
		all := append(append([]any{before.ID, before.State, s.cfg.Now().UTC()}, args...), before.Cell, before.MoveStage)
		// Only if the parcel is still in the state, cell and move stage read.
		tag, err := tx.Exec(ctx, `UPDATE parcels_parcels SET updated_at = $3, `+set+` WHERE id = $1 AND state = $2`+
			fmt.Sprintf(` AND cell = $%d AND move_stage = $%d`, len(all)-1, len(all)), all...)
		if err != nil {
			return fmt.Errorf("update parcel %s: %w", before.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: parcel %s is no longer %s", ErrConflict, before.ID, before.State)
		}
		if after, err = s.get(ctx, tx, before.ID); err != nil {
			return err
		}
		if err := s.record(ctx, tx, after, before.State, after.State, by, note, source); err != nil {
			return err
		}
		b := before
		b.History = nil
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "parcel", ObjectID: before.ID, Before: b, After: after}); err != nil {
			return err
		}
		if after.State != before.State {
			if err := s.webhook(ctx, tx, after); err != nil {
				return err
			}
		}
		if extra != nil {
			return extra(tx, after)
		}
		return nil
	})
	if err != nil {
		return Parcel{}, err
	}
	if after.State != before.State {
		s.m.transitions.WithLabelValues(after.State).Inc()
	}
	if before.holdsCell && !after.holdsCell {
		s.setHeld(after.LockerID, after.Cell, after.ID, false)
	}
	if before.State == StateDeposited || after.State == StateDeposited {
		s.syncOffline(ctx, after.LockerID)
	}
	return after, nil
}

// syncOffline gives the locker the list of its deposited prepaid parcels,
// with the cell and window each pickup code is bound to. Parcels with an
// amount due are never in it: they wait for the connection (decision 18). A failure is logged; the next change of the locker's
// parcels, or the next start, sends the list again.
func (s *Store) syncOffline(ctx context.Context, lockerID string) {
	if s.cfg.Offline == nil {
		return
	}
	deposited, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels
		WHERE locker_id = $1 AND state = 'deposited' AND kind = 'delivery' AND move_from = '' AND amount_due = 0 AND expires_at > $2 ORDER BY id`, lockerID, s.cfg.Now().UTC()))
	if err == nil {
		list := make([]protocol.LockerParcel, 0, len(deposited))
		for _, p := range deposited {
			from, to := window(p)
			list = append(list, protocol.LockerParcel{ID: p.ID, Cell: p.Cell, ValidFrom: from.UnixMilli(), ValidTo: to.UnixMilli(), Barcode: p.Barcode})
		}
		err = s.cfg.Offline.SetParcels(ctx, lockerID, list)
	}
	if err != nil {
		s.m.offlineSyncErrors.Inc()
		s.log.Warn("offline parcel list not updated", "locker", lockerID, "error", err)
	}
}

// syncAllOffline sends every locker with deposited parcels its list (a
// list already stored unchanged costs one statement and sends nothing).
func (s *Store) syncAllOffline(ctx context.Context) {
	if s.cfg.Offline == nil {
		return
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT locker_id FROM parcels_parcels WHERE state = 'deposited'`)
	if err != nil {
		s.log.Warn("offline parcel lists not checked", "error", err)
		return
	}
	lockers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.log.Warn("offline parcel lists not checked", "error", err)
		return
	}
	for _, l := range lockers {
		if ctx.Err() != nil {
			return
		}
		s.syncOffline(ctx, l)
	}
}

// Dropoff opens the parcel's reserved cell for the courier. The command's
// idempotency key is the parcel's, so a repeated drop-off never opens twice.
func (s *Store) Dropoff(ctx context.Context, c Caller, id string) (Parcel, any, error) {
	return s.openFor(ctx, c, id, "dropoff")
}

// Collect opens a parcel marked for return for the courier who takes it back.
func (s *Store) Collect(ctx context.Context, c Caller, id string) (Parcel, any, error) {
	return s.openFor(ctx, c, id, "collect")
}

func (s *Store) openFor(ctx context.Context, c Caller, id, step string) (Parcel, any, error) {
	p, err := s.get(ctx, s.pool, id)
	if err != nil {
		return Parcel{}, nil, err
	}
	if !visible(c, p) {
		return Parcel{}, nil, fmt.Errorf("%w: parcel %s", ErrNotFound, id)
	}
	switch {
	case step == "dropoff" && p.State != StateReserved:
		return Parcel{}, nil, fmt.Errorf("%w: parcel %s is %s; drop-off is for reserved parcels", ErrConflict, id, p.State)
	case p.MoveFrom != "":
		return Parcel{}, nil, refuse(RefuseMoving, "parcel %s is being moved from %s to %s", id, p.MoveFrom, p.Cell)
	case step == "collect" && !(p.ToReturn && p.holdsCell):
		return Parcel{}, nil, fmt.Errorf("%w: parcel %s is %s and not marked for return", ErrConflict, id, p.State)
	}
	op, err := s.fleet.OpenCell(ctx, OpenRequest{LockerID: p.LockerID, Cell: p.Cell,
		IdempotencyKey: "parcel:" + p.ID + ":" + step, Caller: "parcels", CreatedBy: c.Name + " (parcel " + p.ID + " " + step + ")"})
	if err != nil {
		return Parcel{}, nil, fmt.Errorf("open cell %s of parcel %s: %w", p.Cell, p.ID, err)
	}
	if (step == "dropoff" && p.DropoffAt == nil) || (step == "collect" && p.CollectAt == nil) {
		col := "dropoff_at"
		if step == "collect" {
			col = "collect_at"
		}
		p, err = s.change(ctx, p, c.Name, step+" asked: cell.open "+op.ID, "command:"+op.ID, col+` = $3`, nil, nil)
		if err != nil {
			return Parcel{}, nil, err
		}
	}
	s.TwinChanged(p.LockerID, nil)
	return p, op.Command, nil
}

// Cancel cancels a parcel: before deposit its cell is released; after, it is
// marked for return and the courier collects it.
func (s *Store) Cancel(ctx context.Context, c Caller, id, reason string) (Parcel, error) {
	if len(reason) > 500 {
		return Parcel{}, fmt.Errorf("%w: reason is at most 500 bytes", ErrInvalid)
	}
	p, err := s.get(ctx, s.pool, id)
	if err != nil {
		return Parcel{}, err
	}
	if !visible(c, p) {
		return Parcel{}, fmt.Errorf("%w: parcel %s", ErrNotFound, id)
	}
	switch p.State {
	case StateReserved:
		return s.change(ctx, p, c.Name, reason, "api", `state = 'cancelled', holds_cell = false, cancelled_at = $3, cancel_reason = $4`, []any{reason}, nil)
	case StateDeposited:
		return s.change(ctx, p, c.Name, reason+" (marked for return)", "api", `state = 'cancelled', to_return = true, cancelled_at = $3, cancel_reason = $4`, []any{reason},
			func(tx pgx.Tx, after Parcel) error { return s.refundIfPaid(ctx, tx, after, "cancelled: "+reason) })
	default:
		return Parcel{}, fmt.Errorf("%w: parcel %s is %s and cannot be cancelled", ErrConflict, id, p.State)
	}
}

// Run evaluates marked lockers and runs the storage sweep until ctx ends.
func (s *Store) Run(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Sweep)
	defer tick.Stop()
	s.syncAllOffline(ctx) // a change committed just before a crash may not have reached the list
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
			s.Sweep(ctx)
		}
		s.evaluateDirty(ctx)
	}
}

// maxPerRound bounds the lockers evaluated before Run looks at ctx and its
// timer again; the rest stay marked.
const maxPerRound = 256

func (s *Store) evaluateDirty(ctx context.Context) {
	s.mu.Lock()
	lockers := make([]string, 0, min(len(s.dirty), maxPerRound))
	for l := range s.dirty {
		if len(lockers) == maxPerRound {
			break
		}
		lockers = append(lockers, l)
		delete(s.dirty, l)
	}
	more := len(s.dirty) > 0
	s.mu.Unlock()
	for _, l := range lockers {
		if err := s.Evaluate(ctx, l); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("evaluating parcels failed; retried at the next sweep", "locker", l, "error", err)
			s.mu.Lock()
			s.dirty[l] = true
			s.mu.Unlock()
		}
	}
	if more {
		s.poke()
	}
}

// Evaluate moves a locker's open parcels on as its twin says (Run calls it
// for every locker marked by TwinChanged or Load).
func (s *Store) Evaluate(ctx context.Context, lockerID string) error {
	ps, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE locker_id = $1 AND holds_cell`, lockerID))
	if err != nil {
		return fmt.Errorf("open parcels of %s: %w", lockerID, err)
	}
	for _, p := range ps {
		if p.MoveFrom != "" {
			if err := s.evaluateMove(ctx, p); err != nil && !errors.Is(err, ErrConflict) {
				return err
			}
			continue
		}
		r, ok := s.fleet.Cell(lockerID, p.Cell)
		if !ok || r.Door != "closed" || r.Occupied == nil || !r.DoorAt.After(p.mark) || !r.OccupiedAt.After(p.mark) {
			continue
		}
		mark := maxStamp(r.DoorAt, r.OccupiedAt)
		var err error
		switch {
		case p.State == StateReserved && p.DropoffAt != nil && *r.Occupied && p.Kind == KindReturn:
			err = s.depositReturn(ctx, p, mark)
		case p.State == StateReserved && p.DropoffAt != nil && *r.Occupied:
			err = s.deposit(ctx, p, mark)
		case p.ToReturn && !*r.Occupied:
			_, err = s.change(ctx, p, "courier", "collected for return: door closed, cell empty", reportSource(mark),
				`state = 'returned', holds_cell = false, returned_at = $3`, nil, nil)
		case p.State == StateDeposited && !*r.Occupied:
			_, err = s.change(ctx, p, "recipient", "door closed, cell empty", reportSource(mark),
				`state = 'picked_up', holds_cell = false, picked_up_at = $3`, nil, func(tx pgx.Tx, after Parcel) error {
					data, err := s.recipientData(ctx, after)
					if err != nil {
						return err
					}
					return s.notify(ctx, tx, after, TemplatePickedUp, data)
				})
		}
		if errors.Is(err, ErrConflict) {
			continue // changed meanwhile (a cancel): the next evaluation sees it
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// window is the validity window of a deposited parcel's code.
func window(p Parcel) (from, to time.Time) {
	return p.DepositedAt.Truncate(time.Second), p.ExpiresAt.Truncate(time.Second)
}

// deposit marks a parcel deposited, starts its storage period and sends the
// recipient the pickup code.
func (s *Store) deposit(ctx context.Context, p Parcel, mark Stamp) error {
	now := s.cfg.Now().UTC().Truncate(time.Second)
	expires := now.Add(time.Duration(p.StorageHours) * time.Hour)
	var secret []byte
	if s.cfg.Keys != nil {
		var err error
		if secret, err = s.cfg.Keys.Key(ctx, p.LockerID); err != nil {
			return fmt.Errorf("code key of %s: %w", p.LockerID, err)
		}
	}
	_, err := s.change(ctx, p, "courier", "door closed, cell occupied", reportSource(mark),
		`state = 'deposited', deposited_at = $4, expires_at = $5, mark_boot = $6, mark_seq = $7`,
		[]any{now, expires, int64(mark.Boot), int64(mark.Seq)},
		func(tx pgx.Tx, after Parcel) error {
			if secret == nil {
				s.log.Warn("no pickup code keys wired: the recipient gets no code", "parcel", after.ID)
			}
			return s.notifyWithCode(ctx, tx, after, TemplateReady, secret)
		})
	return err
}

// notifyWithCode tells the recipient with a template that shows the pickup
// code, derived here from the locker's secret (nil: no code in the data).
func (s *Store) notifyWithCode(ctx context.Context, tx pgx.Tx, p Parcel, template string, secret []byte, variant ...string) error {
	data, err := s.recipientData(ctx, p)
	if err != nil {
		return err
	}
	if secret != nil {
		code, err := s.code(secret, p)
		if err != nil {
			return err
		}
		data["code"] = code
	}
	return s.notifyVariant(ctx, tx, p, template, strings.Join(variant, ""), data)
}

// Sweep sends reminders and expires parcels whose storage period is over,
// at most SweepBatch of each per call.
func (s *Store) Sweep(ctx context.Context) {
	now := s.cfg.Now().UTC()
	due, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE state = 'deposited' AND reminded_at IS NULL
		AND expires_at - make_interval(secs => $1) <= $2 AND expires_at > $2 ORDER BY expires_at LIMIT $3`,
		s.cfg.ReminderBefore.Seconds(), now, s.cfg.SweepBatch))
	if err != nil {
		s.log.Warn("parcel reminders failed", "error", err)
	}
	for _, p := range due {
		var secret []byte
		if s.cfg.Keys != nil {
			if secret, err = s.cfg.Keys.Key(ctx, p.LockerID); err != nil {
				s.log.Warn("code key failed; reminder without code", "locker", p.LockerID, "error", err)
			}
		}
		_, err := s.change(ctx, p, "hub", "pickup reminder sent", "sweep", `reminded_at = $3`, nil, func(tx pgx.Tx, after Parcel) error {
			return s.notifyWithCode(ctx, tx, after, TemplateReminder, secret)
		})
		if err != nil && !errors.Is(err, ErrConflict) {
			s.log.Warn("parcel reminder failed", "parcel", p.ID, "error", err)
		}
	}
	expired, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE state = 'deposited' AND kind = 'delivery' AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, now, s.cfg.SweepBatch))
	if err != nil {
		s.log.Warn("parcel expiry failed", "error", err)
	}
	for _, p := range expired {
		_, err := s.change(ctx, p, "hub", "storage period over: marked for return", "sweep",
			`state = 'expired', to_return = true, expired_at = $3`, nil, func(tx pgx.Tx, after Parcel) error {
				if err := s.refundIfPaid(ctx, tx, after, "expired: storage period over"); err != nil {
					return err
				}
				data, err := s.recipientData(ctx, after)
				if err != nil {
					return err
				}
				return s.notify(ctx, tx, after, TemplateExpired, data)
			})
		if err != nil && !errors.Is(err, ErrConflict) {
			s.log.Warn("parcel expiry failed", "parcel", p.ID, "error", err)
		}
	}
	lapsed := s.expireReservations(ctx, now)
	if len(due) == s.cfg.SweepBatch || len(expired) == s.cfg.SweepBatch || lapsed == s.cfg.SweepBatch {
		s.log.Info("parcel sweep left work for the next tick", "reminders", len(due), "expired", len(expired), "reservations", lapsed)
	}
}

// expireReservations ends reservations not dropped off by their deadline:
// the parcel becomes reservation_expired, its cell is released (free-cell
// counts follow) and the creating API client gets the webhook
// parcel.reservation_expired, all in the parcel's change transaction, so a
// crash or restart neither loses nor repeats one (the update only applies
// to a parcel still reserved; the webhook's id is stable). A courier at the
// cell (drop-off asked within DropoffGrace, or the door open) is not cut
// off: the next sweep looks again. It returns how many parcels it read.
func (s *Store) expireReservations(ctx context.Context, now time.Time) int {
	lapsed, err := collect(s.pool.Query(ctx, `SELECT `+columns+` FROM parcels_parcels WHERE state = 'reserved' AND reserved_until IS NOT NULL
		AND reserved_until <= $1 AND (dropoff_at IS NULL OR dropoff_at <= $2) AND move_from = '' ORDER BY reserved_until LIMIT $3`,
		now, now.Add(-s.cfg.DropoffGrace), s.cfg.SweepBatch))
	if err != nil {
		s.log.Warn("reservation expiry failed", "error", err)
		return 0
	}
	for _, p := range lapsed {
		if r, ok := s.fleet.Cell(p.LockerID, p.Cell); ok && r.Door == "open" {
			continue // someone is at the cell
		}
		_, err := s.change(ctx, p, "hub", "not dropped off by "+p.ReservedUntil.Format(time.RFC3339)+": reservation expired, cell released", "sweep",
			`state = 'reservation_expired', holds_cell = false, expired_at = $3`, nil, nil)
		if err != nil && !errors.Is(err, ErrConflict) {
			s.log.Warn("reservation expiry failed", "parcel", p.ID, "error", err)
		}
	}
	return len(lapsed)
}

type metrics struct {
	transitions *prometheus.CounterVec
	codeChecks  *prometheus.CounterVec
	bruteForce  prometheus.Counter
	scans       *prometheus.CounterVec
	charges     *prometheus.CounterVec
	receipts    *prometheus.CounterVec
	// quotaRefusals counts reservations refused by a carrier quota.
	quotaRefusals prometheus.Counter

	offlineSyncErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_parcels_transitions_total", Help: "Parcels that reached a state, by state."}, []string{"state"}),
		codeChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_parcels_code_checks_total", Help: "Pickup codes checked for lockers (code.check), by result: ok, service (a one-time service code), wrong, rate_limited, payment (the charge before the pickup did not go through), error."}, []string{"result"}),
		bruteForce: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_parcels_code_lockouts_total", Help: "Times a locker reached the limit of wrong pickup codes (brute force suspected)."}),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_parcels_barcode_checks_total", Help: "Barcodes lockers asked about (barcode.check), by result: ok, unknown_barcode, barcode_mismatch, bad_params, internal."}, []string{"result"}),
		charges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_parcels_charges_total", Help: "Charges at lockers' POS terminals (pos.charge) by outcome: approved, declined, failed, unknown (no answer in time), paid_before (paid already: not charged again), refunded, error."}, []string{"result"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_parcels_receipts_total", Help: "Fiscal receipts requested (put in the outbox), by type: sale, refund."}, []string{"type"}),
		quotaRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_parcels_quota_refusals_total", Help: "Reservations refused by a carrier quota (carrier_quota) although cells were free."}),
		offlineSyncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_parcels_offline_list_errors_total", Help: "Offline parcel lists of lockers that could not be updated (sent again at the next change or start)."}),
	}
	if reg != nil {
		reg.MustRegister(m.transitions, m.codeChecks, m.bruteForce, m.scans, m.charges, m.receipts, m.quotaRefusals, m.offlineSyncErrors)
	}
	return m
}

// reportSource names the locker report behind a step.
func reportSource(m Stamp) string { return fmt.Sprintf("report:%d.%d", m.Boot, m.Seq) }

// lockLocker serializes the creates and moves of one locker for the rest of
// the transaction.
func lockLocker(ctx context.Context, tx pgx.Tx, lockerID string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('parcels:' || $1))`, lockerID); err != nil {
		return fmt.Errorf("lock locker %s: %w", lockerID, err)
	}
	return nil
}

var (
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
	barcodeRE  = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`) // printable ASCII, as scanners send it
)

// validateGoods checks what a parcel is: barcode, contents, value.
func validateGoods(barcode, contents, currency *string, value int64) error {
	*barcode, *contents, *currency = strings.TrimSpace(*barcode), strings.TrimSpace(*contents), strings.ToUpper(strings.TrimSpace(*currency))
	if *barcode != "" && !barcodeRE.MatchString(*barcode) {
		return fmt.Errorf("%w: barcode must be 1 to 64 printable ASCII characters", ErrInvalid)
	}
	if len(*contents) > 500 {
		return fmt.Errorf("%w: contents is at most 500 bytes", ErrInvalid)
	}
	if value < 0 {
		return fmt.Errorf("%w: declared_value must not be negative", ErrInvalid)
	}
	if (value > 0 || *currency != "") && !currencyRE.MatchString(*currency) {
		return fmt.Errorf("%w: currency must be an ISO 4217 code (EUR) with a declared_value", ErrInvalid)
	}
	return nil
}
