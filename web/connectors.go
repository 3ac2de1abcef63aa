package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/lockerhub/lockerhub/connectors"
	"github.com/lockerhub/lockerhub/parcels"
)

// Partner connectors (docs/integration.md): a partner that speaks its own
// format sends its documents to /api/v1/connectors/{name}/…; the connector
// translates them, and the deliveries are made by the same parcels API as
// JSON callers (same roles, scopes, carriers, idempotency and errors).

func (a *API) connectorRoutes() []route {
	return []route{
		{"POST", "/api/v1/connectors/{name}/orders", false, a.connectorOrder},
		{"POST", "/api/v1/connectors/{name}/cancel", false, a.connectorCancel},
		{"GET", "/api/v1/connectors/{name}/orders/{order}", false, a.connectorStatus},
	}
}

// connector finds the route's connector, or answers 404 in JSON (there is
// no format to answer in).
func (a *API) connector(w http.ResponseWriter, r *http.Request) (connectors.Connector, bool) {
	if !a.parcelsWired(w) {
		return nil, false
	}
	c, ok := a.d.Connectors[r.PathValue("name")]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no connector %q (there are: %v)", r.PathValue("name"), a.d.Connectors.Names()))
		return nil, false
	}
	return c, true
}

func writeDoc(w http.ResponseWriter, c connectors.Connector, status int, doc []byte) {
	w.Header().Set("Content-Type", c.ContentType())
	w.WriteHeader(status)
	_, _ = w.Write(doc)
}

// connectorError answers err in the partner's format with the status and
// code the JSON API would give it.
func (a *API) connectorError(w http.ResponseWriter, r *http.Request, c connectors.Connector, err error) {
	rec := httptest.NewRecorder()
	if errors.Is(err, connectors.ErrInvalid) {
		writeError(rec, http.StatusBadRequest, "invalid", err.Error())
	} else {
		a.parcelError(rec, r, err)
	}
	var e struct{ Code, Message string }
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	writeDoc(w, c, rec.Code, c.EncodeError(e.Code, e.Message))
}

func readDoc(w http.ResponseWriter, r *http.Request, c connectors.Connector) ([]byte, bool) {
	doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, connectors.MaxDocument))
	if err != nil {
		writeDoc(w, c, http.StatusRequestEntityTooLarge, c.EncodeError("too_large", fmt.Sprintf("the document is larger than %d bytes", connectors.MaxDocument)))
		return nil, false
	}
	return doc, true
}

func statusOf(p parcels.Parcel) connectors.Status {
	return connectors.Status{OrderID: p.Reference, ParcelID: p.ID, State: p.State, LockerID: p.LockerID, Cell: p.Cell,
		ExpiresAt: p.ExpiresAt, UpdatedAt: p.UpdatedAt}
}

// connectorOrder creates the delivery of a partner's order, once per order
// id: a repeat answers the first delivery (200 instead of 201).
func (a *API) connectorOrder(w http.ResponseWriter, r *http.Request) {
	c, ok := a.connector(w, r)
	if !ok {
		return
	}
	doc, ok := readDoc(w, r, c)
	if !ok {
		return
	}
	o, err := c.DecodeOrder(doc)
	if err != nil {
		a.connectorError(w, r, c, err)
		return
	}
	if !a.inCallerScope(r, o.LockerID) {
		a.connectorError(w, r, c, fmt.Errorf("%w: locker %s", parcels.ErrNotFound, o.LockerID))
		return
	}
	p, created, err := a.d.Parcels.Create(r.Context(), parcelCaller(r), parcels.NewParcel{
		LockerID: o.LockerID, Size: o.Size, Recipient: parcels.Recipient{Name: o.Name, Phone: o.Phone, Email: o.Email},
		Reference: o.OrderID, StorageHours: o.StorageHours, IdempotencyKey: c.Name() + ":order:" + o.OrderID,
	})
	if err != nil {
		a.connectorError(w, r, c, err)
		return
	}
	w.Header().Set("Location", "/api/v1/connectors/"+c.Name()+"/orders/"+o.OrderID)
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	a.answerStatus(w, r, c, status, p)
}

// answerStatus answers the delivery's status in the partner's format.
func (a *API) answerStatus(w http.ResponseWriter, r *http.Request, c connectors.Connector, status int, p parcels.Parcel) {
	out, err := c.EncodeStatus(statusOf(p))
	if err != nil {
		a.connectorError(w, r, c, err)
		return
	}
	writeDoc(w, c, status, out)
}

// byOrder finds the caller's delivery of a partner's order id.
func (a *API) byOrder(r *http.Request, orderID string) (parcels.Parcel, error) {
	ps, _, err := a.d.Parcels.List(r.Context(), parcelCaller(r), parcels.Filter{Reference: orderID, Limit: 2})
	switch {
	case err != nil:
		return parcels.Parcel{}, err
	case len(ps) == 0:
		return parcels.Parcel{}, fmt.Errorf("%w: no delivery for order %s", parcels.ErrNotFound, orderID)
	case len(ps) > 1:
		return parcels.Parcel{}, fmt.Errorf("%w: several deliveries carry the reference %s; cancel by parcel id", parcels.ErrConflict, orderID)
	}
	return a.d.Parcels.Get(r.Context(), parcelCaller(r), ps[0].ID)
}

func (a *API) connectorCancel(w http.ResponseWriter, r *http.Request) {
	c, ok := a.connector(w, r)
	if !ok {
		return
	}
	doc, ok := readDoc(w, r, c)
	if !ok {
		return
	}
	x, err := c.DecodeCancel(doc)
	if err != nil {
		a.connectorError(w, r, c, err)
		return
	}
	p, err := a.byOrder(r, x.OrderID)
	if err == nil {
		p, err = a.d.Parcels.Cancel(r.Context(), parcelCaller(r), p.ID, x.Reason)
	}
	if err != nil {
		a.connectorError(w, r, c, err)
		return
	}
	a.answerStatus(w, r, c, http.StatusOK, p)
}

func (a *API) connectorStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := a.connector(w, r)
	if !ok {
		return
	}
	p, err := a.byOrder(r, r.PathValue("order"))
	if err != nil {
		a.connectorError(w, r, c, err)
		return
	}
	a.answerStatus(w, r, c, http.StatusOK, p)
}
