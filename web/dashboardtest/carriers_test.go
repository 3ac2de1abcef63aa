package dashboardtest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestCarriersPage: the Carriers page shows each carrier's lockers and cells
// used / quota per size, and each quota with what is held and still free;
// an admin sets a quota from the page and the numbers follow; a courier
// sees its own carrier only.
func TestCarriersPage(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	h.AddLocker("CP-1") // 10 M cells, segment "test"
	h.AddLocker("CP-2")
	for i := 1; i <= 6; i++ {
		submitState(t, h, "CP-1", uint64(i), fmt.Sprintf(`"A%02d":{"door":"closed","occupied":false}`, i))
	}
	for _, id := range []string{"dhl", "ups"} {
		_, err := h.Admin.CreateCarrier(ctx, apiclient.NewCarrier{ID: id, Name: id + " Parcel"})
		require.NoError(t, err)
	}
	_, err := h.Admin.SetCarrierQuotas(ctx, "dhl", "CP-1", map[string]int{"M": 3})
	require.NoError(t, err)
	_, err = h.Admin.AssignCarrier(ctx, "ups", "segments", "test")
	require.NoError(t, err)
	for i := range 2 {
		_, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "CP-1", Size: "M", Carrier: "dhl",
			Recipient: apiclient.Recipient{Phone: fmt.Sprintf("+491700000%02d", i)}}, "")
		require.NoError(t, err)
	}
	_, err = h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "CP-1", Size: "M", Carrier: "ups", Recipient: apiclient.Recipient{Phone: "+4917000099"}}, "")
	require.NoError(t, err)

	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.run("carriers link", chromedp.WaitVisible(chromedp.CSS("#nav-carriers")), chromedp.Click(chromedp.CSS("#nav-carriers")))
	b.waitJS("both carriers listed", 10*time.Second, `document.querySelectorAll('#cr-rows tr[data-carrier]').length === 2`)
	require.Equal(t, "1", b.text(`tr[data-carrier="dhl"] .cr-lockers`), "dhl: the locker of its quota")
	require.Equal(t, "2 / 3", b.text(`tr[data-carrier="dhl"] td[data-size="M"]`))
	require.Equal(t, "2", b.text(`tr[data-carrier="ups"] .cr-lockers`), "ups: the segment's two lockers")
	require.Equal(t, "1", b.text(`tr[data-carrier="ups"] td[data-size="M"]`), "no quota: cells held")
	require.Equal(t, "test", b.text(`tr[data-carrier="ups"] td:nth-child(3)`))
	q := `#q-rows tr[data-carrier="dhl"][data-locker="CP-1"][data-size="M"]`
	require.Equal(t, "2", b.text(q+" .q-used"))
	require.Equal(t, "1", b.text(q+" .q-free"), "one cell of its quota left (3 free cells)")
	b.screenshot("carriers")

	// The admin gives dhl a quota of 2: used up, nothing free for it.
	b.setValue("#q-carrier", "dhl")
	b.setValue("#q-locker", "CP-1")
	b.setValue("#q-M", "2")
	b.run("set quota", chromedp.Click(chromedp.CSS(`#cr-quota button[type="submit"]`)))
	b.waitJS("the page follows", 10*time.Second, `document.querySelector('tr[data-carrier="dhl"] td[data-size="M"]').textContent.trim() === '2 / 2'`)
	require.Equal(t, "0", b.text(q+" .q-free"))
	_, err = h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "CP-1", Size: "M", Carrier: "dhl", Recipient: apiclient.Recipient{Phone: "+4917000098"}}, "")
	require.True(t, apiclient.IsCode(err, "carrier_quota"), "%v", err)
	// Over the locker's cells: the page says why.
	b.setValue("#q-M", "11")
	b.run("too many", chromedp.Click(chromedp.CSS(`#cr-quota button[type="submit"]`)))
	b.waitJS("refused", 10*time.Second, `(document.querySelector('#cr-msg .error')?.textContent || '').includes('has 10 cells of size M')`)

	// A courier of ups: its own carrier only, and no admin forms.
	pw := access.RandomPassword()
	_, err = h.App.Access.AddUser(ctx, access.NewUser{Username: "uli", Password: pw, Role: access.RoleCourier, Carrier: "ups"})
	require.NoError(t, err)
	b2 := newBrowser(t, h, 1366, 860)
	b2.login("uli", pw)
	b2.open("#/carriers")
	b2.waitJS("ups only", 10*time.Second, `document.querySelectorAll('#cr-rows tr[data-carrier]').length === 1 && !!document.querySelector('tr[data-carrier="ups"]')`)
	ok, err := eval[bool](b2, `!document.querySelector('#cr-quota') && !document.querySelector('#cr-add')`)
	require.NoError(t, err)
	require.True(t, ok)
}
