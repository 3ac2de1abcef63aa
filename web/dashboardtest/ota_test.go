package dashboardtest_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/ota"
)

// TestFirmwarePage: a rollout that paused itself (one of the three canary
// lockers of six failed to install) is listed with its progress; its waves,
// per-state counts, the failure with its reason and the failed locker are
// shown; an admin resumes it from the page (audited).
func TestFirmwarePage(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.OTA = ota.Config{Tick: 50 * time.Millisecond, Retries: -1} })
	sim(t, h, "FW-", "fw", 6, func(c *lockersim.Config) {
		c.OTA.InstallFail = lockersim.OTAFault{Lockers: map[string]bool{"FW-00001": true}}
	})
	ctx := context.Background()
	hubtest.Eventually(t, 10*time.Second, "firmware reported", func() bool {
		tw := h.App.Twins.Get("FW-00003")
		return tw != nil && tw.Reported.Firmware != ""
	})
	a, err := h.Admin.UploadArtifact(ctx, "2.0.0", nil, "spring release", bytes.NewReader(make([]byte, 4096)))
	require.NoError(t, err)
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 3, Order: "id"}})
	require.NoError(t, err)
	hubtest.Eventually(t, 20*time.Second, "paused by itself", func() bool {
		s, err := h.Admin.RolloutStatus(ctx, r.ID)
		return err == nil && s.State == "paused" && s.Counts["installed"] == 2
	})

	b := newBrowser(t, h, 1366, 860)
	b.login("admin", h.AdminPassword)
	b.run("firmware link", chromedp.WaitVisible(chromedp.CSS("#nav-ota")), chromedp.Click(chromedp.CSS("#nav-ota")))
	b.waitJS("the rollout listed, paused", 15*time.Second, `!!document.querySelector('tr.o-row .o-state[data-state=paused]')`)
	b.waitJS("its detail", 10*time.Second, `document.querySelectorAll('#o-waves tr').length === 3 && !!document.querySelector('#o-lockers tr[data-locker="FW-00001"]')`)
	require.Contains(t, b.text("#o-failures"), "install: injected install failure")
	require.Contains(t, b.text("#o-detail"), "2 of 6 installed")
	require.Contains(t, b.text("#o-detail"), "paused: 1 of 3 lockers of wave 1 failed")
	require.Contains(t, b.text("#o-artifacts"), "spring release")
	b.screenshot("firmware")

	b.run("resume", chromedp.Click(chromedp.CSS(`.o-act[data-action=resume]`)))
	hubtest.Eventually(t, 10*time.Second, "resume audited", func() bool {
		var n int
		err := h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE object_type = 'ota_rollout' AND action = 'resume' AND actor_name = 'admin'`).Scan(&n)
		return err == nil && n == 1
	})
}
