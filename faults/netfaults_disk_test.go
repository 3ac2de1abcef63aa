//go:build faults

package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/video"
)

// TestNetFaultDiskFull: the hub's data dir is a small tmpfs; the test fills
// it. Writes the hub is asked for fail with a clear error (API 507
// "disk_full", a log line, lockerhub_http_disk_full_total; a recording ends
// "failed" with the reason and leaves no half clip; a key file rotation
// leaves the old file whole); what needs no disk goes on (device messages
// acked and stored, the API, certificates, a restart). After space is freed
// every file is whole and the same writes succeed.
func TestNetFaultDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dir, 0o700))
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "lockerhub-netfaults", dir).CombinedOutput()
	require.NoError(t, err, "mount tmpfs: %s", out)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	h := hubtest.Start(t, func(c *app.Config) {
		c.DataDir = dir
		c.Video.IdleTimeout = time.Second
		c.Video.Recordings.Duration = 2 * time.Second
	})
	ctx := context.Background()
	before := netfaultsRandom(t, 200<<10)
	artA, err := h.Admin.UploadArtifact(ctx, "1.0.0", nil, "before", bytes.NewReader(before))
	require.NoError(t, err)
	sim := netfaultsInProcessSim(t, h)
	locker := sim.Lockers()[0]
	id := locker.ID()
	rec, err := h.App.Video.Record(ctx, id, nil, "before the disk is full")
	require.NoError(t, err)
	hubtest.Eventually(t, 30*time.Second, "a clip recorded", func() bool {
		r, err := h.App.Recordings.Get(ctx, rec.ID)
		return err == nil && r.State == video.StateDone
	})
	ticketsBefore, err := os.ReadFile(filepath.Join(dir, pki.TicketKeysFile))
	require.NoError(t, err)

	// Fill it.
	filler := filepath.Join(dir, "filler")
	netfaultsFill(t, filler)

	// An artifact upload: 507 disk_full, logged, counted; nothing half stored.
	_, err = h.Admin.UploadArtifact(ctx, "2.0.0", nil, "disk full", bytes.NewReader(netfaultsRandom(t, 300<<10)))
	var apiErr *apiclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 507, apiErr.Status, "%v", err)
	require.Equal(t, "disk_full", apiErr.Code)
	require.Equal(t, 1.0, h.Metric("lockerhub_http_disk_full_total"))
	require.Contains(t, h.Log.String(), "the data directory is full")
	arts, err := h.Admin.Artifacts(ctx)
	require.NoError(t, err)
	require.Len(t, arts, 1, "the failed upload left no artifact")
	netfaultsNoTemporaries(t, dir)

	// A recording: failed, with the reason, no file.
	failedBefore := h.Metric("lockerhub_video_recordings_total", "outcome", "error")
	rec2, err := h.App.Video.Record(ctx, id, nil, "disk full")
	require.NoError(t, err)
	var r2 video.Recording
	hubtest.Eventually(t, 30*time.Second, "the recording ends", func() bool {
		r2, err = h.App.Recordings.Get(ctx, rec2.ID)
		return err == nil && r2.State != video.StateRecording
	})
	require.Equal(t, video.StateFailed, r2.State)
	require.Contains(t, r2.Error, "no space left on device")
	require.Empty(t, r2.File, "no half clip to download")
	require.Equal(t, failedBefore+1, h.Metric("lockerhub_video_recordings_total", "outcome", "error"))
	clips, err := filepath.Glob(filepath.Join(dir, "recordings", "*"))
	require.NoError(t, err)
	require.Len(t, clips, 1, "only the first clip; the partial one is removed: %v", clips)

	// A recording that runs out of space half-way (room for its header, not
	// its frames): failed, the half clip removed, nothing to download.
	st, err := os.Stat(filler)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(filler, st.Size()-24<<10))
	rec3, err := h.App.Video.Record(ctx, id, nil, "disk full half-way")
	require.NoError(t, err)
	var r3 video.Recording
	hubtest.Eventually(t, 30*time.Second, "the recording ends", func() bool {
		r3, err = h.App.Recordings.Get(ctx, rec3.ID)
		return err == nil && r3.State != video.StateRecording
	})
	require.Equal(t, video.StateFailed, r3.State)
	require.Contains(t, r3.Error, "no space left on device")
	require.Empty(t, r3.File, "no half clip to download")
	clips, err = filepath.Glob(filepath.Join(dir, "recordings", "*"))
	require.NoError(t, err)
	require.Len(t, clips, 1, "the half clip is removed: %v", clips)
	netfaultsFill(t, filler)

	// A key file rotation: refused, the old file whole.
	_, err = pki.LoadOrRotateTicketKeys(dir, time.Now().Add(48*time.Hour), 24*time.Hour)
	require.ErrorIs(t, err, syscall.ENOSPC)
	ticketsNow, err := os.ReadFile(filepath.Join(dir, pki.TicketKeysFile))
	require.NoError(t, err)
	require.Equal(t, ticketsBefore, ticketsNow)
	netfaultsNoTemporaries(t, dir)

	// What needs no disk goes on: a device event acked and stored, the twin,
	// the API, a new locker's certificate, a restart.
	require.NoError(t, locker.OpenDoor("A01", "service:disk-full"))
	hubtest.Eventually(t, 10*time.Second, "the event stored", func() bool {
		return netfaultsCount(t, h, `SELECT count(*) FROM fleet_events WHERE locker_id = $1 AND cause = 'service:disk-full'`, id) == 1
	})
	hubtest.Eventually(t, 10*time.Second, "acked", func() bool { return locker.View(false).Queued == 0 })
	h.Locker("DF-NEW")
	h.Restart()
	hubtest.Eventually(t, 40*time.Second, "the locker back after the restart", func() bool { return h.App.Broker.Connected() == 1 })

	// Free the space: the same writes succeed, every file is whole.
	require.NoError(t, os.Remove(filler))
	after := netfaultsRandom(t, 300<<10)
	artB, err := h.Admin.UploadArtifact(ctx, "2.0.0", nil, "after", bytes.NewReader(after))
	require.NoError(t, err)
	rec4, err := h.App.Video.Record(ctx, id, nil, "after")
	require.NoError(t, err)
	hubtest.Eventually(t, 30*time.Second, "a clip recorded again", func() bool {
		r, err := h.App.Recordings.Get(ctx, rec4.ID)
		return err == nil && r.State == video.StateDone
	})
	_, err = pki.LoadOrRotateTicketKeys(dir, time.Now().Add(48*time.Hour), 24*time.Hour)
	require.NoError(t, err)
	for _, a := range []struct {
		art  apiclient.Artifact
		data []byte
	}{{artA, before}, {artB, after}} {
		sum := sha256.Sum256(a.data)
		require.Equal(t, hex.EncodeToString(sum[:]), a.art.SHA256)
		files, _ := filepath.Glob(filepath.Join(dir, ota.ArtifactDir, "*.bin"))
		found := false
		for _, f := range files {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			found = found || bytes.Equal(data, a.data)
		}
		require.True(t, found, "artifact %s whole on disk", a.art.Version)
	}
	for _, id := range []int64{rec.ID, rec4.ID} {
		f, r, err := h.App.Recordings.Open(ctx, id)
		require.NoError(t, err)
		st, err := f.Stat()
		f.Close()
		require.NoError(t, err)
		require.Equal(t, r.Bytes, st.Size(), "clip %d whole", id)
	}
	_, err = pki.LoadOrCreateCA(dir)
	require.NoError(t, err, "the CA loads")
	netfaultsNoTemporaries(t, dir)
}

// netfaultsFill writes path until the file system is full.
func netfaultsFill(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for range 100000 {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, syscall.ENOSPC)
	// Room for not even a small file.
	for range 1000 {
		if _, err = f.Write(chunk[:512]); err != nil {
			break
		}
	}
}

// netfaultsNoTemporaries: no temporary file of an interrupted write is left.
func netfaultsNoTemporaries(t testing.TB, dir string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if strings.HasSuffix(name, ".tmp") || strings.HasPrefix(name, "upload-") {
			return errors.New("left over: " + path)
		}
		return nil
	}))
}

func netfaultsRandom(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// netfaultsInProcessSim is one lockersim locker with a camera, connected.
func netfaultsInProcessSim(t testing.TB, h *hubtest.Hub) *lockersim.Sim {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Segment = 1, 20, "DF-", "netfaults"
	cfg.Ramp, cfg.StatusEvery, cfg.Control = 0, 0, ""
	cfg.VideoInterface = "lo"
	s, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() { cancel(); s.Stop() })
	hubtest.Eventually(t, 30*time.Second, "the locker connected", func() bool { return s.Lockers()[0].View(false).Connected })
	return s
}
