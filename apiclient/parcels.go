package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Recipient is who picks a parcel up.
type Recipient struct {
	Name  string `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
	Email string `json:"email,omitempty"`
	// Language (BCP 47, e.g. "de") chooses the language of notifications.
	Language string `json:"language,omitempty"`
}

// Parcel is a delivery as the API returns it (never with its pickup code).
type Parcel struct {
	ID            string       `json:"id"`
	Carrier       string       `json:"carrier"`
	CreatedBy     string       `json:"created_by"`
	LockerID      string       `json:"locker_id"`
	Size          string       `json:"size"`
	Cell          string       `json:"cell"`
	State         string       `json:"state"` // reserved, deposited, picked_up, cancelled, expired, returned, reservation_expired
	ToReturn      bool         `json:"to_return"`
	Recipient     Recipient    `json:"recipient"`
	Reference     string       `json:"reference"`
	StorageHours  int          `json:"storage_hours"`
	CreatedAt     time.Time    `json:"created_at"`
	DropoffAt     *time.Time   `json:"dropoff_at,omitempty"`
	DepositedAt   *time.Time   `json:"deposited_at,omitempty"`
	ExpiresAt     *time.Time   `json:"expires_at,omitempty"`
	RemindedAt    *time.Time   `json:"reminded_at,omitempty"`
	PickedUpAt    *time.Time   `json:"picked_up_at,omitempty"`
	ExpiredAt     *time.Time   `json:"expired_at,omitempty"`
	CancelledAt   *time.Time   `json:"cancelled_at,omitempty"`
	CollectAt     *time.Time   `json:"collect_at,omitempty"`
	ReturnedAt    *time.Time   `json:"returned_at,omitempty"`
	CancelReason  string       `json:"cancel_reason,omitempty"`
	UpdatedAt     time.Time    `json:"updated_at"`
	Barcode       string       `json:"barcode,omitempty"`
	Contents      string       `json:"contents,omitempty"`
	DeclaredValue int64        `json:"declared_value,omitempty"` // minor units of Currency
	Currency      string       `json:"currency,omitempty"`
	MoveFrom      string       `json:"move_from,omitempty"`      // while moving: the cell it leaves
	MoveStage     string       `json:"move_stage,omitempty"`     // while moving: from, to
	Kind          string       `json:"kind,omitempty"`           // delivery, return
	ReservedUntil *time.Time   `json:"reserved_until,omitempty"` // reserved: the drop-off deadline
	History       []ParcelStep `json:"history,omitempty"`
	Scans         []ParcelScan `json:"scans,omitempty"`
	// AmountDue is charged at the locker before pickup; nil: prepaid.
	AmountDue *Money `json:"amount_due,omitempty"`
	// Payments are the charges at the locker and refunds (GET of one parcel).
	Payments []Payment `json:"payments,omitempty"`

	// Replayed: the idempotency key had been used; this is the first parcel.
	Replayed bool `json:"-"`
}

// ParcelStep is one entry of a parcel's history.
type ParcelStep struct {
	At     time.Time `json:"at"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	By     string    `json:"by"`
	Note   string    `json:"note,omitempty"`
	Locker string    `json:"locker,omitempty"`
	Cell   string    `json:"cell,omitempty"`
	Source string    `json:"source,omitempty"` // command:<id>, report:<boot>.<seq>, ask:<id>, api, sweep
}

// NewParcel is the body of POST /api/v1/parcels.
type NewParcel struct {
	Locker        string    `json:"locker"`
	Size          string    `json:"size"`
	Recipient     Recipient `json:"recipient"`
	Reference     string    `json:"reference,omitempty"`
	StorageHours  int       `json:"storage_hours,omitempty"`
	Carrier       string    `json:"carrier,omitempty"`
	Barcode       string    `json:"barcode,omitempty"`
	Contents      string    `json:"contents,omitempty"`
	DeclaredValue int64     `json:"declared_value,omitempty"`
	Currency      string    `json:"currency,omitempty"`
	AmountDue     *Money    `json:"amount_due,omitempty"` // charged at the locker (it needs a POS terminal)
}

// Money is an amount in minor units of an ISO 4217 currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Payment is a charge at the locker's POS terminal or a refund.
type Payment struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"` // charge, refund
	Amount      int64      `json:"amount"`
	Currency    string     `json:"currency"`
	State       string     `json:"state"` // pending, approved, declined, failed, unknown
	Reason      string     `json:"reason,omitempty"`
	TerminalRef string     `json:"terminal_reference,omitempty"`
	Command     string     `json:"command,omitempty"`
	RefundOf    string     `json:"refund_of,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	DecidedAt   *time.Time `json:"decided_at,omitempty"`
	Receipt     *Receipt   `json:"receipt,omitempty"`
}

// Receipt is a payment's fiscal receipt at the fiscal service.
type Receipt struct {
	ID        string     `json:"id"`
	Type      string     `json:"type"`  // sale, refund
	State     string     `json:"state"` // pending, sent, failed
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	Number    string     `json:"number,omitempty"`
}

// ParcelOpen is the answer of a drop-off or collection: the parcel and the
// cell.open command.
type ParcelOpen struct {
	Parcel  Parcel  `json:"parcel"`
	Command Command `json:"command"`
}

// CreateParcel creates a delivery (POST /api/v1/parcels); a repeated
// idempotency key returns the first parcel with Replayed set.
func (c *Client) CreateParcel(ctx context.Context, in NewParcel, idempotencyKey string) (Parcel, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return Parcel{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/parcels", bytes.NewReader(body))
	if err != nil {
		return Parcel{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Parcel{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Parcel{}, fmt.Errorf("POST /api/v1/parcels: reading response: %w", err)
	}
	if resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return Parcel{}, e
	}
	var p Parcel
	if err := json.Unmarshal(data, &p); err != nil {
		return Parcel{}, fmt.Errorf("POST /api/v1/parcels: decoding response: %w", err)
	}
	p.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	return p, nil
}

// Parcel returns one parcel with its history (GET /api/v1/parcels/{id}).
func (c *Client) Parcel(ctx context.Context, id string) (Parcel, error) {
	var p Parcel
	err := c.JSON(ctx, http.MethodGet, "/api/v1/parcels/"+url.PathEscape(id), nil, &p)
	return p, err
}

// ParcelFilter selects parcels; empty fields select all.
type ParcelFilter struct {
	Locker, State, Carrier, Reference string
	Tracking, Barcode, Phone, Email   string
	From, To                          string // RFC 3339 or YYYY-MM-DD
	Limit, Offset                     int
}

// ParcelPage is a page of parcels.
type ParcelPage struct {
	Parcels []Parcel `json:"parcels"`
	Total   int      `json:"total"`
	Limit   int      `json:"limit"`
	Offset  int      `json:"offset"`
}

// Parcels lists parcels, newest first (GET /api/v1/parcels).
func (c *Client) Parcels(ctx context.Context, f ParcelFilter) (ParcelPage, error) {
	path := listPath("/api/v1/parcels", map[string]string{"locker": f.Locker, "state": f.State, "carrier": f.Carrier, "reference": f.Reference,
		"tracking": f.Tracking, "barcode": f.Barcode, "phone": f.Phone, "email": f.Email, "from": f.From, "to": f.To},
		f.Limit, f.Offset)
	var page ParcelPage
	err := c.JSON(ctx, http.MethodGet, path, nil, &page)
	return page, err
}

// DropoffParcel opens the parcel's reserved cell for the courier.
func (c *Client) DropoffParcel(ctx context.Context, id string) (ParcelOpen, error) {
	var out ParcelOpen
	err := c.JSON(ctx, http.MethodPost, "/api/v1/parcels/"+url.PathEscape(id)+"/dropoff", nil, &out)
	return out, err
}

// CollectParcel opens the cell of a parcel marked for return.
func (c *Client) CollectParcel(ctx context.Context, id string) (ParcelOpen, error) {
	var out ParcelOpen
	err := c.JSON(ctx, http.MethodPost, "/api/v1/parcels/"+url.PathEscape(id)+"/collect", nil, &out)
	return out, err
}

// CancelParcel cancels a parcel.
func (c *Client) CancelParcel(ctx context.Context, id, reason string) (Parcel, error) {
	var p Parcel
	err := c.JSON(ctx, http.MethodPost, "/api/v1/parcels/"+url.PathEscape(id)+"/cancel", map[string]string{"reason": reason}, &p)
	return p, err
}

// ParcelEdit is the body of PATCH /api/v1/parcels/{id}; nil fields stay.
type ParcelEdit struct {
	Recipient    *Recipient `json:"recipient,omitempty"`
	StorageHours *int       `json:"storage_hours,omitempty"`
	Size         *string    `json:"size,omitempty"`
}

// EditParcel corrects a parcel's recipient, storage period or size.
func (c *Client) EditParcel(ctx context.Context, id string, e ParcelEdit) (Parcel, error) {
	var p Parcel
	err := c.JSON(ctx, http.MethodPatch, "/api/v1/parcels/"+url.PathEscape(id), e, &p)
	return p, err
}

// MoveParcel moves a parcel to another free cell of its locker; the answer
// holds the cell.open command of the old cell.
func (c *Client) MoveParcel(ctx context.Context, id, cell string) (ParcelOpen, error) {
	var out ParcelOpen
	err := c.JSON(ctx, http.MethodPost, "/api/v1/parcels/"+url.PathEscape(id)+"/move", map[string]string{"cell": cell}, &out)
	return out, err
}

// NewReturn is the body of POST /api/v1/returns.
type NewReturn struct {
	Locker       string    `json:"locker"`
	Size         string    `json:"size"`
	Sender       Recipient `json:"sender"`
	Reference    string    `json:"reference,omitempty"`
	Barcode      string    `json:"barcode,omitempty"`
	StorageHours int       `json:"storage_hours,omitempty"`
	Carrier      string    `json:"carrier,omitempty"`
}

// CreateReturn reserves a cell for a customer return; the sender gets the
// return code.
func (c *Client) CreateReturn(ctx context.Context, in NewReturn) (Parcel, error) {
	var p Parcel
	err := c.JSON(ctx, http.MethodPost, "/api/v1/returns", in, &p)
	return p, err
}

// ReturnGroup is what a courier collects at one locker for one carrier.
type ReturnGroup struct {
	LockerID string   `json:"locker_id"`
	Carrier  string   `json:"carrier"`
	Parcels  []Parcel `json:"parcels"`
}

// Returns lists the parcels waiting for a courier, per locker and carrier.
func (c *Client) Returns(ctx context.Context, locker, carrier string) ([]ReturnGroup, error) {
	var out struct {
		Groups []ReturnGroup `json:"groups"`
	}
	err := c.JSON(ctx, http.MethodGet, listPath("/api/v1/returns", map[string]string{"locker": locker, "carrier": carrier}, 0, 0), nil, &out)
	return out.Groups, err
}

// ParcelScan is a barcode a locker read and checked against the parcel.
type ParcelScan struct {
	At      time.Time `json:"at"`
	Locker  string    `json:"locker"`
	Cell    string    `json:"cell,omitempty"`
	Barcode string    `json:"barcode"`
	Purpose string    `json:"purpose"` // dropoff, pickup, collect
	Result  string    `json:"result"`  // ok, or the code the locker showed
	Ask     string    `json:"ask"`
}

// ServiceOpen opens a cell in service mode (technicians): a cell.open
// command created by service:<user>.
func (c *Client) ServiceOpen(ctx context.Context, locker, cell string) (Command, error) {
	var out Command
	err := c.JSON(ctx, http.MethodPost, "/api/v1/lockers/"+url.PathEscape(locker)+"/cells/"+url.PathEscape(cell)+"/service-open", nil, &out)
	return out, err
}

// ServiceCode is a one-time code that opens a cell once at the locker.
type ServiceCode struct {
	LockerID  string    `json:"locker_id"`
	Cell      string    `json:"cell"`
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueServiceCode makes a one-time service code for a cell.
func (c *Client) IssueServiceCode(ctx context.Context, locker, cell string) (ServiceCode, error) {
	var out ServiceCode
	err := c.JSON(ctx, http.MethodPost, "/api/v1/lockers/"+url.PathEscape(locker)+"/service-codes", map[string]string{"cell": cell}, &out)
	return out, err
}
