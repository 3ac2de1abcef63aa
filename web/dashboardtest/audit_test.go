package dashboardtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestAuditPage: a change made through the API shows on the audit page
// with who made it and what changed, the diff opens on a click, filters
// narrow the list and the CSV link carries them; a non-admin has no Audit
// link.
func TestAuditPage(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "AP-1", Cells: 4, Address: "Harbour Road 1"})
	require.NoError(t, err)
	_, err = h.Admin.UpdateLocker(ctx, "AP-1", map[string]any{"address": "Harbour Road 99"})
	require.NoError(t, err)
	_, err = h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "AP-2", Cells: 2})
	require.NoError(t, err)

	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.run("audit link", chromedp.WaitVisible(chromedp.CSS("#nav-audit")), chromedp.Click(chromedp.CSS("#nav-audit")))
	b.waitJS("the update listed with who and what", 10*time.Second,
		`[...document.querySelectorAll('tr.a-row')].some(r => r.innerText.includes('AP-1') && r.innerText.includes('Update') && r.innerText.includes('admin') && r.innerText.includes('token'))`)
	order, err := eval[string](b, `[...document.querySelectorAll('tr.a-row .a-object')].map(e => e.innerText).join(',')`)
	require.NoError(t, err)
	require.Regexp(t, `session admin,locker AP-2,locker AP-1,locker AP-1`, order, "newest first")

	b.setValue("#a-object_id", "AP-1")
	b.waitJS("filtered to AP-1", 5*time.Second,
		`document.querySelectorAll('tr.a-row').length === 2 && [...document.querySelectorAll('tr.a-row')].every(r => r.innerText.includes('AP-1'))`)
	require.Contains(t, b.text("tr.a-row .a-summary"), "Harbour Road 1 → Harbour Road 99")
	href, err := eval[string](b, `document.querySelector('#a-csv').getAttribute('href')`)
	require.NoError(t, err)
	require.Contains(t, href, "format=csv")
	require.Contains(t, href, "object_id=AP-1")

	b.run("open the diff", chromedp.Click(chromedp.CSS("tr.a-row")))
	b.waitJS("diff shown", 5*time.Second, `!!document.querySelector('.a-diff tr.changed')`)
	diff := b.text(".a-diff tr.changed")
	require.Contains(t, diff, "address")
	require.Contains(t, diff, "Harbour Road 1")
	require.Contains(t, diff, "Harbour Road 99")
	require.Contains(t, b.text(".a-meta"), "127.0.0.1")
	b.screenshot("audit")

	// The filters live in the URL: a reload keeps them.
	b.run("reload", chromedp.Reload())
	b.waitJS("still filtered after a reload", 10*time.Second,
		`document.querySelector('#a-object_id') && document.querySelector('#a-object_id').value === 'AP-1' && document.querySelectorAll('tr.a-row').length === 2`)

	b.selectValue("#a-action", "create")
	b.waitJS("only the create", 5*time.Second, `document.querySelectorAll('tr.a-row').length === 1`)

	// A viewer has no Audit link.
	pw := h.AddUser("vic", "viewer")
	b.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.login("vic", pw)
	hidden, err := eval[bool](b, `document.querySelector('#nav-audit').hidden`)
	require.NoError(t, err)
	require.True(t, hidden)
}
