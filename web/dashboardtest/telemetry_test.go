package dashboardtest_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

// publish sends each payload as one QoS 1 message of locker id over one
// MQTT 5 connection (Debian's mosquitto_pub -l) and waits for the PUBACKs.
func publish(t *testing.T, h *hubtest.Hub, cert hubtest.DeviceCert, id, kind string, payloads ...string) {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub is missing: scripts/ensure-tools.sh mosquitto-clients")
	}
	host, port, _ := strings.Cut(h.MQTTAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", cert.CAFile,
		"--cert", cert.CertFile, "--key", cert.KeyFile, "-i", id, "-q", "1", "-t", "lockers/"+id+"/"+kind, "-l", "-d")
	cmd.Stdin = strings.NewReader(strings.Join(payloads, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, len(payloads), strings.Count(string(out), "received PUBACK"), "every message acknowledged")
	require.NotContains(t, string(out), "RC:153", "every message valid")
}

type sentSample struct {
	ts                           time.Time
	temp, hum, batt, mains, rssi float64
	seq                          int
}

func (s sentSample) payload() string {
	return fmt.Sprintf(`{"boot":1,"seq":%d,"ts":%d,"m":{"temp_c":%g,"humidity_pct":%g,"battery_v":%g,"mains":%g,"rssi_dbm":%g,"door_cycles":%d}}`,
		s.seq, s.ts.UnixMilli(), s.temp, s.hum, s.batt, s.mains, s.rssi, s.seq/7)
}

// history makes six hours of samples a minute apart up to a minute ago, as a
// locker on the recommended 60 s interval sends them: temperature and
// humidity drifting, 40 minutes on battery (the voltage sags, then recovers),
// and half an hour without any sample (the locker was offline).
func history(now time.Time) []sentSample {
	r := rand.New(rand.NewPCG(1, 2))
	var out []sentSample
	batt := 13.4
	for i := 359; i >= 1; i-- {
		ts := now.Add(-time.Duration(i) * time.Minute)
		ago := time.Duration(i) * time.Minute
		if ago <= 4*time.Hour && ago > 3*time.Hour+30*time.Minute {
			continue // offline
		}
		mains := 1.0
		if ago <= 2*time.Hour && ago > 80*time.Minute {
			mains = 0
			batt -= 0.03
		} else {
			batt += (13.4 - batt) * 0.15
		}
		x := float64(i) / 360 * 2 * math.Pi
		out = append(out, sentSample{
			ts:    ts,
			seq:   len(out) + 2,
			temp:  round2(18 + 2.5*math.Sin(x) + r.NormFloat64()*0.15),
			hum:   round2(55 + 8*math.Cos(x) + r.NormFloat64()*0.8),
			batt:  round2(batt + r.NormFloat64()*0.01),
			mains: mains,
			rssi:  float64(-71 + r.IntN(9) - 4),
		})
	}
	return out
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// chartJS is an expression on the card of one metric in the Telemetry section.
func chartJS(metric, expr string) string {
	return fmt.Sprintf(`(() => { const c = document.querySelector('#telemetry .tchart[data-metric=%q]'); return !!c && (%s) })()`, metric, expr)
}

// TestLockerTelemetry: a locker's six hours of samples, sent over MQTT, show
// on its page as charts with the latest values as text; the range picker
// asks the hub again; the CSV link returns the chart's rows; a new sample
// shows without a reload; a locker without telemetry says so.
func TestLockerTelemetry(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("H-1")
	h.AddLocker("Q-1") // never sends telemetry
	now := time.Now().UTC().Truncate(time.Millisecond)
	sent := history(now)
	payloads := []string{fmt.Sprintf(`{"boot":1,"seq":1,"ts":%d,"full":true,"power":{"mains":true,"battery_v":13.4},"firmware":"1.4.2","cells":{"A01":{"door":"closed","lock":"locked","occupied":true},"A02":{"door":"closed","lock":"locked","occupied":false}}}`, now.Add(-6*time.Hour).UnixMilli())}
	publish(t, h, cert, "H-1", "state", payloads...)
	payloads = payloads[:0]
	for _, s := range sent {
		payloads = append(payloads, s.payload())
	}
	publish(t, h, cert, "H-1", "telemetry", payloads...)
	last := sent[len(sent)-1]

	b := newBrowser(t, h, 1366, 1500)
	b.login("admin", h.AdminPassword)
	start := time.Now()
	b.open("#/lockers/H-1")
	b.waitJS("five charts drawn (the main four, door cycles)", 10*time.Second, `document.querySelectorAll('#telemetry .t-plot canvas').length === 5`)
	b.waitJS("the latest temperature as text", 10*time.Second, chartJS("temp_c",
		fmt.Sprintf(`c.querySelector('.t-latest').innerText === %q`, strconv.FormatFloat(last.temp, 'f', 1, 64)+" °C")))
	t.Logf("latest temperature on the page %s after opening it", time.Since(start).Round(time.Millisecond))
	for metric, want := range map[string]string{
		"humidity_pct": strconv.FormatFloat(last.hum, 'f', 0, 64) + " %",
		"battery_v":    strconv.FormatFloat(last.batt, 'f', 2, 64) + " V",
		"rssi_dbm":     strconv.FormatFloat(last.rssi, 'f', 0, 64) + " dBm",
	} {
		b.waitJS(metric+" latest", 5*time.Second, chartJS(metric, fmt.Sprintf(`c.querySelector('.t-latest').innerText === %q`, want)))
	}
	b.waitJS("a chart of the metric beyond the main ones", 5*time.Second, chartJS("door_cycles",
		fmt.Sprintf(`c.closest('#t-extra') && c.querySelector('h3').innerText === "Door cycles" && c.querySelector('.t-latest').innerText === "%d" && c.dataset.points === "%d"`, last.seq/7, len(sent))))
	b.waitJS("every sample of the last 6 h drawn", 5*time.Second, chartJS("temp_c", fmt.Sprintf(`c.dataset.points === "%d"`, len(sent))))
	label, err := eval[string](b, `document.querySelector('#telemetry .tchart[data-metric="temp_c"] .t-plot').getAttribute('aria-label')`)
	require.NoError(t, err)
	require.Contains(t, label, "Temperature in °C, last 6 h")
	require.Contains(t, b.text(`#telemetry .tchart[data-metric="temp_c"] .t-span`), "Range, 6 h")
	require.Contains(t, b.text("#t-meta"), "Last 6 h")

	// Mains: the 40 minutes on battery are a segment of their own, in words too.
	b.waitJS("mains strip with the outage", 5*time.Second, `document.querySelectorAll('#telemetry .mains-strip .seg.m-off').length === 1`)
	require.Contains(t, b.text(`#telemetry .tmains .t-latest`), "Mains on")
	share := b.text(`#telemetry .tmains .t-share`)
	require.Regexp(t, `^On mains 8\d(\.\d)?% of the time with data$`, share)

	b.run("scroll to the charts", chromedp.Evaluate[chromedp.Void](`document.querySelector('#telemetry').scrollIntoView()`))
	time.Sleep(300 * time.Millisecond)
	b.screenshot("locker-telemetry")

	// The range picker: the page asks the hub, which picks the source.
	b.run("24 h", chromedp.Click(chromedp.CSS(`#t-range [data-range="24h"]`)))
	b.waitJS("24 h pressed and drawn", 10*time.Second, `document.querySelector('#t-range [data-range="24h"]').getAttribute('aria-pressed') === "true"`+
		` && document.querySelector('#t-meta').innerText.startsWith("Last 24 h") && `+chartJS("temp_c", `c.dataset.source !== ""`))
	source, err := eval[string](b, `document.querySelector('#telemetry .tchart[data-metric="temp_c"]').dataset.source`)
	require.NoError(t, err)
	var day struct {
		Source string `json:"source"`
	}
	require.NoError(t, h.Admin.JSON(context.Background(), "GET", "/api/v1/lockers/H-1/telemetry?metric=temp_c&from="+
		url.QueryEscape(time.Now().Add(-24*time.Hour).Format(time.RFC3339)), nil, &day))
	require.Equal(t, day.Source, source, "the page shows what the hub chose for 24 h")
	hash, err := eval[string](b, `location.hash`)
	require.NoError(t, err)
	require.Equal(t, "#/lockers/H-1?range=24h", hash, "the range is in the address")
	b.run("scroll to the charts", chromedp.Evaluate[chromedp.Void](`document.querySelector('#telemetry').scrollIntoView()`))
	time.Sleep(300 * time.Millisecond)
	b.screenshot("locker-telemetry-24h")

	// A week: hourly-ish buckets with the min–max band.
	b.run("7 d", chromedp.Click(chromedp.CSS(`#t-range [data-range="7d"]`)))
	b.waitJS("7 d drawn", 10*time.Second, `document.querySelector('#t-meta').innerText.startsWith("Last 7 d · ") && document.querySelector('#t-meta').innerText.includes("averages with min–max band")`)
	b.screenshot("locker-telemetry-7d")

	b.run("1 h", chromedp.Click(chromedp.CSS(`#t-range [data-range="1h"]`)))
	b.waitJS("1 h of raw samples", 10*time.Second, chartJS("temp_c", `c.dataset.source === "raw" && Number(c.dataset.points) >= 57 && Number(c.dataset.points) <= 60`))

	// The CSV link returns the chart's rows.
	href, err := eval[string](b, `document.querySelector('#telemetry .tchart[data-metric="temp_c"] .t-csv').getAttribute('href')`)
	require.NoError(t, err)
	require.Contains(t, href, "format=csv")
	points, err := eval[string](b, `document.querySelector('#telemetry .tchart[data-metric="temp_c"]').dataset.points`)
	require.NoError(t, err)
	sess := h.LoginAdmin()
	resp, err := sess.Client.Get(h.HTTPURL + href)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Regexp(t, `^attachment; filename=H-1-temp_c-\d{8}T\d{6}Z\.csv$`, resp.Header.Get("Content-Disposition"))
	rows, err := csv.NewReader(resp.Body).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"t", "avg", "min", "max", "n"}, rows[0])
	require.Equal(t, points, strconv.Itoa(len(rows)-1), "as many rows as the chart has points")
	byTS := map[string]sentSample{}
	for _, s := range sent {
		byTS[s.ts.Format("2006-01-02T15:04:05.000Z07:00")] = s
	}
	for _, row := range rows[1:] {
		s, ok := byTS[row[0]]
		require.True(t, ok, "a row for a sample sent: %v", row)
		require.Equal(t, strconv.FormatFloat(s.temp, 'f', -1, 64), row[1])
		require.Equal(t, "1", row[4])
	}
	require.Equal(t, last.ts.Format("2006-01-02T15:04:05.000Z07:00"), rows[len(rows)-1][0])

	// A new sample shows without a reload (the page refreshes every 10 s).
	next := last
	next.seq++
	next.ts = time.Now().UTC().Truncate(time.Millisecond)
	next.temp = 23.46
	start = time.Now()
	publish(t, h, cert, "H-1", "telemetry", next.payload())
	b.waitJS("the new temperature", 15*time.Second, chartJS("temp_c", `c.querySelector('.t-latest').innerText === "23.5 °C"`))
	t.Logf("new sample on the page after %s", time.Since(start).Round(time.Millisecond))

	// At a tablet's width the charts stack and nothing scrolls sideways.
	b.run("tablet", chromedp.EmulateViewport(820, 1180))
	b.waitJS("charts resized", 5*time.Second, `[...document.querySelectorAll('#telemetry .t-plot')].every(p => {
		const c = p.querySelector('canvas'); return c && c.getBoundingClientRect().right <= p.getBoundingClientRect().right + 1 })`)
	overflow, err := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth || document.querySelector('.locker').scrollWidth > document.querySelector('.locker').clientWidth`)
	require.NoError(t, err)
	require.False(t, overflow, "no horizontal scrolling at 820 px")
	b.run("scroll to the charts", chromedp.Evaluate[chromedp.Void](`document.querySelector('#telemetry').scrollIntoView()`))
	time.Sleep(300 * time.Millisecond)
	b.screenshot("locker-telemetry-tablet")

	// A locker that has sent nothing: "no data", in words.
	b.run("desktop", chromedp.EmulateViewport(1366, 1000))
	b.open("#/lockers/Q-1")
	b.waitJS("no data", 10*time.Second, chartJS("temp_c", `!c.querySelector('.t-nodata').hidden && c.querySelector('.t-nodata').innerText === "No data in the last 6 h"`))
	require.Contains(t, b.text("#t-meta"), "no sample received yet")
	require.Equal(t, "—", b.text(`#telemetry .tchart[data-metric="temp_c"] .t-latest`))
	// Each chart draws on its own frame: wait for the mains strip's words too.
	b.waitJS("no mains data", 10*time.Second, `(document.querySelector('#telemetry .tmains .t-share')?.innerText || '').includes("No data in the last 6 h")`)
}

// TestLockerTelemetryFromSimulator: lockersim's samples (every 500 ms here)
// reach the page: the latest temperature shown is one the locker sent.
func TestLockerTelemetryFromSimulator(t *testing.T) {
	h := hubtest.Start(t)
	sim(t, h, "S-", "north", 1, func(c *lockersim.Config) { c.Telemetry = 500 * time.Millisecond })
	b := newBrowser(t, h, 1280, 900)
	b.login("admin", h.AdminPassword)
	start := time.Now()
	b.open("#/lockers/S-00001")
	b.waitJS("a temperature", 10*time.Second, chartJS("temp_c", `c.querySelector('.t-latest').dataset.value !== ""`))
	t.Logf("latest temperature on the page %s after opening it", time.Since(start).Round(time.Millisecond))
	shown, err := eval[string](b, `document.querySelector('#telemetry .tchart[data-metric="temp_c"] .t-latest').dataset.value`)
	require.NoError(t, err)
	var series struct {
		Points []struct {
			Avg float64 `json:"avg"`
		} `json:"points"`
	}
	require.NoError(t, h.Admin.JSON(context.Background(), "GET", "/api/v1/lockers/S-00001/telemetry?metric=temp_c", nil, &series))
	var vals []string
	for _, p := range series.Points {
		vals = append(vals, strconv.FormatFloat(p.Avg, 'f', -1, 64))
	}
	require.Contains(t, vals, shown, "the page shows a temperature the locker sent")
}
