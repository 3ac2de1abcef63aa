//go:build bench

package dashboardtest_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// BenchmarkFleetTenThousandLockers (make bench): the fleet page with 10,000
// registered lockers, while simulated lockers keep changing doors. It reports
// how long the first full list takes, how many rows exist in the DOM (only the
// visible ones should), how long a search takes, and the page's long tasks
// and worst frame gap under a stream of deltas. The scenario runs once,
// whatever b.N.
func BenchmarkFleetTenThousandLockers(bm *testing.B) {
	if bm.N > 1 {
		bm.Skip("one run is the measurement")
	}
	t := bm
	const n = 10_000
	h := hubtest.Start(t)
	var csv bytes.Buffer
	csv.WriteString("id,cells,address,segments,carriers\n")
	segs := []string{"north", "south", "east", "west"}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&csv, "L-%05d,20,%d Harbour Road Bay %d,%s,dhl|ups\n", i, i, i%97, segs[i%4])
	}
	req, err := http.NewRequest("POST", h.HTTPURL+"/api/v1/lockers/import", &csv)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300, "import")
	s := sim(t, h, "Z-", "north", 20)

	b := newBrowser(t, h, 1366, 860)
	start := time.Now()
	b.login("admin", h.AdminPassword)
	b.waitJS("10,020 lockers listed", 30*time.Second, `document.querySelector('#count').innerText === "10,020 lockers"`)
	load := time.Since(start)
	t.Logf("login to a full list of 10,020 lockers: %s", load.Round(time.Millisecond))
	rowsInDOM, err := eval[int](b, `document.querySelectorAll('[data-locker]').length`)
	require.NoError(t, err)
	t.Logf("rows in the DOM: %d", rowsInDOM)
	require.Less(t, rowsInDOM, 100, "the list is virtualised")

	// Scroll to the middle: the rows there render.
	_, err = eval[bool](b, `(() => { const v = document.querySelector('#vlist'); v.scrollTop = v.scrollHeight / 2; return true })()`)
	require.NoError(t, err)
	b.waitJS("rows of the middle rendered", 2*time.Second, `!!document.querySelector('[data-locker="L-05012"]')`)

	// Watch the main thread while lockers change.
	_, err = eval[bool](b, `(() => {
		window.__long = []; window.__gap = 0; let last = performance.now();
		new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration) }).observe({type: 'longtask', buffered: false});
		const tick = (t) => { window.__gap = Math.max(window.__gap, t - last); last = t; requestAnimationFrame(tick) };
		requestAnimationFrame(tick);
		return true })()`)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	changes := 0
	for ctx.Err() == nil {
		l := s.Lockers()[rand.IntN(len(s.Lockers()))]
		cell := fmt.Sprintf("A%02d", 1+rand.IntN(10))
		if l.OpenDoor(cell, "service:bench") != nil {
			_ = l.CloseDoor(cell)
		}
		changes++
		time.Sleep(5 * time.Millisecond)
	}
	long, err := eval[[]float64](b, `window.__long`)
	require.NoError(t, err)
	gap, err := eval[float64](b, `window.__gap`)
	require.NoError(t, err)
	worst := 0.0
	for _, d := range long {
		worst = max(worst, d)
	}
	t.Logf("%d door changes in 5 s: %d long tasks (worst %.0f ms), worst frame gap %.0f ms", changes, len(long), worst, gap)

	start = time.Now()
	b.setValue("#f-q", "L-0999")
	b.waitJS("search narrowed the list", 5*time.Second, `document.querySelector('#count').innerText === "10 lockers"`)
	search := time.Since(start)
	t.Logf("search over 10,020 lockers: %s", search.Round(time.Millisecond))
	bm.ReportMetric(float64(load.Milliseconds()), "ms-login-to-list")
	bm.ReportMetric(float64(search.Milliseconds()), "ms-search")
	bm.ReportMetric(gap, "ms-worst-frame-gap")
	bm.ReportMetric(float64(len(long)), "long-tasks")
	bm.ReportMetric(float64(rowsInDOM), "rows-in-DOM")
	b.screenshot("fleet-10k")
}
