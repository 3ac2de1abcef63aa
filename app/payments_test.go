package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// fiscalService stands in for the cloud fiscal service: it issues one
// receipt per Idempotency-Key (a repeat gets the first receipt again) and
// fails the first attempt of every key with a 503.
type fiscalService struct {
	mu       sync.Mutex
	attempts map[string]int            // key → requests
	issued   map[string]string         // key → receipt number
	bodies   map[string]map[string]any // key → the receipt as the hub sent it
	noAuth   int
}

func (f *fiscalService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer fiscal-secret" {
		f.noAuth++
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	f.attempts[key]++
	if f.attempts[key] == 1 {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	if n, ok := f.issued[key]; ok {
		fmt.Fprintf(w, `{"receipt_id":%q}`, n)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.issued[key] = fmt.Sprintf("R-%03d", len(f.issued)+1)
	f.bodies[key] = body
	fmt.Fprintf(w, `{"receipt_id":%q}`, f.issued[key])
}

func (f *fiscalService) receipt(id string) (map[string]any, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[id], f.attempts[id]
}

// TestPaymentAtTheLocker is issue 13 point 4 as the people at the locker and
// the fiscal service see it: a parcel with an amount due is scanned in by the
// courier, charged on the locker's POS terminal when the recipient types the
// code (the cell opens only then), and ends in exactly one fiscal receipt at
// the fiscal service although its first attempt fails. A declined charge
// keeps the door shut and tells the locker why; a terminal that does not
// answer opens nothing and is not charged twice when asked again; a
// cancellation after payment yields a refund receipt; a locker without a
// POS refuses an amount due; a prepaid parcel is not charged.
func TestPaymentAtTheLocker(t *testing.T) {
	in := &inbox{sms: map[string][]string{}, webhooks: map[string]string{}}
	gateway := httptest.NewServer(http.HandlerFunc(in.smsHandler))
	t.Cleanup(gateway.Close)
	fiscal := &fiscalService{attempts: map[string]int{}, issued: map[string]string{}, bodies: map[string]map[string]any{}}
	fiscalSrv := httptest.NewServer(fiscal)
	t.Cleanup(fiscalSrv.Close)

	h := hubtest.Start(t, func(c *app.Config) {
		c.Outbox.SMS.URL = gateway.URL
		c.Outbox.Fiscal.URL, c.Outbox.Fiscal.Token, c.Outbox.Fiscal.Timeout = fiscalSrv.URL, "fiscal-secret", 5*time.Second
		c.Outbox.PollInterval, c.Outbox.BackoffMin = 200*time.Millisecond, 200*time.Millisecond
		c.Commands.ConfirmWithin = 3 * time.Second
		c.Parcels.ChargeTimeout = 3 * time.Second
	})
	ctx := context.Background()

	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = 2, 4, "PAY"
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = time.Hour // the people in this test close the doors
	cfg.AskTimeout = 15 * time.Second
	cfg.Control = "127.0.0.1:0"
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	simCtx, stopSim := context.WithCancel(ctx)
	require.NoError(t, sim.Start(simCtx))
	t.Cleanup(func() { stopSim(); sim.Stop() })
	const withPOS, withoutPOS = "PAY00001", "PAY00002"
	l := sim.Locker(withPOS)
	for _, id := range []string{withPOS, withoutPOS} {
		hubtest.Eventually(t, 30*time.Second, id+" online with its cells", func() bool {
			row, ok := h.App.Overview.Row(id)
			return h.App.Broker.Online(id) && ok && row.FreeCells["M"] == 4
		})
	}
	// The POS terminal is a capability of the locker's model.
	var layout []apiclient.Cell
	for _, c := range []string{"A01", "A02", "A03", "A04"} {
		layout = append(layout, apiclient.Cell{Name: c, Size: "M"})
	}
	_, err = h.Admin.CreateModel(ctx, apiclient.NewModel{ID: "paybox-4", Manufacturer: "Acme", Name: "PayBox 4", Layout: layout,
		Capabilities: []string{"keypad", "pos", "scanner"}})
	require.NoError(t, err)
	_, err = h.Admin.UpdateLocker(ctx, withPOS, map[string]any{"model": "paybox-4", "carriers": []string{"dhl"}})
	require.NoError(t, err)

	// The locker's side, through lockersim's control API.
	control := func(method, path string, body, out any) int {
		t.Helper()
		var rd *bytes.Reader
		if body != nil {
			js, _ := json.Marshal(body)
			rd = bytes.NewReader(js)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, err := http.NewRequest(method, "http://"+sim.ControlAddr()+path, rd)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		if out != nil {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
		}
		return resp.StatusCode
	}
	setPOS := func(mode string) {
		t.Helper()
		require.Equal(t, http.StatusOK, control("POST", "/lockers/"+withPOS+"/pos", map[string]string{"mode": mode, "reason": "insufficient_funds"}, nil))
	}
	terminal := func() lockersim.POSView {
		t.Helper()
		var v lockersim.POSView
		require.Equal(t, http.StatusOK, control("GET", "/lockers/"+withPOS+"/pos", nil, &v))
		return v
	}
	scan := func(barcode, purpose, cell string) lockersim.ScanResult {
		t.Helper()
		var res lockersim.ScanResult
		require.Equal(t, http.StatusOK, control("POST", "/lockers/"+withPOS+"/barcode", protocol.BarcodeCheckParams{Barcode: barcode, Purpose: purpose, Cell: cell}, &res))
		return res
	}
	typeCode := func(code string) lockersim.CodeResult {
		t.Helper()
		var res lockersim.CodeResult
		require.Equal(t, http.StatusOK, control("POST", "/lockers/"+withPOS+"/code", map[string]string{"code": code}, &res))
		require.Equal(t, lockersim.CodeOnline, res.Path, "%+v", res)
		return res
	}
	door := func(cell string) string { return l.View(true).Cells[cell].Door }
	cellOpens := func(cell string, since time.Time) int {
		var n int
		require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_commands WHERE locker_id = $1 AND method = 'cell.open'
			AND params->>'cell' = $2 AND created_at >= $3`, withPOS, cell, since).Scan(&n))
		return n
	}
	parcel := func(id string) apiclient.Parcel {
		t.Helper()
		p, err := h.Admin.Parcel(ctx, id)
		require.NoError(t, err)
		return p
	}
	// deliver creates a parcel and drops it off: the courier scans its
	// barcode at the locker, which opens its cell.
	deliver := func(ref, phone string, due *apiclient.Money) apiclient.Parcel {
		t.Helper()
		p, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: withPOS, Size: "M", Reference: ref, Barcode: "JJD-" + ref,
			Carrier: "dhl", AmountDue: due, Recipient: apiclient.Recipient{Name: "Ann", Phone: phone}}, ref)
		require.NoError(t, err)
		require.Equal(t, due, p.AmountDue)
		res := scan("JJD-"+ref, protocol.ScanDropoff, "")
		require.Nil(t, res.Error, "%+v", res.Error)
		require.Equal(t, p.Cell, res.Cell)
		hubtest.Eventually(t, 10*time.Second, "the cell opened for the courier", func() bool { return door(p.Cell) == protocol.DoorOpen })
		require.NoError(t, l.SetOccupied(p.Cell, true))
		require.NoError(t, l.CloseDoor(p.Cell))
		hubtest.Eventually(t, 10*time.Second, p.ID+" deposited", func() bool { return parcel(p.ID).State == "deposited" })
		return parcel(p.ID)
	}
	pickUp := func(p apiclient.Parcel) {
		t.Helper()
		hubtest.Eventually(t, 10*time.Second, "the hub opened "+p.Cell, func() bool { return door(p.Cell) == protocol.DoorOpen })
		res := scan(p.Barcode, protocol.ScanPickup, p.Cell)
		require.Nil(t, res.Error, "%+v", res.Error)
		require.NoError(t, l.SetOccupied(p.Cell, false))
		require.NoError(t, l.CloseDoor(p.Cell))
		hubtest.Eventually(t, 10*time.Second, p.ID+" picked up", func() bool { return parcel(p.ID).State == "picked_up" })
	}
	eur := func(minor int64) *apiclient.Money { return &apiclient.Money{Amount: minor, Currency: "EUR"} }

	t.Run("a locker without POS refuses an amount due", func(t *testing.T) {
		_, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: withoutPOS, Size: "M", AmountDue: eur(990),
			Recipient: apiclient.Recipient{Phone: "+491700000001"}}, "")
		var ae *apiclient.Error
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, http.StatusConflict, ae.Status, ae.Message)
		require.Equal(t, "locker_has_no_pos", ae.Code)
		for _, bad := range []*apiclient.Money{{Amount: 0, Currency: "EUR"}, {Amount: 100, Currency: "euro"}, {Amount: -1, Currency: "EUR"}} {
			_, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: withPOS, Size: "M", AmountDue: bad, Recipient: apiclient.Recipient{Phone: "+491700000001"}}, "")
			require.True(t, errors.As(err, &ae), "%v", err)
			require.Equal(t, http.StatusBadRequest, ae.Status, ae.Message)
		}
		page, err := h.Admin.Parcels(ctx, apiclient.ParcelFilter{})
		require.NoError(t, err)
		require.Zero(t, page.Total, "nothing was created")
		// pos.charge is the hub's own: the commands API does not send it.
		_, _, err = h.Admin.Do(ctx, http.MethodPost, "/api/v1/lockers/"+withPOS+"/commands",
			[]byte(`{"method":"pos.charge","params":{"payment":"pay-x","parcel":"p-x","amount":100,"currency":"EUR"}}`))
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, http.StatusBadRequest, ae.Status, ae.Message)
		require.Empty(t, terminal().Charges)
	})

	t.Run("paid at the locker, one fiscal receipt", func(t *testing.T) {
		p := deliver("paid-1", "+491701000001", eur(1250))
		before := time.Now()
		res := typeCode(in.code(t, "+491701000001"))
		require.Nil(t, res.Error, "%+v", res.Error)
		var r struct {
			Cell   string           `json:"cell"`
			Charge *protocol.Charge `json:"charge"`
		}
		require.NoError(t, json.Unmarshal(res.Result, &r))
		require.NotNil(t, r.Charge, string(res.Result))
		require.Equal(t, int64(1250), r.Charge.Amount)
		require.Equal(t, "EUR", r.Charge.Currency)
		require.NotEmpty(t, r.Charge.Reference)
		pickUp(p)
		require.Equal(t, 1, cellOpens(p.Cell, before))

		hubtest.Eventually(t, 15*time.Second, "the receipt reached the fiscal service", func() bool {
			body, _ := fiscal.receipt(r.Charge.Payment)
			return body != nil
		})
		body, attempts := fiscal.receipt(r.Charge.Payment)
		require.GreaterOrEqual(t, attempts, 2, "the first attempt failed and was retried")
		require.Equal(t, "sale", body["type"])
		require.Equal(t, p.ID, body["parcel"])
		require.EqualValues(t, 1250, body["amount"])
		require.Equal(t, "EUR", body["currency"])
		require.Equal(t, r.Charge.Reference, body["terminal_reference"])

		var got apiclient.Parcel
		hubtest.Eventually(t, 10*time.Second, "the receipt recorded as sent", func() bool {
			got = parcel(p.ID)
			return len(got.Payments) == 1 && got.Payments[0].Receipt != nil && got.Payments[0].Receipt.State == "sent"
		})
		pay := got.Payments[0]
		require.Equal(t, r.Charge.Payment, pay.ID)
		require.Equal(t, "approved", pay.State)
		require.NotNil(t, pay.Receipt)
		require.Equal(t, "sent", pay.Receipt.State)
		require.Equal(t, "R-001", pay.Receipt.Number)
		require.GreaterOrEqual(t, pay.Receipt.Attempts, 2)
		v := terminal()
		require.Equal(t, 1, v.Charged)
	})

	t.Run("declined keeps the door shut; cancel after payment refunds", func(t *testing.T) {
		p := deliver("paid-2", "+491701000002", eur(4999))
		code := in.code(t, "+491701000002")
		setPOS(lockersim.POSDecline)
		before := time.Now()
		res := typeCode(code)
		require.NotNil(t, res.Error, "%+v", res)
		require.Equal(t, protocol.ErrCodePaymentDeclined, res.Error.Code)
		require.Contains(t, res.Error.Message, "insufficient_funds")
		require.Zero(t, cellOpens(p.Cell, before), "a declined charge opens nothing")
		require.Equal(t, protocol.DoorClosed, door(p.Cell))
		got := parcel(p.ID)
		require.Equal(t, "deposited", got.State)
		require.Len(t, got.Payments, 1)
		require.Equal(t, "declined", got.Payments[0].State)
		require.Nil(t, got.Payments[0].Receipt)

		// Another card: approved, the door opens, the recipient leaves
		// the parcel in and closes; the carrier cancels: a refund.
		setPOS(lockersim.POSApprove)
		res = typeCode(code)
		require.Nil(t, res.Error, "%+v", res.Error)
		hubtest.Eventually(t, 10*time.Second, "the hub opened "+p.Cell, func() bool { return door(p.Cell) == protocol.DoorOpen })
		require.NoError(t, l.CloseDoor(p.Cell))
		_, err := h.Admin.CancelParcel(ctx, p.ID, "recipient refused the parcel")
		require.NoError(t, err)
		got = parcel(p.ID)
		require.Len(t, got.Payments, 3)
		charge, refund := got.Payments[1], got.Payments[2]
		require.Equal(t, "approved", charge.State)
		require.Equal(t, "refund", refund.Kind)
		require.Equal(t, charge.ID, refund.RefundOf)
		require.Equal(t, int64(4999), refund.Amount)
		hubtest.Eventually(t, 15*time.Second, "the refund receipt reached the fiscal service", func() bool {
			body, _ := fiscal.receipt(refund.ID)
			return body != nil
		})
		body, _ := fiscal.receipt(refund.ID)
		require.Equal(t, "refund", body["type"])
		require.Equal(t, charge.ID, body["refund_of"])
		// The sale's retry after its failed first attempt may come after the
		// refund's (each waits its own backoff).
		hubtest.Eventually(t, 15*time.Second, "the sale receipt reached the fiscal service", func() bool {
			body, _ := fiscal.receipt(charge.ID)
			return body != nil
		})
		sale, _ := fiscal.receipt(charge.ID)
		require.Equal(t, "sale", sale["type"])
		_, err = h.Admin.CancelParcel(ctx, p.ID, "again")
		require.Error(t, err, "cancelled once")
		require.Len(t, parcel(p.ID).Payments, 3, "one refund per charge")
	})

	t.Run("a terminal that does not answer opens nothing and charges once", func(t *testing.T) {
		p := deliver("paid-3", "+491701000003", eur(700))
		code := in.code(t, "+491701000003")
		setPOS(lockersim.POSTimeout)
		before := time.Now()
		res := typeCode(code)
		require.NotNil(t, res.Error, "%+v", res)
		require.Equal(t, protocol.ErrCodePaymentPending, res.Error.Code)
		require.Zero(t, cellOpens(p.Cell, before))
		got := parcel(p.ID)
		require.Len(t, got.Payments, 1)
		require.Equal(t, "unknown", got.Payments[0].State)

		setPOS(lockersim.POSApprove)
		res = typeCode(code)
		require.Nil(t, res.Error, "%+v", res.Error)
		pickUp(p)
		got = parcel(p.ID)
		require.Len(t, got.Payments, 1, "asked again under the same payment id")
		require.Equal(t, "approved", got.Payments[0].State)
		var outcomes []string
		for _, c := range terminal().Charges {
			if c.Payment == got.Payments[0].ID {
				outcomes = append(outcomes, c.Outcome)
			}
		}
		require.Equal(t, 1, countOf(outcomes, "approved"), "charged once: %v", outcomes)
		require.Contains(t, outcomes, "no_answer")
	})

	t.Run("a prepaid parcel is not charged", func(t *testing.T) {
		due := deliver("paid-4", "+491701000005", eur(100))
		charged := terminal().Charges
		p := deliver("prepaid-1", "+491701000004", nil)
		hubtest.Eventually(t, 10*time.Second, "the prepaid parcel in the offline list", func() bool { return slices.Contains(offlineIDs(l), p.ID) })
		require.NotContains(t, offlineIDs(l), due.ID, "a parcel with an amount due is never handed out offline (decision 18)")
		res := typeCode(in.code(t, "+491701000004"))
		require.Nil(t, res.Error, "%+v", res.Error)
		require.Contains(t, string(res.Result), `"charge":null`)
		pickUp(p)
		require.Equal(t, charged, terminal().Charges, "the terminal was not asked")
		require.Empty(t, parcel(p.ID).Payments)
	})
	hubtest.Eventually(t, 15*time.Second, "every receipt at the fiscal service", func() bool {
		fiscal.mu.Lock()
		defer fiscal.mu.Unlock()
		return len(fiscal.issued) >= 4
	})
	fiscal.mu.Lock()
	require.Zero(t, fiscal.noAuth, "every request carried the token")
	for key, n := range fiscal.issued {
		require.NotEmpty(t, n, key)
	}
	require.Len(t, fiscal.issued, 4, "sale, sale + refund, sale: one receipt each")
	fiscal.mu.Unlock()
}

func offlineIDs(l *lockersim.Locker) []string {
	var ids []string
	for _, p := range l.View(false).Parcels {
		ids = append(ids, p.ID)
	}
	return ids
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
