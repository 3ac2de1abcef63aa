package web_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// publishLines publishes each line as one QoS 1 message over one MQTT 5
// connection of locker id (mosquitto_pub -l), and waits for the PUBACKs.
func publishLines(t *testing.T, h *hubtest.Hub, cert hubtest.DeviceCert, id, kind string, lines []string) {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub is missing: apt-get install mosquitto-clients")
	}
	host, port, _ := strings.Cut(h.MQTTAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", cert.CAFile,
		"--cert", cert.CertFile, "--key", cert.KeyFile, "-i", id, "-q", "1", "-t", "lockers/"+id+"/"+kind, "-l", "-d")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, len(lines), strings.Count(string(out), "received PUBACK"), string(out))
	require.NotContains(t, string(out), "RC:153", "every sample valid")
}

// sample is a telemetry payload as lockers send it.
func sample(seq int, ts time.Time, temp float64) string {
	return fmt.Sprintf(`{"boot":1,"seq":%d,"ts":%d,"m":{"temp_c":%g,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71}}`,
		seq, ts.UnixMilli(), temp)
}

// getRaw does an authenticated GET and returns status, headers and body.
func getRaw(t *testing.T, h *hubtest.Hub, path string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", h.HTTPURL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

const apiTime = "2006-01-02T15:04:05.000Z07:00"

func TestTelemetryAPI(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	h.AddLocker("L2") // registered, silent
	base := h.HTTPURL + "/api/v1/lockers/L1/telemetry"

	// Three samples a minute apart, the newest a minute ago; acknowledged = stored.
	now := time.Now().UTC().Truncate(time.Millisecond)
	ts := []time.Time{now.Add(-3 * time.Minute), now.Add(-2 * time.Minute), now.Add(-time.Minute)}
	temps := []float64{4.5, 5.25, 6}
	publishLines(t, h, cert, "L1", "telemetry", []string{sample(1, ts[0], temps[0]), sample(2, ts[1], temps[1]), sample(3, ts[2], temps[2])})

	t.Run("latest", func(t *testing.T) {
		status, body := call(t, "GET", base+"/latest", h.AdminToken, "")
		require.Equal(t, 200, status, body)
		require.Equal(t, ts[2].Format(apiTime), body["ts"])
		require.Equal(t, float64(1), body["boot"])
		require.Equal(t, float64(3), body["seq"])
		require.Equal(t, map[string]any{"temp_c": 6.0, "humidity_pct": 61.0, "battery_v": 12.6, "mains": 1.0, "rssi_dbm": -71.0}, body["m"])

		status, body = call(t, "GET", h.HTTPURL+"/api/v1/lockers/L2/telemetry/latest", h.AdminToken, "")
		require.Equal(t, 404, status)
		require.Equal(t, "no_data", body["code"])
		status, body = call(t, "GET", h.HTTPURL+"/api/v1/lockers/NOPE/telemetry/latest", h.AdminToken, "")
		require.Equal(t, 404, status)
		require.Equal(t, "not_found", body["code"])
	})

	t.Run("metrics", func(t *testing.T) {
		status, body := call(t, "GET", base+"/metrics", h.AdminToken, "")
		require.Equal(t, 200, status)
		require.ElementsMatch(t, []any{"temp_c", "humidity_pct", "battery_v", "mains", "rssi_dbm"}, body["metrics"])
		status, body = call(t, "GET", h.HTTPURL+"/api/v1/lockers/L2/telemetry/metrics", h.AdminToken, "")
		require.Equal(t, 200, status)
		require.Equal(t, []any{}, body["metrics"])
	})

	t.Run("series", func(t *testing.T) {
		// Default range: the last 6 h, raw samples.
		status, body := call(t, "GET", base+"?metric=temp_c", h.AdminToken, "")
		require.Equal(t, 200, status, body)
		require.Equal(t, "L1", body["locker_id"])
		require.Equal(t, "temp_c", body["metric"])
		require.Equal(t, "raw", body["source"])
		points := body["points"].([]any)
		require.Len(t, points, 3)
		for i, p := range points {
			pm := p.(map[string]any)
			require.Equal(t, ts[i].Format(apiTime), pm["t"])
			require.Equal(t, temps[i], pm["avg"])
			require.Equal(t, temps[i], pm["min"])
			require.Equal(t, temps[i], pm["max"])
			require.Equal(t, 1.0, pm["n"])
		}
		from, err := time.Parse(time.RFC3339, body["from"].(string))
		require.NoError(t, err)
		to, err := time.Parse(time.RFC3339, body["to"].(string))
		require.NoError(t, err)
		require.Equal(t, 6*time.Hour, to.Sub(from))

		// from and to choose the samples: [from, to).
		q := url.Values{"metric": {"temp_c"}, "from": {ts[1].Format(time.RFC3339Nano)}, "to": {ts[2].Format(time.RFC3339Nano)}}
		status, body = call(t, "GET", base+"?"+q.Encode(), h.AdminToken, "")
		require.Equal(t, 200, status, body)
		require.Len(t, body["points"], 1)
		require.Equal(t, 5.25, body["points"].([]any)[0].(map[string]any)["avg"])

		// A metric the locker never sent is an empty series, not an error.
		status, body = call(t, "GET", base+"?metric=door_count", h.AdminToken, "")
		require.Equal(t, 200, status)
		require.Empty(t, body["points"])
	})

	t.Run("csv", func(t *testing.T) {
		from := now.Add(-time.Hour)
		q := url.Values{"metric": {"temp_c"}, "from": {from.Format(time.RFC3339)}, "format": {"csv"}}
		for _, header := range [][]string{nil, {"Accept", "text/csv"}} {
			path := "/api/v1/lockers/L1/telemetry?" + q.Encode()
			if header != nil {
				q2 := url.Values{"metric": {"temp_c"}, "from": {from.Format(time.RFC3339)}}
				path = "/api/v1/lockers/L1/telemetry?" + q2.Encode()
			}
			status, hdr, body := getRaw(t, h, path, header...)
			require.Equal(t, 200, status, body)
			require.Equal(t, "text/csv; charset=utf-8", hdr.Get("Content-Type"))
			require.Equal(t, `attachment; filename=L1-temp_c-`+from.Format("20060102T150405Z")+`.csv`, hdr.Get("Content-Disposition"))
			rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			require.NoError(t, err)
			require.Equal(t, [][]string{
				{"t", "avg", "min", "max", "n"},
				{ts[0].Format(apiTime), "4.5", "4.5", "4.5", "1"},
				{ts[1].Format(apiTime), "5.25", "5.25", "5.25", "1"},
				{ts[2].Format(apiTime), "6", "6", "6", "1"},
			}, rows)
		}
	})

	t.Run("fleet latest", func(t *testing.T) {
		status, body := call(t, "GET", h.HTTPURL+"/api/v1/fleet/telemetry/latest?metric=temp_c", h.AdminToken, "")
		require.Equal(t, 200, status, body)
		require.Equal(t, "temp_c", body["metric"])
		require.Equal(t, []any{map[string]any{"locker_id": "L1", "ts": ts[2].Format(apiTime), "value": 6.0}}, body["values"])
		_, body = call(t, "GET", h.HTTPURL+"/api/v1/fleet/telemetry/latest?metric=temp_c&segment=test", h.AdminToken, "")
		require.Len(t, body["values"], 1)
		_, body = call(t, "GET", h.HTTPURL+"/api/v1/fleet/telemetry/latest?metric=temp_c&segment=elsewhere", h.AdminToken, "")
		require.Equal(t, []any{}, body["values"])
		_, body = call(t, "GET", h.HTTPURL+"/api/v1/fleet/telemetry/latest?metric=door_count", h.AdminToken, "")
		require.Equal(t, []any{}, body["values"])

		status, hdr, csvBody := getRaw(t, h, "/api/v1/fleet/telemetry/latest?metric=battery_v&format=csv")
		require.Equal(t, 200, status)
		require.Contains(t, hdr.Get("Content-Disposition"), "attachment; filename=fleet-battery_v-")
		require.Equal(t, "locker_id,ts,value\nL1,"+ts[2].Format(apiTime)+",12.6\n", csvBody)
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct{ path, want string }{
			{"/api/v1/lockers/L1/telemetry", "metric is required"},
			{"/api/v1/lockers/L1/telemetry?metric=Temp%20C", "want a metric name"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&step=1s&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z", "more than 10000 points"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&from=yesterday", "from: want an RFC 3339 time"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&to=2026-13-01", "to: want an RFC 3339 time"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&from=2026-11-23T12:00:00Z&to=2026-11-23T11:00:00Z", "from must be before to"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&step=-5", "step: want a duration"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&step=soon", "step: want a duration"},
			{"/api/v1/lockers/L1/telemetry?metric=temp_c&format=xml", `format "xml": want json or csv`},
			{"/api/v1/fleet/telemetry/latest", "metric is required"},
			{"/api/v1/fleet/telemetry/latest?metric=temp_c&status=asleep", "status must be"},
		} {
			status, body := call(t, "GET", h.HTTPURL+c.path, h.AdminToken, "")
			require.Equal(t, 400, status, c.path)
			require.Equal(t, "invalid", body["code"], c.path)
			require.Contains(t, body["message"], c.want, c.path)
		}
		status, body := call(t, "GET", h.HTTPURL+"/api/v1/lockers/NOPE/telemetry?metric=temp_c", h.AdminToken, "")
		require.Equal(t, 404, status)
		require.Equal(t, "not_found", body["code"])
		status, _ = call(t, "GET", base+"?metric=temp_c", "", "")
		require.Equal(t, 401, status)
	})

	t.Run("step", func(t *testing.T) {
		for _, step := range []string{"300", "5m", "0", "0s"} {
			status, body := call(t, "GET", base+"?metric=temp_c&step="+step, h.AdminToken, "")
			require.Equal(t, 200, status, "step=%s: %v", step, body)
		}
	})
}
