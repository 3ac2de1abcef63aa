package ota_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/ota"
)

// fastOTA makes the engine quick enough for tests.
func fastOTA(c *app.Config) {
	c.OTA = ota.Config{Tick: 50 * time.Millisecond, NotifyTimeout: 5 * time.Second, DownloadTimeout: 10 * time.Second,
		VerifyTimeout: 5 * time.Second, InstallTimeout: 10 * time.Second, RetryAfter: time.Second}
}

// startSim runs n simulated lockers (IDs OTA-00001…) against the hub.
func startSim(t *testing.T, h *hubtest.Hub, n int, faults lockersim.OTAFaults) *lockersim.Sim {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Segment = n, 4, "OTA-", "ota"
	cfg.Ramp, cfg.StatusEvery, cfg.Telemetry = 0, 0, time.Hour
	cfg.EnrollConcurrency = 16
	cfg.Backoff = lockersim.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	cfg.OTA = faults
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })
	hubtest.Eventually(t, 60*time.Second, fmt.Sprintf("%d lockers online, firmware reported", n), func() bool {
		for _, l := range sim.Lockers() {
			if !h.App.Broker.Online(l.ID()) {
				return false
			}
			if tw := h.App.Twins.Get(l.ID()); tw == nil || tw.Reported.Firmware != lockersim.Firmware {
				return false
			}
		}
		return true
	})
	return sim
}

func upload(t *testing.T, h *hubtest.Hub, version string, size int) apiclient.Artifact {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	a, err := h.Admin.UploadArtifact(context.Background(), version, nil, "test build", bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, int64(size), a.Size)
	return a
}

func status(t *testing.T, h *hubtest.Hub, id int64) apiclient.RolloutStatus {
	t.Helper()
	s, err := h.Admin.RolloutStatus(context.Background(), id)
	require.NoError(t, err)
	return s
}

func waitState(t *testing.T, h *hubtest.Hub, id int64, within time.Duration, state string) apiclient.RolloutStatus {
	t.Helper()
	var s apiclient.RolloutStatus
	hubtest.Eventually(t, within, "rollout "+state, func() bool {
		s = status(t, h, id)
		return s.State == state
	})
	return s
}

// TestRolloutThreeWaves: 200 simulated lockers, a canary of 20 and two waves
// of 45 %: the rollout completes by itself and every locker reports the new
// version; the actions are in the audit log.
func TestRolloutThreeWaves(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 200, lockersim.OTAFaults{})
	a := upload(t, h, "2.0.0", 64<<10)
	ctx := context.Background()
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Targets: apiclient.RolloutTargets{Segments: []string{"ota"}},
		Policy: apiclient.RolloutPolicy{Canary: 20, Percent: 45, Soak: "200ms"}})
	require.NoError(t, err)
	require.Equal(t, "draft", r.State)
	_, err = h.Admin.RolloutAction(ctx, r.ID, "start", "")
	require.NoError(t, err)

	s := waitState(t, h, r.ID, 90*time.Second, "completed")
	require.Equal(t, 200, s.Total)
	require.Equal(t, 200, s.Counts["installed"], "counts %v failures %v", s.Counts, s.Failures)
	require.Len(t, s.Waves, 3)
	require.Equal(t, []int{20, 90, 90}, []int{s.Waves[0].Size, s.Waves[1].Size, s.Waves[2].Size})
	for _, w := range s.Waves {
		require.Equal(t, "done", w.State)
	}
	require.NotEmpty(t, s.Waves[0].Health, "the health gate compared wave 1 with the lockers not yet updated")
	for _, l := range sim.Lockers() {
		require.Equal(t, "2.0.0", l.View(false).Firmware, l.ID())
		require.Equal(t, "2.0.0", h.App.Twins.Get(l.ID()).Reported.Firmware, l.ID())
	}
	require.Equal(t, 200.0, h.Metric("lockerhub_ota_transitions_total", "state", "installed"))
	// Repeats of reports republished after the reboot are "stale"; nothing else was refused.
	for _, reason := range []string{"invalid", "unknown_rollout", "unknown_version", "out_of_order", "installed_without_download", "dropped"} {
		require.Zero(t, h.Metric("lockerhub_ota_status_rejected_total", "reason", reason), reason)
	}
	var actions []string
	rows, err := h.App.Pool.Query(ctx, `SELECT action FROM audit_log WHERE object_type = 'ota_rollout' ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		actions = append(actions, a)
	}
	require.Equal(t, []string{"create", "start", "advance", "advance", "complete"}, actions)
}

// TestRolloutCanaryFailuresPause: 3 of the 10 canary lockers fail to install
// (30 % > the failure threshold of 20 %): the rollout pauses by itself and no
// locker outside the canary is touched.
func TestRolloutCanaryFailuresPause(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	failing := lockersim.OTAFault{Lockers: map[string]bool{"OTA-00002": true, "OTA-00005": true, "OTA-00009": true}}
	sim := startSim(t, h, 40, lockersim.OTAFaults{InstallFail: failing})
	a := upload(t, h, "2.0.0", 16<<10)
	ctx := context.Background()
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Policy: apiclient.RolloutPolicy{Canary: 10, Order: "id", FailurePct: 20}})
	require.NoError(t, err)

	s := waitState(t, h, r.ID, 60*time.Second, "paused")
	require.Contains(t, s.Reason, "wave 1")
	require.Equal(t, 1, s.CurrentWave)
	failed, err := h.Admin.RolloutLockers(ctx, r.ID, "failed", 0)
	require.NoError(t, err)
	require.Len(t, failed, 3)
	for _, f := range failed {
		require.True(t, failing.Lockers[f.LockerID], f.LockerID)
		require.Contains(t, f.Reason, "install: injected install failure")
		require.Equal(t, 3, f.Attempts, "the first attempt and two retries")
	}
	// Nobody outside the canary was asked to update.
	later, err := h.Admin.RolloutLockers(ctx, r.ID, "", 0)
	require.NoError(t, err)
	for _, l := range later {
		if l.Wave > 1 {
			require.Equal(t, "pending", l.State, l.LockerID)
		}
	}
	for _, l := range sim.Lockers()[10:] {
		v := l.View(false)
		require.Equal(t, lockersim.Firmware, v.Firmware, l.ID())
		require.Empty(t, v.Updating, l.ID())
	}
	require.LessOrEqual(t, sim.Stats().OTAStarted.Load(), int64(10+2*3), "only canary lockers started updates")
	require.Equal(t, 3.0, h.Metric("lockerhub_ota_transitions_total", "state", "failed"))

	// Resume is refused? No: resuming is the operator's call; cancel ends it.
	_, err = h.Admin.RolloutAction(ctx, r.ID, "cancel", "")
	require.NoError(t, err)
	s = status(t, h, r.ID)
	require.Equal(t, "cancelled", s.State)
	require.Equal(t, 30, s.Counts["cancelled"])
}

// TestRolloutMaintenanceWindow: the window is the two hours around now in
// UTC; a locker in UTC is inside it and updates, one in Tokyo (UTC+9) is
// outside and waits.
func TestRolloutMaintenanceWindow(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 2, lockersim.OTAFaults{})
	ctx := context.Background()
	_, err := h.Admin.UpdateLocker(ctx, "OTA-00001", map[string]any{"time_zone": "UTC"})
	require.NoError(t, err)
	_, err = h.Admin.UpdateLocker(ctx, "OTA-00002", map[string]any{"time_zone": "Asia/Tokyo"})
	require.NoError(t, err)
	a := upload(t, h, "2.0.0", 8<<10)
	now := time.Now().UTC()
	win := &apiclient.MaintenanceWindow{Start: now.Add(-time.Hour).Format("15:04"), End: now.Add(time.Hour).Format("15:04")}
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Policy: apiclient.RolloutPolicy{Canary: 2, Window: win, SuccessPct: 50}})
	require.NoError(t, err)

	hubtest.Eventually(t, 30*time.Second, "the locker inside its window installed", func() bool {
		return sim.Locker("OTA-00001").View(false).Firmware == "2.0.0"
	})
	hubtest.Eventually(t, 10*time.Second, "installed at the hub", func() bool {
		ls, err := h.Admin.RolloutLockers(ctx, r.ID, "installed", 0)
		return err == nil && len(ls) == 1 && ls[0].LockerID == "OTA-00001"
	})
	ls, err := h.Admin.RolloutLockers(ctx, r.ID, "queued", 0)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.Equal(t, "OTA-00002", ls[0].LockerID)
	require.Contains(t, ls[0].Reason, "outside the maintenance window")
	require.Contains(t, ls[0].Reason, "Asia/Tokyo")
	require.Zero(t, ls[0].Attempts)
	require.Equal(t, lockersim.Firmware, sim.Locker("OTA-00002").View(false).Firmware)
	require.Equal(t, "running", status(t, h, r.ID).State, "it waits for the other locker's window")
}

// TestDownloadResumes: the download is cut half-way; the locker resumes with
// a Range request, the hub serves the rest (206) and the update completes.
func TestDownloadResumes(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 1, lockersim.OTAFaults{Interrupt: lockersim.OTAFault{Pct: 100}})
	a := upload(t, h, "2.0.0", 1<<20)
	r, err := h.Admin.CreateRollout(context.Background(), apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 1}})
	require.NoError(t, err)
	waitState(t, h, r.ID, 30*time.Second, "completed")
	require.Equal(t, "2.0.0", sim.Locker("OTA-00001").View(false).Firmware)
	require.EqualValues(t, 1, sim.Stats().OTAInterrupted.Load())
	require.EqualValues(t, 1, sim.Stats().OTAResumed.Load())
	require.Equal(t, 1.0, h.Metric("lockerhub_ota_downloads_total", "result", "partial"), "one Range request served")
	require.GreaterOrEqual(t, h.Metric("lockerhub_ota_download_bytes_total"), float64(1<<20))
	require.Less(t, h.Metric("lockerhub_ota_download_bytes_total"), float64(2<<20), "the second request did not fetch it all again")
}

// TestRolloutSurvivesRestart: the hub restarts in the middle of a rollout
// (the lockers reconnect); the rollout carries on from PostgreSQL and
// completes.
func TestRolloutSurvivesRestart(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 20, lockersim.OTAFaults{})
	a := upload(t, h, "2.0.0", 16<<10)
	ctx := context.Background()
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Policy: apiclient.RolloutPolicy{Canary: 5, Percent: 50, Approval: true}})
	require.NoError(t, err)
	hubtest.Eventually(t, 20*time.Second, "canary done, waiting for approval", func() bool {
		s := status(t, h, r.ID)
		return s.Waves[0].State == "awaiting_approval"
	})
	h.Restart()
	s := status(t, h, r.ID)
	require.Equal(t, "running", s.State)
	require.Equal(t, 5, s.Counts["installed"])
	_, err = h.Admin.RolloutAction(ctx, r.ID, "approve", "")
	require.NoError(t, err)
	hubtest.Eventually(t, 30*time.Second, "wave 2 waiting for approval", func() bool { return status(t, h, r.ID).Waves[1].State == "awaiting_approval" })
	_, err = h.Admin.RolloutAction(ctx, r.ID, "approve", "")
	require.NoError(t, err)
	s = waitState(t, h, r.ID, 30*time.Second, "completed")
	require.Equal(t, 20, s.Counts["installed"])
	for _, l := range sim.Lockers() {
		require.Equal(t, "2.0.0", l.View(false).Firmware)
	}
}

// TestResumeAcceptsTheWave: 1 of 10 canary lockers fails (10 %: under the
// failure threshold, but 9 of 10 is under the success threshold of 95 %):
// the rollout pauses for an operator; resuming accepts the canary and the
// rollout completes.
func TestResumeAcceptsTheWave(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { fastOTA(c); c.OTA.Retries = -1 })
	startSim(t, h, 20, lockersim.OTAFaults{InstallFail: lockersim.OTAFault{Lockers: map[string]bool{"OTA-00004": true}}})
	a := upload(t, h, "2.0.0", 4<<10)
	ctx := context.Background()
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 10, Order: "id", Percent: 100}})
	require.NoError(t, err)
	s := waitState(t, h, r.ID, 30*time.Second, "paused")
	require.Contains(t, s.Reason, "wave 1 ended with 9 of 10 lockers installed")
	_, err = h.Admin.RolloutAction(ctx, r.ID, "resume", "")
	require.NoError(t, err)
	s = waitState(t, h, r.ID, 30*time.Second, "completed")
	require.Equal(t, 19, s.Counts["installed"])
	require.Equal(t, 1, s.Counts["failed"])
}

// TestRolloutAborts: 6 of the 10 canary lockers fail: past the failure
// threshold the rollout pauses, past the abort threshold (50 % of the
// started waves) it aborts by itself; the lockers not done are cancelled.
func TestRolloutAborts(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { fastOTA(c); c.OTA.Retries = -1 })
	failing := map[string]bool{}
	for i := 1; i <= 6; i++ {
		failing[fmt.Sprintf("OTA-%05d", i)] = true
	}
	startSim(t, h, 30, lockersim.OTAFaults{DownloadError: lockersim.OTAFault{Lockers: failing}})
	a := upload(t, h, "2.0.0", 4<<10)
	r, err := h.Admin.CreateRollout(context.Background(), apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Policy: apiclient.RolloutPolicy{Canary: 10, Order: "id"}})
	require.NoError(t, err)
	s := waitState(t, h, r.ID, 30*time.Second, "aborted")
	require.Contains(t, s.Reason, "aborted: 6 of 10 lockers failed")
	require.Equal(t, 6, s.Counts["failed"])
	// The later waves never started; canary lockers still updating when it aborted are cancelled too.
	require.GreaterOrEqual(t, s.Counts["cancelled"], 20)
	require.Equal(t, 24, s.Counts["cancelled"]+s.Counts["installed"])
	require.Equal(t, 6, s.Failures["download: injected download error"])
	require.Equal(t, 1.0, h.Metric("lockerhub_ota_rollouts", "state", "aborted"))
}
