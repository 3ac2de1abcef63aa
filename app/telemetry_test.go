package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

// TestTelemetryIsStoredBeforeItsPuback publishes samples over a real MQTT 5
// connection (Debian's mosquitto_pub): each valid one gets its PUBACK after
// it is stored, a republished one is stored once, an invalid one gets 0x99
// and is not stored.
func TestTelemetryIsStoredBeforeItsPuback(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub is missing: apt-get install mosquitto-clients")
	}
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	now := time.Now()
	s := func(seq int) string {
		return fmt.Sprintf(`{"boot":1,"seq":%d,"ts":%d,"m":{"temp_c":4.5,"battery_v":12.6}}`, seq, now.Add(time.Duration(seq)*time.Second).UnixMilli())
	}
	lines := []string{s(1), s(2), s(2), `{"boot":1,"seq":3,"ts":1,"m":{"temp_c":"warm"}}`, s(4)}
	host, port, _ := strings.Cut(h.MQTTAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", cert.CAFile,
		"--cert", cert.CertFile, "--key", cert.KeyFile, "-i", "L1", "-q", "1", "-t", "lockers/L1/telemetry", "-l", "-d")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, len(lines), strings.Count(string(out), "received PUBACK"), string(out))
	require.Equal(t, 1, strings.Count(string(out), "RC:153"), "the invalid sample is refused: %s", out)

	var n int
	require.NoError(t, h.App.Pool.QueryRow(context.Background(), `SELECT count(*) FROM telemetry_samples WHERE locker_id = 'L1'`).Scan(&n))
	require.Equal(t, 3, n)
	latest, ok := h.App.Telemetry.Latest("L1")
	require.True(t, ok)
	require.Equal(t, uint64(4), latest.Seq)
	series, err := h.App.TelemetryStore.Series(context.Background(), "L1", "battery_v", now.Add(-time.Minute), now.Add(time.Minute), 0)
	require.NoError(t, err)
	require.Len(t, series.Points, 3)
	require.Equal(t, 3.0, h.Metric("lockerhub_telemetry_samples_stored_total"))

	// The twin shows the last sample.
	req, err := http.NewRequest("GET", h.HTTPURL+"/api/v1/lockers/L1/twin", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var twin struct {
		Telemetry struct {
			TS time.Time          `json:"ts"`
			M  map[string]float64 `json:"m"`
		} `json:"telemetry"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&twin))
	require.Equal(t, map[string]float64{"temp_c": 4.5, "battery_v": 12.6}, twin.Telemetry.M)
	require.Equal(t, now.Add(4*time.Second).UnixMilli(), twin.Telemetry.TS.UnixMilli())
	require.Equal(t, 1.0, h.Metric("lockerhub_telemetry_samples_duplicates_total"))
}
