package app_test

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/parcels"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestXMLPartnerOrder: a shop that speaks the XML order feed orders a
// delivery (once, however often it sends the order), the courier drops it
// off at a real simulated locker, the shop reads the status back as XML and
// gets every status change as a signed XML callback at its endpoint; a
// second order is cancelled; an order with a DOCTYPE or for another
// carrier's locker is refused in XML with the JSON API's codes, and nothing
// is created.
func TestXMLPartnerOrder(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) {
		c.Commands.ConfirmWithin = 3 * time.Second
		c.Outbox.PollInterval = 200 * time.Millisecond
	})
	ctx := context.Background()
	sim := startLockers(t, h, "XO", 2)
	l := sim.Locker("XO00001")
	_, err := h.Admin.UpdateLocker(ctx, "XO00001", map[string]any{"carriers": []string{"dhl"}})
	require.NoError(t, err)
	_, tok, err := h.App.Access.CreateClient(ctx, "xml-shop", "dhl", []string{access.ScopeParcelsRead, access.ScopeParcelsWrite})
	require.NoError(t, err)

	// The shop's endpoint takes status callbacks in its own format.
	var mu sync.Mutex
	var secret string
	callbacks := map[string]string{} // Lockerhub-Delivery → body
	var badCallbacks []string
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := outbox.Verify(secret, r.Header.Get(outbox.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil ||
			r.Header.Get("Content-Type") != "application/xml; charset=utf-8" {
			badCallbacks = append(badCallbacks, r.Header.Get("Content-Type")+" "+string(body))
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		callbacks[r.Header.Get(outbox.DeliveryHeader)] = string(body)
	}))
	t.Cleanup(shop.Close)
	var ep struct{ Secret, Format string }
	require.NoError(t, apiclient.New(h.HTTPURL, tok).JSON(ctx, "PUT", "/api/v1/webhook", map[string]string{"url": shop.URL, "format": "xml-orders"}, &ep))
	require.Equal(t, "xml-orders", ep.Format)
	mu.Lock()
	secret = ep.Secret
	mu.Unlock()
	type callback struct {
		ID     string `xml:"id,attr"`
		Event  string `xml:"event,attr"`
		At     string `xml:"at,attr"`
		Order  string `xml:"order,attr"`
		Parcel string `xml:"parcel,attr"`
		State  string `xml:"state,attr"`
	}
	callbackOf := func(id string) (callback, bool) {
		mu.Lock()
		defer mu.Unlock()
		doc, ok := callbacks[id]
		var c callback
		if ok {
			require.NoError(t, xml.Unmarshal([]byte(doc), &c), doc)
		}
		return c, ok
	}

	send := func(method, path, doc string) (int, string, string) {
		req, err := http.NewRequestWithContext(ctx, method, h.HTTPURL+path, strings.NewReader(doc))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/xml")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	type status struct {
		Order  string `xml:"order,attr"`
		Parcel string `xml:"parcel,attr"`
		State  string `xml:"state,attr"`
		Cell   string `xml:"cell,attr"`
	}
	parse := func(doc string) status {
		var s status
		require.NoError(t, xml.Unmarshal([]byte(doc), &s), doc)
		return s
	}
	order := func(id, size string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><order id="` + id + `"><locker>XO00001</locker><size>` + size +
			`</size><recipient><name>Erika</name><phone>+4915112345678</phone></recipient></order>`
	}

	code, ctype, doc := send("POST", "/api/v1/connectors/xml-orders/orders", order("SHOP-1", "M"))
	require.Equal(t, http.StatusCreated, code, doc)
	require.Equal(t, "application/xml; charset=utf-8", ctype)
	first := parse(doc)
	require.Equal(t, "SHOP-1", first.Order)
	require.Equal(t, "reserved", first.State)
	require.NotEmpty(t, first.Cell)

	code, _, doc = send("POST", "/api/v1/connectors/xml-orders/orders", order("SHOP-1", "M"))
	require.Equal(t, http.StatusOK, code, "the same order again: the first delivery, no second reservation")
	require.Equal(t, first.Parcel, parse(doc).Parcel)
	code, _, doc = send("POST", "/api/v1/connectors/xml-orders/orders", order("SHOP-1", "L"))
	require.Equal(t, http.StatusConflict, code, doc)
	require.Contains(t, doc, `<error code="idempotency_conflict">`)

	// The courier drops it off; the door sensor confirms.
	open, err := h.Admin.DropoffParcel(ctx, first.Parcel)
	require.NoError(t, err)
	hubtest.Eventually(t, 10*time.Second, "the reserved cell open", func() bool {
		return l.View(true).Cells[open.Parcel.Cell].Door == protocol.DoorOpen
	})
	require.NoError(t, l.SetOccupied(open.Parcel.Cell, true))
	require.NoError(t, l.CloseDoor(open.Parcel.Cell))
	hubtest.Eventually(t, 10*time.Second, "deposited, as the shop reads it", func() bool {
		code, _, doc := send("GET", "/api/v1/connectors/xml-orders/orders/SHOP-1", "")
		require.Equal(t, http.StatusOK, code, doc)
		return parse(doc).State == "deposited" && strings.Contains(doc, `expires="`)
	})

	code, _, doc = send("POST", "/api/v1/connectors/xml-orders/orders", order("SHOP-2", "M"))
	require.Equal(t, http.StatusCreated, code, doc)
	second := parse(doc)
	code, _, doc = send("POST", "/api/v1/connectors/xml-orders/cancel", `<cancel order="SHOP-2"><reason>customer withdrew</reason></cancel>`)
	require.Equal(t, http.StatusOK, code, doc)
	require.Equal(t, "cancelled", parse(doc).State)

	// Every status change reached the shop as XML, signed, with the
	// webhook's stable id.
	for _, want := range []struct{ parcel, order, state string }{
		{first.Parcel, "SHOP-1", "reserved"}, {first.Parcel, "SHOP-1", "deposited"},
		{second.Parcel, "SHOP-2", "reserved"}, {second.Parcel, "SHOP-2", "cancelled"},
	} {
		id := want.parcel + ":" + want.state
		var c callback
		hubtest.Eventually(t, 10*time.Second, "XML callback "+id, func() bool {
			var ok bool
			c, ok = callbackOf(id)
			return ok
		})
		require.Equal(t, callback{ID: id, Event: "parcel." + want.state, At: c.At, Order: want.order, Parcel: want.parcel, State: want.state}, c)
		_, err := time.Parse(time.RFC3339Nano, c.At)
		require.NoError(t, err)
	}
	mu.Lock()
	require.Empty(t, badCallbacks)
	mu.Unlock()

	all := func() int {
		_, n, err := h.App.Parcels.List(ctx, parcels.Caller{Scope: "test", Name: "test"}, parcels.Filter{Limit: 100})
		require.NoError(t, err)
		return n
	}
	before := all()
	for _, bad := range []struct {
		doc, code string
		status    int
	}{
		{`<!DOCTYPE order [<!ENTITY x "y">]>` + order("SHOP-3", "M"), "invalid", http.StatusBadRequest},
		{strings.Replace(order("SHOP-4", "M"), "XO00001", "XO00002", 1), "not_found", http.StatusNotFound}, // not dhl's
		{order("SHOP-5", "XXL"), "invalid", http.StatusBadRequest},
		{`<order id="SHOP-6">` + strings.Repeat("<x/>", 20000) + `</order>`, "too_large", http.StatusRequestEntityTooLarge},
	} {
		code, _, doc := send("POST", "/api/v1/connectors/xml-orders/orders", bad.doc)
		require.Equal(t, bad.status, code, doc)
		require.Contains(t, doc, `<error code="`+bad.code+`">`, doc)
	}
	require.Equal(t, before, all(), "nothing created by a refused order")

	code, _, doc = send("GET", "/api/v1/connectors/xml-orders/orders/NOPE", "")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, doc, `<error code="not_found">`)
	code, ctype, _ = send("GET", "/api/v1/connectors/edifact/orders/SHOP-1", "")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, ctype, "application/json", "no such connector: answered in JSON")
}
