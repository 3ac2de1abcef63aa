package dashboardtest_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/hubtest"
)

// TestAlarmsPage: an on-call user sees the live feed of a forced door and a
// tamper alarm, acknowledges one with a note and silences the other from
// their rows; the silence is listed and can be ended; the locker page shows
// the locker's alarm history.
func TestAlarmsPage(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	h.AddLocker("AX-1")
	// Events as the ingest stores them: the alarms' trigger takes them.
	_, err := h.App.Pool.Exec(ctx, `INSERT INTO fleet_events (locker_id, event_id, boot, seq, ts, type, cell, received_at) VALUES
		('AX-1', 'e-1', 1, 1, now(), 'door_opened', 'A01', now()), ('AX-1', 'e-2', 1, 2, now(), 'tamper', '', now())`)
	require.NoError(t, err)
	pw := h.AddUser("pager", access.RoleOnCall)

	b := newBrowser(t, h, 1366, 860)
	b.login("pager", pw)
	b.run("alarms link", chromedp.WaitVisible(chromedp.CSS("#nav-alarms")), chromedp.Click(chromedp.CSS("#nav-alarms")))
	b.waitJS("both alarms listed, firing", 15*time.Second,
		`document.querySelectorAll('#a-rows tr.a-row').length === 2 && document.querySelectorAll('#a-rows .a-state[data-state=firing]').length === 2`)
	require.Contains(t, b.text(`tr.a-row[data-kind="door_forced"]`), "AX-1 · A01")
	require.Contains(t, b.text(`tr.a-row[data-kind="door_forced"]`), "Critical")
	b.screenshot("alarms")

	b.run("acknowledge the forced door", chromedp.Click(chromedp.CSS(`tr.a-row[data-kind="door_forced"] .a-ack`)))
	b.setValue(".a-form input[name=note]", "on my way")
	b.run("submit", chromedp.Click(chromedp.CSS(".a-form button[type=submit]")))
	b.waitJS("acknowledged by pager", 10*time.Second,
		`(document.querySelector('tr.a-row[data-kind="door_forced"]')||{innerText:''}).innerText.includes('by pager')`)
	list, err := h.App.Alarms.List(ctx, alarms.Filter{Kind: alarms.KindDoorForced})
	require.NoError(t, err)
	require.Equal(t, alarms.StateAcknowledged, list[0].State)
	require.Equal(t, "on my way", list[0].AckNote)

	b.run("silence the tamper alarm", chromedp.Click(chromedp.CSS(`tr.a-row[data-kind="tamper"] .a-silence`)))
	b.setValue(".a-form input[name=note]", "technician on site")
	b.run("submit", chromedp.Click(chromedp.CSS(".a-form button[type=submit]")))
	b.waitJS("silenced, and the silence listed", 10*time.Second,
		`!!document.querySelector('tr.a-row[data-kind="tamper"] .a-mark[data-mark=silenced]') && document.querySelector('#a-silences').innerText.includes('technician on site')`)
	b.screenshot("alarms-silenced")
	b.run("end the silence", chromedp.Click(chromedp.CSS("#a-silences .a-unsilence")))
	b.waitJS("no silences", 10*time.Second, `document.querySelector('#a-silences').innerText.includes('No silences') && !document.querySelector('.a-mark[data-mark=silenced]')`)

	b.open("#/lockers/AX-1")
	b.waitJS("the locker's alarm history", 15*time.Second, `document.querySelectorAll('#l-alarms li[data-id]').length === 2`)
	require.Contains(t, b.text("#l-alarms"), "Door forced")
}
