package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/ota"
)

// TestHubctlOTA: upload a firmware file, create a draft rollout to three
// simulated lockers, start it and watch it to the end; list, lockers, and a
// refused action.
func TestHubctlOTA(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.OTA = ota.Config{Tick: 50 * time.Millisecond} })
	for _, k := range []string{envServer, envToken, envDataDir} {
		t.Setenv(k, "")
	}
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Segment, cfg.Ramp, cfg.StatusEvery = 3, 2, "HO-", "north", 0, 0
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })
	hubtest.Eventually(t, 30*time.Second, "lockers online", func() bool {
		for _, l := range sim.Lockers() {
			if tw := h.App.Twins.Get(l.ID()); tw == nil || tw.Reported.Firmware == "" {
				return false
			}
		}
		return true
	})
	hubctl := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--server", h.HTTPURL, "--token", h.AdminToken}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	file := filepath.Join(t.TempDir(), "fw.bin")
	data := make([]byte, 32<<10)
	rand.Read(data)
	require.NoError(t, os.WriteFile(file, data, 0o644))

	code, _, errOut := hubctl("ota", "upload", file)
	require.Equal(t, 2, code, "--version is required")
	require.Contains(t, errOut, "--version")
	code, out, errOut := hubctl("ota", "upload", file, "--version", "3.1.0", "--notes", "fixes")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "version 3.1.0, 32768 bytes")
	code, out, _ = hubctl("ota", "artifacts")
	require.Equal(t, 0, code)
	require.Contains(t, out, "3.1.0")

	code, out, errOut = hubctl("ota", "rollout", "create", "--version", "3.1.0", "--segments", "north", "--canary", "1", "--percent", "50", "--order", "id", "--window", "00:00-23:59")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "draft")
	require.Contains(t, out, "hubctl ota rollout start 1")
	code, out, errOut = hubctl("ota", "rollout", "start", "1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Rollout 1: running.")

	code, out, errOut = hubctl("ota", "rollout", "status", "1", "--watch", "--every", "100ms")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "\r[")
	require.Contains(t, out, "Rollout 1 (update to 3.1.0): completed, version 3.1.0, wave 2 of 2, 3 lockers")
	require.Contains(t, out, "3/3 installed")
	for _, l := range sim.Lockers() {
		require.Equal(t, "3.1.0", l.View(false).Firmware)
	}
	code, out, _ = hubctl("ota", "rollout", "lockers", "1", "--state", "installed")
	require.Equal(t, 0, code)
	require.Equal(t, 4, strings.Count(out, "\n"), out)
	code, out, _ = hubctl("ota", "rollout", "list")
	require.Equal(t, 0, code)
	require.Contains(t, out, "completed")
	code, _, errOut = hubctl("ota", "rollout", "pause", "1", "--reason", "late")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "conflict")
	code, _, errOut = hubctl("ota", "rollout", "status", "x")
	require.Equal(t, 2, code, errOut)
}
