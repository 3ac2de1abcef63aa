package dashboardtest_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/video"
)

// TestCameraViewer: an on-call user opens a locker's page and watches its
// camera in Chromium: the browser's WHEP offer goes to the hub, the hub
// starts the simulated locker's stream over MQTT, the <video> plays (frames
// decoded by the browser, per getStats and the element's playback quality),
// the live indicator and the stats show. Stopping leaves (DELETE) and the
// upstream stops after the idle timeout.
func TestCameraViewer(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.Video.IdleTimeout = time.Second })
	sim(t, h, "CAM-", "test", 1, func(c *lockersim.Config) { c.VideoInterface = "lo" })
	locker := "CAM-00001"
	pw := h.AddUser("pager", access.RoleOnCall)

	b := newBrowser(t, h, 1366, 900)
	b.login("pager", pw)
	b.open("#/lockers/" + locker)
	b.run("the camera panel", chromedp.WaitVisible(chromedp.CSS("#v-watch")))
	b.run("watch live", chromedp.Click(chromedp.CSS("#v-watch")))
	took := b.waitJS("the video plays", 30*time.Second, `document.querySelector('#v-live').dataset.state === 'live' &&
		Number(document.querySelector('#l-video').dataset.framesDecoded || 0) > 15 &&
		document.querySelector('#v-video').getVideoPlaybackQuality().totalVideoFrames > 15 &&
		document.querySelector('#v-video').videoWidth === 320`)
	t.Logf("video playing %s after the click", took.Round(time.Millisecond))
	b.waitJS("stats shown", 5*time.Second, `document.querySelector('#v-fps').textContent !== '—'`)
	b.screenshot("camera")
	if got := h.App.Video.Status(locker); got.Viewers != 1 || !got.Ready {
		t.Fatalf("hub: %+v, want one viewer of a ready stream", got)
	}

	b.run("stop", chromedp.Click(chromedp.CSS("#v-stop")))
	b.waitJS("not watching", 5*time.Second, `document.querySelector('#v-live').dataset.state === 'off'`)
	hubtest.Eventually(t, 5*time.Second, "the viewer left the hub", func() bool { return h.App.Video.Status(locker).Viewers == 0 })
	hubtest.Eventually(t, 5*time.Second, "the upstream stopped", func() bool { return !h.App.Video.Status(locker).Streaming })
}

// TestRecordingPlays: a tamper alarm records a clip; on the locker page it
// is listed, and Chromium plays the WebM (frames decoded, 320 px wide) and
// can seek in it.
func TestRecordingPlays(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) {
		c.Video.IdleTimeout = time.Second
		c.Video.Recordings.Duration = 3 * time.Second
	})
	s := sim(t, h, "REC-", "test", 1, func(c *lockersim.Config) { c.VideoInterface = "lo" })
	locker := "REC-00001"
	s.Lockers()[0].Tamper()
	hubtest.Eventually(t, 30*time.Second, "a finished clip", func() bool {
		list, err := h.App.Recordings.List(t.Context(), video.Filter{LockerID: locker})
		return err == nil && len(list) == 1 && list[0].State == video.StateDone
	})
	pw := h.AddUser("tech", access.RoleTechnician)
	b := newBrowser(t, h, 1366, 900)
	b.login("tech", pw)
	b.open("#/lockers/" + locker)
	b.run("the clip is listed", chromedp.WaitVisible(chromedp.CSS(`#v-recordings li[data-state=done] .v-play`)))
	b.run("play it", chromedp.Click(chromedp.CSS(`#v-recordings .v-play`)))
	b.waitJS("the clip plays", 15*time.Second, `(() => { const v = document.querySelector('#v-recordings video');
		return !!v && v.videoWidth === 320 && v.getVideoPlaybackQuality().totalVideoFrames > 10 && v.duration > 2 })()`)
	b.waitJS("it seeks", 10*time.Second, `(() => { const v = document.querySelector('#v-recordings video');
		if (!v.dataset.sought) { v.currentTime = 1.5; v.dataset.sought = '1'; } return v.seekable.length > 0 && !v.seeking && v.currentTime >= 1.5 })()`)
	b.screenshot("recording")
}
