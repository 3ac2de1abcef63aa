package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestHubctlCellOpenAndCommands: `hubctl cell open` waits for the door
// sensor; `command list` and `command show` show it, as tables and --json.
func TestHubctlCellOpenAndCommands(t *testing.T) {
	h := hubtest.Start(t)
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Ramp, cfg.StatusEvery = 1, 10, "HC-", 0, 0
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })
	hubtest.Eventually(t, 30*time.Second, "locker online", func() bool { return h.App.Broker.Online("HC-00001") })

	hubctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := hubctl("cell", "open", "HC-00001", "A04", "--key", "k1")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "succeeded")
	require.Regexp(t, `Door open:\s+\d{4}-`, out)
	require.Equal(t, protocol.DoorOpen, sim.Locker("HC-00001").View(true).Cells["A04"].Door)

	code, out, errOut = hubctl("cell", "open", "HC-00001", "A04", "--key", "k1", "--no-wait", "--json")
	require.Equal(t, exitOK, code, errOut)
	var cmd struct{ ID, State string }
	require.NoError(t, json.Unmarshal([]byte(out), &cmd))
	require.Equal(t, "succeeded", cmd.State, "the same key: the first command")

	code, _, errOut = hubctl("cell", "open", "HC-00001", "Z99")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "unknown_cell")

	code, out, errOut = hubctl("command", "list", "--locker", "HC-00001")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "METHOD")
	require.Contains(t, out, cmd.ID)
	require.Contains(t, out, `{"cell":"A04"}`)

	code, out, errOut = hubctl("command", "show", cmd.ID)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "cell.open")
	require.Contains(t, out, "Key:")

	code, _, errOut = hubctl("command", "list", "--state", "lost")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "state")
}
