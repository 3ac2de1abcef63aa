package dashboardtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/outbox"
	"github.com/lockerhub/lockerhub/pg"
)

// TestTemplatesEditor: an admin opens the Templates page, picks the SMS of
// "parcel ready" for a carrier and a language, types: the preview follows
// the text as it is typed; an unknown field shows its error inline and a
// save is refused with nothing stored; the fixed text saves, is what the hub
// sends for that carrier and language, and "Revert to default" removes it.
// A technician sees the page read-only.
func TestTemplatesEditor(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	tpl := h.App.Outbox.Templates()
	b := newBrowser(t, h, 1366, 900)
	b.login("admin", h.AdminPassword)
	b.run("templates link", chromedp.WaitVisible(chromedp.CSS("#nav-templates")), chromedp.Click(chromedp.CSS("#nav-templates")))
	b.waitJS("the built-in text and its preview", 15*time.Second,
		`document.querySelector('#t-body').value.includes('Pickup code: {{.code}}') && document.querySelector('#t-preview').innerText.includes('Pickup code: 48213907')`)
	require.Contains(t, b.text("#t-source"), "built-in")
	require.Contains(t, b.text("#t-fields"), "{{.deadline}}")

	b.setValue("#t-carrier", "dhl")
	b.setValue("#t-language", "de")
	b.waitJS("still the built-in for dhl/de", 10*time.Second, `document.querySelector('#t-source').dataset.key === 'parcel_ready/sms/dhl/de' && document.querySelector('#t-source').innerText.includes('built-in')`)
	b.setValue("#t-body", "Abholcode {{.code}} in {{.address}}")
	b.waitJS("live preview of what is typed", 10*time.Second,
		`document.querySelector('#t-preview').innerText.includes('Abholcode 48213907 in Hauptstraße 5, 10115 Berlin')`)

	b.setValue("#t-body", "Abholcode {{.pickup_code}}")
	b.waitJS("the unknown field shows inline", 10*time.Second,
		`document.querySelector('#t-error').dataset.code === 'template_unknown_field' && document.querySelector('#t-error').innerText.includes('pickup_code') && document.querySelector('#t-body').getAttribute('aria-invalid') === 'true'`)
	b.screenshot("templates-error")
	b.run("save the bad text", chromedp.Click(chromedp.CSS("#t-save")))
	b.waitJS("refused", 10*time.Second, `document.querySelector('#t-msg').innerText.includes('Not saved')`)
	_, err := tpl.Get(ctx, outbox.Key{Event: "parcel_ready", Channel: "sms", Carrier: "dhl", Language: "de"})
	require.ErrorIs(t, err, outbox.ErrNotFound, "nothing stored")

	b.setValue("#t-body", "Abholcode {{.code}}, bis {{.deadline}}")
	b.waitJS("error gone, preview back", 10*time.Second,
		`!document.querySelector('#t-error').dataset.code && document.querySelector('#t-preview').innerText.includes('Abholcode 48213907, bis')`)
	b.run("save", chromedp.Click(chromedp.CSS("#t-save")))
	b.waitJS("saved and listed", 10*time.Second,
		`document.querySelector('#t-msg').innerText.includes('Saved') && document.querySelector('#t-source').dataset.stored === 'yes' && document.querySelectorAll('#t-rows tr.t-row[data-carrier="dhl"][data-language="de"]').length === 1`)
	b.screenshot("templates")
	eff, err := tpl.Resolve(ctx, "parcel_ready", "sms", "dhl", "de-AT")
	require.NoError(t, err)
	require.Equal(t, "carrier+language", eff.Source)
	require.Equal(t, "Abholcode {{.code}}, bis {{.deadline}}", eff.Body)

	// The technician: the same page, read-only.
	pw := h.AddUser("tech", access.RoleTechnician)
	tb := newBrowser(t, h, 1366, 900)
	tb.login("tech", pw)
	tb.open("#/templates?carrier=dhl&language=de")
	tb.waitJS("the stored text, read-only", 15*time.Second,
		`document.querySelector('#t-body').value.startsWith('Abholcode') && document.querySelector('#t-body').readOnly && !document.querySelector('#t-save')`)

	b.run("confirm dialogs say yes", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.run("revert", chromedp.Click(chromedp.CSS("#t-revert")))
	b.waitJS("reverted", 10*time.Second,
		`document.querySelector('#t-msg').innerText.includes('Reverted') && document.querySelector('#t-source').innerText.includes('built-in') && document.querySelector('#t-body').value.includes('Pickup code')`)
	_, err = tpl.Get(ctx, outbox.Key{Event: "parcel_ready", Channel: "sms", Carrier: "dhl", Language: "de"})
	require.ErrorIs(t, err, outbox.ErrNotFound)
}

// TestParcelPageNotifications: the parcel page lists what was sent about the
// parcel, through which channel, whether it was delivered and the text.
func TestParcelPageNotifications(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	h.AddLocker("PN-1")
	for i := 1; i <= 2; i++ {
		submitState(t, h, "PN-1", uint64(i), fmt.Sprintf(`"A%02d":{"door":"closed","occupied":false}`, i))
	}
	p, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "PN-1", Size: "M", Reference: "TRK-1",
		Recipient: apiclient.Recipient{Phone: "+4917000009", Email: "ann@example.com"}}, "")
	require.NoError(t, err)
	require.NoError(t, pg.Tx(ctx, h.App.Pool, func(tx pgx.Tx) error {
		for _, ch := range []string{"sms", "email"} {
			to := "+4917000009"
			if ch == "email" {
				to = "ann@example.com"
			}
			if err := outbox.Enqueue(ctx, tx, outbox.Message{ID: p.ID + ":parcel_ready:" + ch, Channel: ch, To: to, Template: "parcel_ready",
				About: p.ID, Data: map[string]any{"code": "1", "address": "a", "deadline": "d"}}); err != nil {
				return err
			}
		}
		return nil
	}))
	// The SMS went out (as the dispatcher records it); the e-mail waits.
	_, err = h.App.Pool.Exec(ctx, `UPDATE outbox_messages SET state = 'sent', sent_at = now(), rendered = 'Your parcel is ready' WHERE id = $1`, p.ID+":parcel_ready:sms")
	require.NoError(t, err)

	b := newBrowser(t, h, 1366, 900)
	b.login("admin", h.AdminPassword)
	b.open("#/parcels/" + p.ID)
	b.waitJS("both notifications listed", 15*time.Second, `document.querySelectorAll('#pn-rows tr.pn-row').length === 2`)
	sms := b.text(`tr.pn-row[data-channel="sms"]`)
	for _, want := range []string{"SMS", "+4917000009", "Sent", "Your parcel is ready", "Parcel ready"} {
		require.Contains(t, sms, want)
	}
	require.Contains(t, b.text(`tr.pn-row[data-channel="email"]`), "Pending")
	require.Contains(t, b.text("#p-history"), "Reserved", "the page above is unchanged")
}
