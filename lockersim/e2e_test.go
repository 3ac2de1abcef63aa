package lockersim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/stretchr/testify/require"
)

// TestEndToEndWithHub: lockersim enrols three lockers with a real hub (admin
// API + device listener), connects them over mTLS, and a door driven through
// the control API reaches the hub; a command sent by the hub opens a door.
func TestEndToEndWithHub(t *testing.T) {
	h := hubtest.Start(t)
	cfg := lockersim.DefaultConfig()
	cfg.Hub = h.MQTTAddr
	cfg.API = h.DeviceURL
	cfg.Admin = h.HTTPURL
	cfg.AdminToken = h.AdminToken
	cfg.VarDir = t.TempDir() // no local hub files: everything from the flags above
	cfg.DataDir = t.TempDir()
	cfg.Lockers = 3
	cfg.Cells = 20
	cfg.Prefix = "E2E-"
	cfg.Segment = "e2e"
	cfg.Control = "127.0.0.1:0"
	cfg.Ramp = 0
	cfg.DoorClose = 300 * time.Millisecond
	cfg.StatusEvery = 0
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })

	// Enrolled (CA fetched from the admin API, key 0600) and online at the hub.
	hubtest.Eventually(t, 30*time.Second, "three lockers online at the hub", func() bool {
		ls, err := h.Admin.Lockers(context.Background())
		if err != nil {
			return false
		}
		online := 0
		for _, l := range ls {
			if l.Online && slices.Contains(l.Segments, "e2e") && l.Cells == 20 {
				online++
			}
		}
		return online == 3
	})
	for _, id := range []string{"E2E-00001", "E2E-00002", "E2E-00003"} {
		st, err := os.Stat(filepath.Join(cfg.DataDir, id+".key"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		require.FileExists(t, filepath.Join(cfg.DataDir, id+".crt"))
	}
	require.FileExists(t, filepath.Join(cfg.DataDir, "ca.crt"))

	// A door forced at the locker: the event and the state reach the hub and are acknowledged.
	base := "http://" + sim.ControlAddr()
	events := h.Metric("lockerhub_broker_messages_received_total", "kind", "events")
	resp, err := http.Post(base+"/lockers/E2E-00002/cells/A03/open", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	hubtest.Eventually(t, 10*time.Second, "door_forced event received by the hub", func() bool {
		return h.Metric("lockerhub_broker_messages_received_total", "kind", "events") >= events+1
	})
	hubtest.Eventually(t, 10*time.Second, "every message acknowledged", func() bool {
		return sim.Locker("E2E-00002").View(false).Queued == 0
	})

	// A command from the hub opens a door; the result goes back on rpc/res.
	results := h.Metric("lockerhub_broker_messages_received_total", "kind", "rpc/res")
	req, err := json.Marshal(protocol.Request{ID: "c-1", Method: protocol.MethodCellOpen, Params: json.RawMessage(`{"cell":"B02"}`),
		Key: "c-1", NotAfter: time.Now().Add(time.Minute).UnixMilli()})
	require.NoError(t, err)
	require.NoError(t, h.App.Broker.Send("E2E-00001", protocol.KindRPCReq, req))
	hubtest.Eventually(t, 10*time.Second, "door B02 open", func() bool {
		return sim.Locker("E2E-00001").View(true).Cells["B02"].Door == protocol.DoorOpen
	})
	hubtest.Eventually(t, 10*time.Second, "rpc/res received by the hub", func() bool {
		return h.Metric("lockerhub_broker_messages_received_total", "kind", "rpc/res") >= results+1
	})
	hubtest.Eventually(t, 10*time.Second, "door B02 closed itself", func() bool {
		return sim.Locker("E2E-00001").View(true).Cells["B02"].Door == protocol.DoorClosed
	})

	// A reboot reconnects with the same certificate.
	connects := h.Metric("lockerhub_broker_connects_total")
	sim.Locker("E2E-00003").Reboot()
	hubtest.Eventually(t, 10*time.Second, "rebooted locker reconnected", func() bool {
		return h.Metric("lockerhub_broker_connects_total") >= connects+1 && sim.Locker("E2E-00003").View(false).Connected
	})
	require.EqualValues(t, 2, sim.Locker("E2E-00003").View(false).Boot)
	require.Zero(t, sim.Stats().Refused.Load(), "the hub refused none of the simulator's messages")
}
