package dashboardtest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestParcelsPages: two parcels made through the API are listed on the
// Parcels page; a reference narrows the list to one, kept in the URL over a
// reload; the parcel's page shows its history and cancels it (after a
// confirm), and a cancel the state refuses shows the API's message; the
// locker page lists the locker's open parcels; a viewer sees the list but no
// Cancel.
func TestParcelsPages(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	h.AddLocker("PX-1")
	for i := 1; i <= 4; i++ {
		submitState(t, h, "PX-1", uint64(i), fmt.Sprintf(`"A%02d":{"door":"closed","occupied":false}`, i))
	}
	p1, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PX-1", Size: "M", Reference: "TRK-1001",
		Recipient: apiclient.Recipient{Name: "Ada", Phone: "+4917000001"}}, "")
	require.NoError(t, err)
	p2, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PX-1", Size: "M", Reference: "TRK-2002",
		Recipient: apiclient.Recipient{Email: "bob@example.com"}}, "")
	require.NoError(t, err)

	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.run("parcels link", chromedp.WaitVisible(chromedp.CSS("#nav-parcels")), chromedp.Click(chromedp.CSS("#nav-parcels")))
	b.waitJS("both parcels listed", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 2`)
	require.Contains(t, b.text("#p-count"), "Showing 1–2 of 2")
	row := b.text(fmt.Sprintf(`tr[data-parcel=%q]`, p2.ID))
	for _, want := range []string{"Reserved", "PX-1 · " + p2.Cell, "TRK-2002", "bob@example.com"} {
		require.Contains(t, row, want)
	}

	b.setValue("#p-tracking", "TRK-1001")
	b.waitJS("filtered to one", 5*time.Second, fmt.Sprintf(
		`document.querySelectorAll('#p-rows tr[data-parcel]').length === 1 && !!document.querySelector('tr[data-parcel=%q]')`, p1.ID))
	b.run("reload", chromedp.Reload())
	b.waitJS("still filtered after a reload", 10*time.Second,
		`location.hash.includes('tracking=TRK-1001') && document.querySelector('#p-tracking').value === 'TRK-1001' && document.querySelectorAll('#p-rows tr[data-parcel]').length === 1`)
	b.screenshot("parcels")

	b.setValue("#p-tracking", "NO-SUCH")
	b.waitJS("the empty state", 5*time.Second, `document.querySelector('#p-rows').innerText.includes('No parcels match')`)
	b.setValue("#p-tracking", "TRK-1001")
	b.waitJS("one again", 5*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 1`)

	b.run("open the parcel", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-parcel=%q] a.p-id`, p1.ID))))
	b.waitJS("its history", 10*time.Second, `!!document.querySelector('#p-history') && document.querySelector('#p-history').innerText.includes('Reserved')`)
	require.Contains(t, b.text("#p-facts"), "+4917000001")
	href, err := eval[string](b, `document.querySelector('#p-locker-link').getAttribute('href')`)
	require.NoError(t, err)
	require.Equal(t, "#/lockers/PX-1", href)
	b.screenshot("parcel")

	b.setValue("#p-reason", "sender withdrew")
	b.run("cancel",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS("#p-cancel-btn")))
	b.waitJS("cancelled", 10*time.Second, `!!document.querySelector('.p-state[data-state="cancelled"]') && document.querySelector('#p-history').innerText.includes('Cancelled') && !document.querySelector('#p-cancel')`)
	require.Contains(t, b.text("#p-history"), "sender withdrew")
	got, err := h.Admin.Parcel(ctx, p1.ID)
	require.NoError(t, err)
	require.Equal(t, "cancelled", got.State)
	b.screenshot("parcel-cancelled")

	// The locker page lists its open parcel (p2), not the cancelled one.
	b.open("#/lockers/PX-1")
	b.waitJS("the open parcel on the locker page", 10*time.Second, fmt.Sprintf(`!!document.querySelector('#l-parcels tr[data-parcel=%q]')`, p2.ID))
	require.Empty(t, b.text(fmt.Sprintf(`#l-parcels tr[data-parcel=%q]`, p1.ID)))
	// p2's cell is reserved, not free for loading; p1's (cancelled) is free again.
	b.waitJS("the reserved cell marked", 10*time.Second, fmt.Sprintf(
		`(document.querySelector('.cell[data-cell=%q] .s-occ')||{}).textContent === 'Reserved'`, p2.Cell))
	require.Equal(t, "Free", b.text(fmt.Sprintf(`.cell[data-cell=%q] .s-occ`, p1.Cell)))
	require.Contains(t, b.text("#cells-sum"), "1 reserved")
	b.screenshot("locker-parcels")
	b.run("all parcels at the locker", chromedp.Click(chromedp.CSS("#l-parcels-all")))
	b.waitJS("the list filtered by locker", 10*time.Second,
		`document.querySelector('#p-locker') && document.querySelector('#p-locker').value === 'PX-1' && document.querySelectorAll('#p-rows tr[data-parcel]').length === 2`)

	// A cancel the state refuses: p2 is cancelled elsewhere meanwhile.
	b.open("#/parcels/" + p2.ID)
	b.waitJS("the cancel form", 10*time.Second, `!!document.querySelector('#p-cancel-btn')`)
	_, err = h.Admin.CancelParcel(ctx, p2.ID, "elsewhere")
	require.NoError(t, err)
	b.run("cancel again", chromedp.Click(chromedp.CSS("#p-cancel-btn")))
	b.waitJS("the API's message", 10*time.Second, `(document.querySelector('#p-msg .error')||{}).innerText?.includes('cannot be cancelled') && !!document.querySelector('.p-state[data-state="cancelled"]')`)

	// An error state: a filter the API refuses.
	b.open("#/parcels?state=bogus")
	b.waitJS("the API's refusal", 10*time.Second, `(document.querySelector('#p-error .error')||{}).innerText?.includes('state')`)

	// Paging: 101 parcels at PG-1 are two pages, the page in the URL.
	_, err = h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "PG-1", Cells: 101})
	require.NoError(t, err)
	cells := make([]string, 0, 101)
	for _, name := range lockersim.CellNames(101) {
		cells = append(cells, fmt.Sprintf(`%q:{"door":"closed","occupied":false}`, name))
	}
	submitState(t, h, "PG-1", 1, strings.Join(cells, ","))
	for i := 0; i < 101; i++ {
		_, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PG-1", Size: "M", Reference: fmt.Sprintf("PG-%03d", i),
			Recipient: apiclient.Recipient{Phone: "+4917000009"}}, "")
		require.NoError(t, err)
	}
	b.open("#/parcels?locker=PG-1")
	b.waitJS("the first page", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 100`)
	require.Contains(t, b.text("#p-count"), "Showing 1–100 of 101")
	b.run("next page", chromedp.Click(chromedp.CSS("#p-next")))
	b.waitJS("the second page", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 1 && location.hash.includes('offset=100')`)
	require.Contains(t, b.text("#p-count"), "Showing 101–101 of 101")
	require.Contains(t, b.text("#p-rows"), "PG-000", "newest first: the oldest is last")
	b.run("reload", chromedp.Reload())
	b.waitJS("still the second page", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 1 && document.querySelector('#p-next').disabled`)
	b.run("previous page", chromedp.Click(chromedp.CSS("#p-prev")))
	b.waitJS("the first page again", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 100 && document.querySelector('#p-prev').disabled`)

	// Tablet width.
	b.open("#/parcels?locker=PX-1")
	b.run("tablet", chromedp.EmulateViewport(820, 1180))
	b.waitJS("listed at tablet width", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 2`)
	b.screenshot("parcels-tablet")

	// A viewer reads parcels but has no Cancel, even of a reserved one.
	p3, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PX-1", Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000003"}}, "")
	require.NoError(t, err)
	pw := h.AddUser("vic", "viewer")
	b.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.login("vic", pw)
	b.open("#/parcels/" + p3.ID)
	b.waitJS("the parcel without Cancel", 10*time.Second, `!!document.querySelector('.p-state[data-state="reserved"]') && !document.querySelector('#p-cancel')`)
}

// TestParcelSearchAndEditPages: the search by barcode, recipient phone and
// date finds the parcel; its page shows the declared contents and value and
// each history step's place and source; Edit changes the recipient and the
// storage period (history and API follow) and shows a refusal with its code;
// a viewer gets neither Edit nor Move.
func TestParcelSearchAndEditPages(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	h.AddLocker("PS-1")
	for i := 1; i <= 3; i++ {
		submitState(t, h, "PS-1", uint64(i), fmt.Sprintf(`"A%02d":{"door":"closed","occupied":false}`, i))
	}
	p1, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PS-1", Size: "M", Reference: "ORD-1", Barcode: "JJD000111",
		Contents: "two books", DeclaredValue: 3450, Currency: "EUR", Recipient: apiclient.Recipient{Name: "Ada", Phone: "+4917011111"}}, "")
	require.NoError(t, err)
	p2, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PS-1", Size: "M", Barcode: "JJD000222",
		Recipient: apiclient.Recipient{Email: "bo@example.com"}}, "")
	require.NoError(t, err)

	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.open("#/parcels")
	b.waitJS("both listed", 10*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 2`)
	b.setValue("#p-barcode", "JJD000222")
	b.waitJS("found by barcode", 5*time.Second, fmt.Sprintf(
		`document.querySelectorAll('#p-rows tr[data-parcel]').length === 1 && !!document.querySelector('tr[data-parcel=%q]') && location.hash.includes('barcode=JJD000222')`, p2.ID))
	b.setValue("#p-barcode", "")
	b.setValue("#p-phone", "+4917011111")
	b.waitJS("found by phone", 5*time.Second, fmt.Sprintf(
		`document.querySelectorAll('#p-rows tr[data-parcel]').length === 1 && !!document.querySelector('tr[data-parcel=%q]')`, p1.ID))
	b.selectValue("#p-to", "2020-01-01")
	b.waitJS("nothing created before 2020", 5*time.Second, `document.querySelector('#p-rows').innerText.includes('No parcels match')`)
	b.selectValue("#p-to", "")
	b.waitJS("found again", 5*time.Second, `document.querySelectorAll('#p-rows tr[data-parcel]').length === 1`)
	b.screenshot("parcels-search")

	b.run("open the parcel", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-parcel=%q] a.p-id`, p1.ID))))
	b.waitJS("its page", 10*time.Second, `!!document.querySelector('#p-edit') && document.querySelector('#p-history').innerText.includes('Reserved')`)
	facts := b.text("#p-facts")
	for _, want := range []string{"JJD000111", "two books", "34.50 EUR"} {
		require.Contains(t, facts, want)
	}
	require.Contains(t, b.text("#p-history"), "at PS-1 "+p1.Cell)
	require.Contains(t, b.text("#p-history"), "api")
	require.Empty(t, b.text("#p-move"), "a reserved parcel is not moved: it is not in its cell")

	b.setValue("#p-e-phone", "+4917022222")
	b.setValue("#p-e-hours", "96")
	b.run("save", chromedp.Click(chromedp.CSS("#p-edit-btn")))
	b.waitJS("saved", 10*time.Second, `(document.querySelector('#p-msg .notice')||{}).innerText?.includes('updated') && document.querySelector('#p-facts').innerText.includes('+4917022222') && document.querySelector('#p-facts').innerText.includes('storage 96 h')`)
	require.Contains(t, b.text("#p-history"), "recipient changed; storage period 72 h → 96 h")
	got, err := h.Admin.Parcel(ctx, p1.ID)
	require.NoError(t, err)
	require.Equal(t, "+4917022222", got.Recipient.Phone)
	require.Equal(t, 96, got.StorageHours)
	b.screenshot("parcel-edited")

	b.selectValue("#p-e-size", "XL")
	b.run("a size with no free cell", chromedp.Click(chromedp.CSS("#p-edit-btn")))
	b.waitJS("the refusal with its code", 10*time.Second, `(document.querySelector('#p-msg .error')||{}).innerText?.includes('no_free_cell')`)

	// Service access on the locker page: a service opening and a one-time code.
	b.open("#/lockers/PS-1")
	b.waitJS("the service panel", 10*time.Second, `!!document.querySelector('#l-service-form')`)
	b.setValue("#l-service-cell", "A03")
	b.run("one-time code", chromedp.Click(chromedp.CSS("#l-service-code")))
	b.waitJS("the code shown", 10*time.Second, `/^[0-9]{8}$/.test((document.querySelector('.l-service-code')||{}).textContent || '')`)
	b.run("service open",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS("#l-service-open")))
	b.waitJS("the command made", 10*time.Second, `!!document.querySelector('.l-service-cmd')`)
	b.screenshot("locker-service")
	var n int
	require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_commands WHERE locker_id = 'PS-1' AND created_by = 'service:admin'`).Scan(&n))
	require.Equal(t, 1, n)

	// To collect: p2 deposited, then cancelled: listed for its locker and
	// carrier; Collect opens its cell by command.
	_, err = h.Admin.DropoffParcel(ctx, p2.ID)
	require.NoError(t, err)
	submitState(t, h, "PS-1", 10, fmt.Sprintf(`%q:{"door":"open","occupied":false}`, p2.Cell))
	submitState(t, h, "PS-1", 11, fmt.Sprintf(`%q:{"door":"closed","occupied":true}`, p2.Cell))
	hubtest.Eventually(t, 10*time.Second, "p2 deposited", func() bool {
		got, err := h.Admin.Parcel(ctx, p2.ID)
		require.NoError(t, err)
		return got.State == "deposited"
	})
	_, err = h.Admin.CancelParcel(ctx, p2.ID, "sender withdrew")
	require.NoError(t, err)
	b.open("#/parcels")
	b.run("to collect", chromedp.WaitVisible(chromedp.CSS("#p-returns-link")), chromedp.Click(chromedp.CSS("#p-returns-link")))
	b.waitJS("the group", 10*time.Second, fmt.Sprintf(`!!document.querySelector('.r-group[data-locker="PS-1"] tr[data-parcel=%q] .r-collect')`, p2.ID))
	b.screenshot("returns")
	b.run("collect", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-parcel=%q] .r-collect`, p2.ID))))
	b.waitJS("the cell opening", 10*time.Second, `(document.querySelector('#r-msg .notice')||{}).innerText?.includes('is opening')`)
	got, err = h.Admin.Parcel(ctx, p2.ID)
	require.NoError(t, err)
	require.NotNil(t, got.CollectAt)

	pw := h.AddUser("vera", "viewer")
	b.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.login("vera", pw)
	b.open("#/parcels/" + p1.ID)
	b.waitJS("the parcel without Edit or Move", 10*time.Second, `!!document.querySelector('#p-facts .p-barcode') && !document.querySelector('#p-edit') && !document.querySelector('#p-move')`)
	b.open("#/lockers/PS-1")
	b.waitJS("the locker page without service access", 10*time.Second, `!!document.querySelector('#l-parcels-panel') && !document.querySelector('#l-service-panel')`)
}

// submitState hands a locker's state report with cells (JSON members) to the
// twins, as its broker connection would, and waits until it is committed.
func submitState(t *testing.T, h *hubtest.Hub, locker string, seq uint64, cells string) {
	t.Helper()
	payload := fmt.Sprintf(`{"boot":1,"seq":%d,"ts":%d,"cells":{%s}}`, seq, time.Now().UnixMilli(), cells)
	done := make(chan error, 1)
	h.App.Twins.Submit(fleet.Inbound{LockerID: locker, Kind: protocol.KindState, Payload: []byte(payload), Received: time.Now(),
		Done: func(err error) { done <- err }})
	require.NoError(t, <-done)
}

// TestParcelPaymentsPanel: a parcel with an amount due shows it among its
// facts, and its page lists the charges and refunds with their fiscal
// receipts (the payments are written as the payment flow stores them; the
// flow itself is app.TestPaymentAtTheLocker).
func TestParcelPaymentsPanel(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	_, err := h.Admin.CreateModel(ctx, apiclient.NewModel{ID: "paybox-2", Manufacturer: "Acme", Name: "PayBox 2",
		Layout: []apiclient.Cell{{Name: "A01", Size: "M"}, {Name: "A02", Size: "M"}}, Capabilities: []string{"pos"}})
	require.NoError(t, err)
	_, err = h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "PAY-1", Model: "paybox-2", Segment: "test"})
	require.NoError(t, err)
	submitState(t, h, "PAY-1", 1, `"A01":{"door":"closed","occupied":false},"A02":{"door":"closed","occupied":false}`)
	p, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PAY-1", Size: "M", AmountDue: &apiclient.Money{Amount: 1250, Currency: "EUR"},
		Recipient: apiclient.Recipient{Phone: "+4917011111"}}, "")
	require.NoError(t, err)
	now := time.Now().UTC()
	_, err = h.App.Pool.Exec(ctx, `INSERT INTO parcels_payments (id, parcel_id, locker_id, kind, amount, currency, state, reason, terminal_ref, refund_of, created_at, updated_at, decided_at) VALUES
		('pay-a', $1, 'PAY-1', 'charge', 1250, 'EUR', 'declined', 'declined: insufficient_funds', '', NULL, $2, $2, $2),
		('pay-b', $1, 'PAY-1', 'charge', 1250, 'EUR', 'approved', '', 'T-77', NULL, $3, $3, $3)`, p.ID, now.Add(-2*time.Minute), now.Add(-time.Minute))
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(ctx, `INSERT INTO parcels_payments (id, parcel_id, locker_id, kind, amount, currency, state, terminal_ref, refund_of, created_at, updated_at, decided_at)
		VALUES ('ref-c', $1, 'PAY-1', 'refund', 1250, 'EUR', 'approved', 'T-77', 'pay-b', $2, $2, $2)`, p.ID, now)
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(ctx, `INSERT INTO outbox_messages (id, channel, template, state, attempts, sent_at, rendered, about) VALUES
		('pay-b', 'fiscal', 'receipt.sale', 'sent', 2, now(), 'R-7', $1), ('ref-c', 'fiscal', 'receipt.refund', 'pending', 3, NULL, NULL, $1)`, p.ID)
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(ctx, `UPDATE outbox_messages SET last_error = 'HTTP 503: busy', next_attempt_at = now() + interval '1 hour' WHERE id = 'ref-c'`)
	require.NoError(t, err)

	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.open("#/parcels/" + p.ID)
	b.waitJS("the payments panel", 10*time.Second, `document.querySelectorAll('#p-payments tbody tr').length === 3`)
	require.Contains(t, b.text("#p-facts"), "12.50 EUR")
	pays := b.text("#p-payments")
	for _, want := range []string{"pay-a", "declined", "insufficient_funds", "pay-b", "approved", "T-77", "sale sent · R-7",
		"ref-c", "refund", "of pay-b", "refund pending · 3 attempts: HTTP 503: busy"} {
		require.Contains(t, pays, want)
	}
	b.screenshot("parcel-payments")
}
