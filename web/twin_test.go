package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// mosquittoPub publishes one QoS 1 message as locker id with Debian's
// mosquitto_pub (MQTT 5) and returns its debug output.
func mosquittoPub(t *testing.T, h *hubtest.Hub, cert hubtest.DeviceCert, id, kind, payload string) string {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub is missing: apt-get install mosquitto-clients")
	}
	host, port, _ := strings.Cut(h.MQTTAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", cert.CAFile,
		"--cert", cert.CertFile, "--key", cert.KeyFile, "-i", id, "-q", "1", "-t", "lockers/"+id+"/"+kind, "-m", payload, "-d").CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}

func TestTwinFollowsTheLockerAndKeepsHistory(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")

	out := mosquittoPub(t, h, cert, "L1", "state", `{"boot":1,"seq":1,"ts":1795389000000,"full":true,"cells":{"A01":{"door":"closed","lock":"locked","occupied":false}},"power":{"mains":true,"battery_v":12.6},"firmware":"1.0.0"}`)
	require.Contains(t, out, "RC:0", "acknowledged once stored")
	// The PUBACK promised it is stored: the twin has it now, no waiting.
	status, twin := call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/twin", h.AdminToken, "")
	require.Equal(t, 200, status)
	cells := twin["reported"].(map[string]any)["cells"].(map[string]any)
	require.Equal(t, "closed", cells["A01"].(map[string]any)["door"])
	require.Equal(t, "1.0.0", twin["reported"].(map[string]any)["firmware"])
	before := time.Now()

	time.Sleep(10 * time.Millisecond)
	out = mosquittoPub(t, h, cert, "L1", "events", `{"id":"ev-1","boot":1,"seq":2,"ts":1795389001000,"type":"door_opened","cell":"A01","cause":"service:tech"}`)
	require.Contains(t, out, "RC:0")
	_, twin = call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/twin", h.AdminToken, "")
	cells = twin["reported"].(map[string]any)["cells"].(map[string]any)
	require.Equal(t, "open", cells["A01"].(map[string]any)["door"])
	require.Equal(t, float64(2), twin["version"])

	_, evs := call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/events", h.AdminToken, "")
	require.Len(t, evs["events"], 1)
	require.Equal(t, "service:tech", evs["events"].([]any)[0].(map[string]any)["cause"])

	// What did L1 look like before the door opened?
	status, then := call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/twin?at="+before.UTC().Format(time.RFC3339Nano), h.AdminToken, "")
	require.Equal(t, 200, status)
	cells = then["reported"].(map[string]any)["cells"].(map[string]any)
	require.Equal(t, "closed", cells["A01"].(map[string]any)["door"])

	// Each mosquitto_pub was a session: the history has them, newest first.
	hubtest.Eventually(t, 3*time.Second, "connectivity recorded", func() bool {
		_, body := call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/connectivity", h.AdminToken, "")
		ps, _ := body["periods"].([]any)
		return len(ps) == 4 && ps[0].(map[string]any)["online"] == false && ps[0].(map[string]any)["to"] == nil &&
			ps[1].(map[string]any)["online"] == true && ps[1].(map[string]any)["to"] != nil
	})

	// A malformed report is answered (0x99), never stored, and changes nothing.
	out = mosquittoPub(t, h, cert, "L1", "state", `{"boot":1,"seq":3,"ts":1,"cells":{"A01":{"door":"ajar"}}}`)
	require.Contains(t, out, "RC:153")
	_, twin = call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/twin", h.AdminToken, "")
	require.Equal(t, float64(2), twin["version"])
}

func TestDesiredWithIfMatch(t *testing.T) {
	h := hubtest.Start(t)
	h.AddLocker("L1")
	put := func(etag, body string) (int, http.Header, map[string]any) {
		req, err := http.NewRequest("PUT", h.HTTPURL+"/api/v1/lockers/L1/desired", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		if etag != "" {
			req.Header.Set("If-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = jsonDecode(resp, &out)
		return resp.StatusCode, resp.Header, out
	}
	status, hdr, _ := put(`"0"`, `{"config":{"display":"Welcome"}}`)
	require.Equal(t, 200, status)
	require.Equal(t, `"1"`, hdr.Get("ETag"))
	status, _, body := put(`"0"`, `{"config":{"display":"Lost update"}}`)
	require.Equal(t, http.StatusPreconditionFailed, status)
	require.Equal(t, "stale", body["code"])
	status, _, _ = put(`"1"`, `{"config":"not an object"}`)
	require.Equal(t, 400, status)

	_, twin := call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/twin", h.AdminToken, "")
	require.Equal(t, map[string]any{"display": "Welcome"}, twin["desired"].(map[string]any)["config"])
	require.NotEmpty(t, twin["delta"], "the locker has not applied it yet")
	status, _ = call(t, "GET", h.HTTPURL+"/api/v1/lockers/NOPE/twin", h.AdminToken, "")
	require.Equal(t, 404, status)
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// TestDesiredReachesTheLocker: a locker gets its desired configuration when it
// subscribes and when it changes, until it reports the version applied.
func TestDesiredReachesTheLocker(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub is missing: apt-get install mosquitto-clients")
	}
	status, _ := call(t, "PUT", h.HTTPURL+"/api/v1/lockers/L1/desired", h.AdminToken, `{"config":{"display":"Welcome"}}`)
	require.Equal(t, 200, status)

	host, port, _ := strings.Cut(h.MQTTAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", cert.CAFile,
		"--cert", cert.CertFile, "--key", cert.KeyFile, "-i", "L1", "-t", "lockers/L1/desired", "-C", "1").CombinedOutput()
	require.NoError(t, err, string(out))
	require.JSONEq(t, `{"version":1,"config":{"display":"Welcome"}}`, strings.TrimSpace(string(out)), "sent on subscription")
}

func TestReportsAboutCellsTheLockerLacksAreIgnored(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1") // 10 cells, A01–A10
	out := mosquittoPub(t, h, cert, "L1", "state", `{"boot":1,"seq":1,"ts":1795389000000,"cells":{"A01":{"door":"closed"},"Z99":{"door":"open"}}}`)
	require.Contains(t, out, "RC:0", "the rest of the report is taken")
	_, twin := call(t, "GET", h.HTTPURL+"/api/v1/lockers/L1/twin", h.AdminToken, "")
	cells := twin["reported"].(map[string]any)["cells"].(map[string]any)
	require.Contains(t, cells, "A01")
	require.NotContains(t, cells, "Z99")
	require.Equal(t, 1.0, h.Metric("lockerhub_fleet_unknown_cells_total"))
}
