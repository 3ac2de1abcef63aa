package dashboardtest_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/alarms"
	"github.com/lockerhub/lockerhub/audit"
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

// TestAlarmRulesEditor: a technician adds a per-segment free-cells rule on
// the alarms page, sees a refused rule's reason with nothing changed, switches
// the rule off and removes it; each accepted change is what the hub runs and
// is in the audit log. An on-call user sees the rules but no editor.
func TestAlarmRulesEditor(t *testing.T) {
	h := hubtest.Start(t)
	ctx := t.Context()
	pw := h.AddUser("tech", access.RoleTechnician)

	b := newBrowser(t, h, 1366, 900)
	b.login("tech", pw)
	b.open("#/alarms")
	b.waitJS("the rules section, empty", 15*time.Second, `(document.querySelector('#r-rows')||{innerText:''}).innerText.includes('No rules')`)

	b.selectValue("#r-kind", "free_cells_low")
	b.waitJS("the kind's default shown", 5*time.Second, `document.querySelector('#r-default').innerText.includes('threshold 2 cells')`)
	b.selectValue("#r-scope", "segment")
	b.setValue("#r-value", "berlin")
	b.setValue("#r-threshold", "5")
	b.run("add the rule", chromedp.Click(chromedp.CSS("#r-save")))
	b.waitJS("the rule listed", 10*time.Second, `document.querySelectorAll('#r-rows tr.r-row[data-kind=free_cells_low]').length === 1`)
	rules := h.App.Alarms.Rules()
	require.Len(t, rules, 1)
	require.Equal(t, "berlin", rules[0].Segment)
	require.Equal(t, 5.0, *rules[0].Threshold)
	b.screenshot("alarm-rules")

	// An event has no threshold: the hub refuses, the form keeps the input.
	b.selectValue("#r-kind", "door_forced")
	b.selectValue("#r-scope", "fleet")
	b.setValue("#r-threshold", "3")
	b.run("add a refused rule", chromedp.Click(chromedp.CSS("#r-save")))
	b.waitJS("the reason shown", 10*time.Second, `(document.querySelector('#r-error')||{innerText:''}).innerText.includes('has no threshold')`)
	require.Len(t, h.App.Alarms.Rules(), 1)
	kept, err := eval[string](b, `document.querySelector('#r-threshold').value`)
	require.NoError(t, err)
	require.Equal(t, "3", kept)

	b.run("edit the rule", chromedp.Click(chromedp.CSS("#r-rows tr.r-row .r-edit")))
	b.waitJS("the form holds the rule", 5*time.Second, `document.querySelector('#r-value').value === 'berlin' && document.querySelector('#r-save').innerText.includes('Save')`)
	b.selectValue("#r-enabled", "false")
	b.run("save", chromedp.Click(chromedp.CSS("#r-save")))
	b.waitJS("switched off", 10*time.Second, `(document.querySelector('#r-rows tr.r-row')||{innerText:''}).innerText.includes('off')`)
	rules = h.App.Alarms.Rules()
	require.Len(t, rules, 1)
	require.False(t, rules[0].Enabled)

	b.run("remove the rule", chromedp.Click(chromedp.CSS("#r-rows tr.r-row .r-remove")))
	b.waitJS("no rules", 10*time.Second, `document.querySelector('#r-rows').innerText.includes('No rules')`)
	require.Empty(t, h.App.Alarms.Rules())

	page, err := audit.NewStore(h.App.Pool).List(ctx, audit.Filter{ObjectType: "alarm_rules"})
	require.NoError(t, err)
	require.Len(t, page.Records, 3, "add, switch off, remove")
	require.Equal(t, "tech", page.Records[0].Actor.Name)

	opw := h.AddUser("pager", access.RoleOnCall)
	b.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.login("pager", opw)
	b.open("#/alarms")
	b.waitJS("the rules section, read-only", 15*time.Second, `!!document.querySelector('#r-rows') && !document.querySelector('#r-form')`)
}
