package dashboardtest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestUsersPage: an admin adds a user (the hub makes up the password, shown
// once) and disables it, which ends its session at once; a viewer sees no
// Users link and #/users shows the fleet.
func TestUsersPage(t *testing.T) {
	h := hubtest.Start(t)
	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.run("users link", chromedp.WaitVisible(chromedp.CSS("#nav-users")), chromedp.Click(chromedp.CSS("#nav-users")))
	b.waitJS("the users listed", 10*time.Second, `!!document.querySelector('tr[data-user="admin"]')`)

	b.setValue("#u-name", "rita")
	b.selectValue("#u-role", "technician")
	b.setValue("#u-carrier", "dhl")
	b.run("add", chromedp.Click(chromedp.CSS("#u-submit")))
	b.waitJS("rita listed", 10*time.Second, `!!document.querySelector('tr[data-user="rita"]')`)
	require.Contains(t, b.text(`tr[data-user="rita"]`), "technician")
	require.Contains(t, b.text(`tr[data-user="rita"]`), "dhl")
	pw := b.text(".u-password")
	require.Len(t, pw, 24, "the made-up password is shown once")
	b.screenshot("users")

	rita := h.Login("rita", pw)
	b.run("disable rita",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`tr[data-user="rita"] button[data-act="disable"]`)))
	b.waitJS("rita disabled", 10*time.Second, `document.querySelector('tr[data-user="rita"]').classList.contains('u-disabled')`)
	resp, err := rita.Client.Get(h.HTTPURL + "/api/v1/lockers")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "her session ended at once")
	require.Empty(t, b.text(`tr[data-user="admin"] button`), "an admin cannot disable itself here")

	// An API client: its token is shown once and works until it is revoked.
	b.setValue("#c-name", "shop")
	b.setValue("#c-carrier", "dhl")
	b.run("parcels:write too", chromedp.Click(chromedp.CSS(`input[value="parcels:write"]`)))
	b.run("add client", chromedp.Click(chromedp.CSS("#c-submit")))
	b.waitJS("shop listed", 10*time.Second, `!!document.querySelector('tr[data-client="shop"]')`)
	require.Contains(t, b.text(`tr[data-client="shop"]`), "lockers:read, parcels:write")
	tok := b.text(".c-token")
	_, err = apiclient.New(h.HTTPURL, tok).Lockers(t.Context())
	require.NoError(t, err, "the token shown works")
	b.screenshot("users-clients")

	// Its reservation deadline, and its delivery log with a replay.
	b.run("set the reservation time",
		chromedp.Evaluate[chromedp.Void](`window.prompt = () => "24"`),
		chromedp.Click(chromedp.CSS(`tr[data-client="shop"] button[data-act="reservation"]`)))
	b.waitJS("24 h shown", 10*time.Second, `document.querySelector('tr[data-client="shop"] .c-reservation').innerText.includes('24 h')`)
	cs, err := h.Admin.APIClients(t.Context())
	require.NoError(t, err)
	var shopID int64
	for _, c := range cs {
		if c.Name == "shop" {
			shopID = c.ID
			require.Equal(t, 24, c.ReservationHours)
		}
	}
	_, err = h.App.Pool.Exec(t.Context(), `INSERT INTO outbox_messages (id, channel, client_id, template, state, attempts, last_error, created_at)
		VALUES ('p-1:deposited', 'webhook', $1, 'parcel.deposited', 'failed', 3, 'refused: HTTP 410: gone', now())`, shopID)
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(t.Context(), `INSERT INTO outbox_attempts (message_id, attempt, at, duration_ms, http_status, error, outcome) VALUES
		('p-1:deposited', 1, now(), 12, 503, 'HTTP 503: busy', 'retry'), ('p-1:deposited', 2, now(), 9, 410, 'HTTP 410: gone', 'failed')`)
	require.NoError(t, err)
	b.run("open the deliveries", chromedp.Click(chromedp.CSS(`tr[data-client="shop"] button[data-act="deliveries"]`)))
	b.waitJS("the delivery listed", 10*time.Second, `!!document.querySelector('tr[data-delivery="p-1:deposited"]')`)
	row := b.text(`tr[data-delivery="p-1:deposited"]`)
	require.Contains(t, row, "attempt 1 · retry (HTTP 503)")
	require.Contains(t, row, "attempt 2 · failed (HTTP 410)")
	b.screenshot("users-deliveries")
	b.run("replay", chromedp.Click(chromedp.CSS(`tr[data-delivery="p-1:deposited"] button[data-act="replay"]`)))
	b.waitJS("replayed", 10*time.Second, `document.querySelector('#d-msg').innerText.includes('queued again')`)
	ds, err := h.Admin.WebhookDeliveries(t.Context(), "shop", apiclient.DeliveryFilter{})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, 1, ds[0].Replays)

	b.run("revoke", chromedp.Click(chromedp.CSS(`tr[data-client="shop"] button[data-act="revoke"]`)))
	b.waitJS("shop revoked", 10*time.Second, `document.querySelector('tr[data-client="shop"]').classList.contains('u-disabled')`)
	_, err = apiclient.New(h.HTTPURL, tok).Lockers(t.Context())
	require.True(t, apiclient.IsCode(err, "unauthenticated"), "%v", err)

	// A viewer: no Users or Audit link, and #/users is the fleet.
	vpw := h.AddUser("vic", "viewer")
	b.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.login("vic", vpw)
	hidden, err := eval[bool](b, `document.querySelector('#nav-users').hidden && document.querySelector('#nav-audit').hidden`)
	require.NoError(t, err)
	require.True(t, hidden)
	b.open("#/users")
	b.waitJS("the fleet instead", 10*time.Second, `!!document.querySelector('#cards') && !document.querySelector('#u-add')`)
}

// TestCourierSeesItsCarriersLockers: in the browser a courier's fleet list
// and live updates hold only its carrier's lockers, and another locker's
// page is as for one that does not exist.
func TestCourierSeesItsCarriersLockers(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	for id, carriers := range map[string][]string{"C-dhl": {"dhl"}, "C-ups": {"ups"}} {
		_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: id, Cells: 4, Carriers: carriers})
		require.NoError(t, err)
	}
	pw := access.RandomPassword()
	_, err := h.App.Access.AddUser(ctx, access.NewUser{Username: "kurt", Password: pw, Role: access.RoleCourier, Carrier: "dhl"})
	require.NoError(t, err)
	b := newBrowser(t, h, 1366, 860)
	b.login("kurt", pw)
	b.waitJS("its locker listed", 10*time.Second, rowJS("C-dhl")+`!== ""`)
	require.Empty(t, b.text(`[data-locker="C-ups"]`), "another carrier's locker is not listed")
	hidden, err := eval[bool](b, `document.querySelector('#nav-users').hidden && document.querySelector('#nav-audit').hidden`)
	require.NoError(t, err)
	require.True(t, hidden)

	// A live change: its own locker's row updates, the other never appears.
	_, err = h.Admin.UpdateLocker(ctx, "C-ups", map[string]any{"address": "Ups Street 1"})
	require.NoError(t, err)
	_, err = h.Admin.UpdateLocker(ctx, "C-dhl", map[string]any{"address": "Dhl Street 1"})
	require.NoError(t, err)
	b.waitJS("its locker updated live", 10*time.Second, rowJS("C-dhl")+`.includes("Dhl Street 1")`)
	require.Empty(t, b.text(`[data-locker="C-ups"]`))

	b.open("#/lockers/C-ups")
	b.waitJS("as for a locker that does not exist", 10*time.Second, `document.body.innerText.includes("There is no locker C-ups.")`)
}
