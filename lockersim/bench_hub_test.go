package lockersim_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

// TestBenchStatePayloadReachesTheTwin: the state reports of `lockersim bench
// --payload state` are valid at the hub (enrolled with 10 cells, A01–A10),
// every one is stored, and each twin ends with the firmware of its locker's
// last report in the send log.
func TestBenchStatePayloadReachesTheTwin(t *testing.T) {
	h := hubtest.Start(t)
	cfg := lockersim.DefaultBenchConfig()
	cfg.Broker = h.MQTTAddr
	cfg.TLS = true
	cfg.Identity = lockersim.IdentityOptions{Dir: t.TempDir(), CAFile: h.CAFile(), VarDir: t.TempDir(), Admin: h.HTTPURL,
		AdminToken: h.AdminToken, API: h.DeviceURL, Cells: 10, Segment: "bench", Concurrency: 4}
	cfg.Prefix = "BST-"
	cfg.Connections = 3
	cfg.Rate = 60
	cfg.Duration = time.Second
	cfg.Payload = lockersim.PayloadState
	cfg.SendLog = filepath.Join(t.TempDir(), "sent.log")
	res, err := lockersim.Bench(t.Context(), cfg, nil)
	require.NoError(t, err)
	require.Zero(t, res.Errors, res.FirstError)
	require.Greater(t, res.Sent, int64(30))
	require.Equal(t, res.Sent, res.Acked, "every report stored and acknowledged")
	require.Equal(t, float64(res.Sent), h.Metric("lockerhub_fleet_device_messages_total", "kind", "state", "result", "stored"))
	require.Zero(t, h.Metric("lockerhub_fleet_unknown_cells_total"))

	last := map[string]string{}
	f, err := os.Open(cfg.SendLog)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		last[fields[0]] = "b-" + fields[1]
	}
	require.Len(t, last, 3)
	for id, fw := range last {
		tw := h.App.Twins.Get(id)
		require.NotNil(t, tw, id)
		require.Equal(t, fw, tw.Reported.Firmware, id)
		require.NotEmpty(t, tw.Reported.Cells, id)
	}
}
