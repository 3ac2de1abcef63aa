package ota_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestBadStatusReports: an invalid payload, an unknown rollout, an unknown
// version, a stale report, a step out of order and "installed" without a
// download are each counted and refused; the rollout goes on and completes.
func TestBadStatusReports(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { fastOTA(c); c.OTA.Retries = -1 })
	sim := startSim(t, h, 2, lockersim.OTAFaults{})
	ctx := context.Background()
	a := upload(t, h, "2.0.0", 4<<10)
	// A third locker that never connects: the reports below claim to be its.
	h.AddLocker("OTA-FAKE")
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 3, SuccessPct: 60, FailurePct: 50, AbortPct: 90}})
	require.NoError(t, err)
	report := func(locker string, boot, seq int, rollout int64, version, step, reason string) error {
		payload := fmt.Sprintf(`{"boot":%d,"seq":%d,"ts":%d,"rollout":%d,"version":%q,"step":%q`, boot, seq, time.Now().UnixMilli(), rollout, version, step)
		if reason != "" {
			payload += fmt.Sprintf(`,"reason":%q`, reason)
		}
		return h.App.OTA.Report(locker, []byte(payload+"}"), nil)
	}
	rejected := func(reason string) float64 { return h.Metric("lockerhub_ota_status_rejected_total", "reason", reason) }

	require.ErrorIs(t, h.App.OTA.Report("OTA-FAKE", []byte(`{"boot":1,"step":"installed"`), nil), protocol.ErrInvalid)
	require.NoError(t, report("OTA-FAKE", 1, 1, r.ID+100, "2.0.0", "downloading", ""))
	require.NoError(t, report("OTA-FAKE", 1, 2, r.ID, "9.9.9", "downloading", ""))
	require.NoError(t, report("OTA-FAKE", 1, 3, r.ID, "2.0.0", "installed", "")) // queued: not even notified
	hubtest.Eventually(t, 10*time.Second, "bad reports counted", func() bool {
		return rejected("invalid") == 1 && rejected("unknown_rollout") == 1 && rejected("unknown_version") == 1 && rejected("out_of_order") == 1
	})
	// The fake locker is offline: it waits in the queue. Pretend it was notified.
	_, err = h.App.Pool.Exec(ctx, `UPDATE ota_lockers SET state = 'notified', attempts = 1, deadline = now() + interval '1 hour' WHERE locker_id = 'OTA-FAKE'`)
	require.NoError(t, err)
	require.NoError(t, report("OTA-FAKE", 2, 1, r.ID, "2.0.0", "downloading", ""))
	require.NoError(t, report("OTA-FAKE", 2, 1, r.ID, "2.0.0", "downloaded", "")) // the same (boot, seq): stale
	require.NoError(t, report("OTA-FAKE", 2, 5, r.ID, "2.0.0", "installed", ""))  // never downloaded
	hubtest.Eventually(t, 10*time.Second, "installed without download refused", func() bool {
		ls, err := h.Admin.RolloutLockers(ctx, r.ID, "failed", 0)
		return err == nil && len(ls) == 1 && ls[0].LockerID == "OTA-FAKE"
	})
	require.GreaterOrEqual(t, rejected("stale"), 1.0) // also the real lockers' repeats after their reboot
	require.Equal(t, 1.0, rejected("installed_without_download"))
	ls, err := h.Admin.RolloutLockers(ctx, r.ID, "failed", 0)
	require.NoError(t, err)
	require.Contains(t, ls[0].Reason, "installed_without_download")

	s := waitState(t, h, r.ID, 30*time.Second, "completed")
	require.Equal(t, 2, s.Counts["installed"])
	require.Equal(t, 1, s.Failures["installed_without_download: reported installed before downloading"])
	for _, l := range sim.Lockers() {
		require.Equal(t, "2.0.0", l.View(false).Firmware)
	}
}

// TestBadHashAndNeverReturn: a locker whose download fails its hash and one
// that never comes back after installing both fail with their reasons (the
// latter by the install timeout); the others complete.
func TestBadHashAndNeverReturn(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { fastOTA(c); c.OTA.Retries = -1; c.OTA.InstallTimeout = time.Second })
	sim := startSim(t, h, 4, lockersim.OTAFaults{
		BadHash:     lockersim.OTAFault{Lockers: map[string]bool{"OTA-00001": true}},
		NeverReturn: lockersim.OTAFault{Lockers: map[string]bool{"OTA-00002": true}},
	})
	a := upload(t, h, "2.0.0", 4<<10)
	r, err := h.Admin.CreateRollout(context.Background(), apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Policy: apiclient.RolloutPolicy{Canary: 4, SuccessPct: 50, FailurePct: 60, AbortPct: 60}})
	require.NoError(t, err)
	s := waitState(t, h, r.ID, 30*time.Second, "completed")
	require.Equal(t, 2, s.Counts["installed"])
	require.Equal(t, 2, s.Counts["failed"])
	ls, err := h.Admin.RolloutLockers(context.Background(), r.ID, "failed", 0)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, l := range ls {
		reasons[l.LockerID] = l.Reason
	}
	require.Contains(t, reasons["OTA-00001"], "hash_mismatch")
	require.Contains(t, reasons["OTA-00002"], "timeout: no progress while installing")
	require.Equal(t, 1.0, h.Metric("lockerhub_ota_failures_total", "reason", "hash_mismatch"))
	require.Equal(t, 1.0, h.Metric("lockerhub_ota_failures_total", "reason", "timeout"))
	require.Equal(t, lockersim.Firmware, sim.Locker("OTA-00001").View(false).Firmware)
}

// TestApprovalAndRollback: with approval the rollout waits after the canary
// until approved; a rollback then returns every updated locker to the
// version it came from.
func TestApprovalAndRollback(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 4, lockersim.OTAFaults{})
	ctx := context.Background()
	upload(t, h, lockersim.Firmware, 4<<10) // the version to roll back to
	a := upload(t, h, "2.0.0", 4<<10)
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 1, Percent: 100, Approval: true}})
	require.NoError(t, err)
	hubtest.Eventually(t, 20*time.Second, "waiting for approval after the canary", func() bool {
		s := status(t, h, r.ID)
		return len(s.Waves) == 2 && s.Waves[0].State == "awaiting_approval"
	})
	s := status(t, h, r.ID)
	require.Equal(t, 1, s.Counts["installed"])
	require.Equal(t, 3, s.Counts["pending"])
	_, err = h.Admin.RolloutAction(ctx, r.ID, "approve", "")
	require.NoError(t, err)
	_, err = h.Admin.RolloutAction(ctx, r.ID, "approve", "")
	require.True(t, apiclient.IsCode(err, "conflict"), "approved twice: %v", err)
	waitState(t, h, r.ID, 20*time.Second, "completed")

	back, err := h.Admin.RolloutAction(ctx, r.ID, "rollback", "")
	require.NoError(t, err)
	require.Equal(t, r.ID, *back.RollbackOf)
	require.Equal(t, lockersim.Firmware, back.Version)
	waitState(t, h, back.ID, 30*time.Second, "completed")
	for _, l := range sim.Lockers() {
		require.Equal(t, lockersim.Firmware, l.View(false).Firmware, l.ID())
	}
}

// TestHealthGatePauses: after the canary installed, its lockers report
// forced doors during the soak while the others report none: the health
// gate pauses the rollout before the next wave.
func TestHealthGatePauses(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 6, lockersim.OTAFaults{})
	ctx := context.Background()
	a := upload(t, h, "2.0.0", 4<<10)
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 2, Order: "id", Soak: "1h"}})
	require.NoError(t, err)
	hubtest.Eventually(t, 20*time.Second, "canary soaking", func() bool { return status(t, h, r.ID).Waves[0].State == "soaking" })
	for _, id := range []string{"OTA-00001", "OTA-00002"} {
		require.NoError(t, sim.Locker(id).OpenDoor("A01", "")) // no cause: forced
	}
	s := waitState(t, h, r.ID, 30*time.Second, "paused")
	require.Contains(t, s.Reason, "health gate")
	require.Contains(t, s.Reason, "door/lock faults 1.00 per updated locker vs 0.00 per other")
	require.Equal(t, 4, s.Counts["pending"], "the next wave did not start")
	require.NotEmpty(t, s.Waves[0].Health)
}

// TestDownloadGuard: no certificate is 401, a locker that is not updating
// is 403, and beyond --ota-max-downloads a download gets 503 with
// Retry-After.
func TestDownloadGuard(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { fastOTA(c); c.OTA.MaxDownloads = 1; c.OTA.RetryAfter = 7 * time.Second })
	ctx := context.Background()
	data := make([]byte, 32<<20)
	rand.Read(data)
	a, err := h.Admin.UploadArtifact(ctx, "2.0.0", nil, "", bytes.NewReader(data))
	require.NoError(t, err)
	url := fmt.Sprintf("%s/api/v1/ota/artifacts/%d/download", h.DeviceURL, a.ID)
	get := func(c *http.Client) *http.Response {
		resp, err := c.Get(url)
		require.NoError(t, err)
		return resp
	}
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: h.ClientTLS(hubtest.DeviceCert{})}}
	anon.Transport.(*http.Transport).TLSClientConfig.Certificates = nil
	resp := get(anon)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	cert := h.Locker("DG-1")
	dev := &http.Client{Transport: &http.Transport{TLSClientConfig: h.ClientTLS(cert)}}
	resp = get(dev)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// DG-1 in a rollout, notified (as if ota.install had reached it).
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Targets: apiclient.RolloutTargets{Lockers: []string{"DG-1"}}})
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(ctx, `UPDATE ota_lockers SET state = 'notified', deadline = now() + interval '1 hour' WHERE rollout_id = $1`, r.ID)
	require.NoError(t, err)
	first := get(dev) // not read: it holds the only slot
	require.Equal(t, http.StatusOK, first.StatusCode)
	second := &http.Client{Transport: &http.Transport{TLSClientConfig: h.ClientTLS(cert)}}
	resp = get(second)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("Retry-After"))
	require.Equal(t, 1.0, h.Metric("lockerhub_ota_downloads_refused_total", "reason", "busy"))
	require.Equal(t, 1.0, h.Metric("lockerhub_ota_downloads_active"))
	n, err := io.Copy(io.Discard, first.Body)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), n)
	first.Body.Close()
	hubtest.Eventually(t, 5*time.Second, "slot released", func() bool { return h.Metric("lockerhub_ota_downloads_active") == 0 })
	resp = get(second)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()
}

// TestStatusOverMQTT: ota/status over a real MQTT 5 connection (Debian's
// mosquitto_pub) with the locker's certificate: a valid report is
// acknowledged (an unknown rollout: counted, not an error), an invalid one
// gets PUBACK 0x99 and is counted.
func TestStatusOverMQTT(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub is missing: apt-get install mosquitto-clients")
	}
	h := hubtest.Start(t, fastOTA)
	cert := h.Locker("MQ-1")
	lines := []string{
		fmt.Sprintf(`{"boot":1,"seq":1,"ts":%d,"rollout":42,"version":"2.0.0","step":"downloading"}`, time.Now().UnixMilli()),
		`{"boot":1,"seq":2,"ts":1,"rollout":42,"version":"2.0.0","step":"exploded"}`,
	}
	host, port, _ := strings.Cut(h.MQTTAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", cert.CAFile,
		"--cert", cert.CertFile, "--key", cert.KeyFile, "-i", "MQ-1", "-q", "1", "-t", "lockers/MQ-1/ota/status", "-l", "-d")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, 2, strings.Count(string(out), "received PUBACK"), string(out))
	require.Equal(t, 1, strings.Count(string(out), "RC:153"), "the invalid report is refused: %s", out)
	hubtest.Eventually(t, 5*time.Second, "both counted", func() bool {
		return h.Metric("lockerhub_ota_status_rejected_total", "reason", "invalid") == 1 &&
			h.Metric("lockerhub_ota_status_rejected_total", "reason", "unknown_rollout") == 1
	})
	require.Equal(t, 1.0, h.Metric("lockerhub_broker_messages_invalid_total", "kind", "ota/status"))
}

// TestUploadLimits: a file over the size limit is 413 and leaves nothing
// behind; an empty one and a bad version are 400; a version twice is 409.
func TestUploadLimits(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.OTA.MaxArtifactBytes = 1000 })
	ctx := context.Background()
	_, err := h.Admin.UploadArtifact(ctx, "1.0", nil, "", bytes.NewReader(make([]byte, 1001)))
	require.True(t, apiclient.IsCode(err, "too_large"), "%v", err)
	_, err = h.Admin.UploadArtifact(ctx, "1.0", nil, "", bytes.NewReader(nil))
	require.True(t, apiclient.IsCode(err, "invalid"), "%v", err)
	_, err = h.Admin.UploadArtifact(ctx, "1 0", nil, "", bytes.NewReader(make([]byte, 10)))
	require.True(t, apiclient.IsCode(err, "invalid"), "%v", err)
	a, err := h.Admin.UploadArtifact(ctx, "1.0", []string{"kx-40,kx-20", "kx-40"}, "", bytes.NewReader(make([]byte, 1000)))
	require.NoError(t, err)
	require.Equal(t, []string{"kx-40", "kx-20"}, a.Models)
	_, err = h.Admin.UploadArtifact(ctx, "1.0", nil, "", bytes.NewReader(make([]byte, 10)))
	require.True(t, apiclient.IsCode(err, "conflict"), "%v", err)
	files, err := os.ReadDir(filepath.Join(h.DataDir, ota.ArtifactDir))
	require.NoError(t, err)
	require.Len(t, files, 1, "only the stored artifact: no upload leftovers")
	list, err := h.Admin.Artifacts(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	pub, err := ota.ParsePublicKeyPEM(h.App.OTA.PublicKey())
	require.NoError(t, err)
	require.True(t, ota.Verify(pub, a.Version, a.SHA256, a.Size, a.Signature), "the signature verifies with the published key")
	require.FileExists(t, filepath.Join(h.DataDir, ota.SigningKeyFile))
}

// TestRandomReports: hundreds of random reports, valid and not, in and out
// of order, for a locker in a rollout: each is taken or refused, the engine
// goes on, and a real locker beside it still completes its update.
func TestRandomReports(t *testing.T) {
	h := hubtest.Start(t, fastOTA)
	sim := startSim(t, h, 1, lockersim.OTAFaults{})
	h.AddLocker("OTA-RND")
	ctx := context.Background()
	a := upload(t, h, "2.0.0", 4<<10)
	r, err := h.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true, Policy: apiclient.RolloutPolicy{Canary: 2, FailurePct: 100, AbortPct: 100, SuccessPct: 50}})
	require.NoError(t, err)
	_, err = h.App.Pool.Exec(ctx, `UPDATE ota_lockers SET state = 'notified', attempts = 1, deadline = now() + interval '1 hour' WHERE locker_id = 'OTA-RND'`)
	require.NoError(t, err)
	steps := append([]string{"", "bogus"}, protocol.OTASteps...)
	rnd := mrand.New(mrand.NewPCG(1, 2))
	for i := range 400 {
		var payload string
		switch rnd.IntN(4) {
		case 0: // garbage
			b := make([]byte, rnd.IntN(40))
			for j := range b {
				b[j] = byte(rnd.IntN(256))
			}
			payload = string(b)
		default:
			version := []string{"2.0.0", "2.0.0", "1.0.0", "9"}[rnd.IntN(4)]
			payload = fmt.Sprintf(`{"boot":%d,"seq":%d,"ts":%d,"rollout":%d,"version":%q,"step":%q,"reason":%q,"bytes":%d}`,
				1+rnd.IntN(3), rnd.IntN(50), time.Now().UnixMilli(), []int64{r.ID, r.ID, r.ID + 1, 0}[rnd.IntN(4)], version,
				steps[rnd.IntN(len(steps))], []string{"", "download: x"}[rnd.IntN(2)], rnd.IntN(5000)-10)
		}
		_ = h.App.OTA.Report("OTA-RND", []byte(payload), nil)
		if i%100 == 0 {
			_, _ = h.App.Pool.Exec(ctx, `UPDATE ota_lockers SET state = 'notified', deadline = now() + interval '1 hour' WHERE locker_id = 'OTA-RND' AND state = 'queued'`)
		}
	}
	hubtest.Eventually(t, 30*time.Second, "the real locker updated", func() bool { return sim.Locker("OTA-00001").View(false).Firmware == "2.0.0" })
	hubtest.Eventually(t, 10*time.Second, "installed at the hub", func() bool {
		ls, err := h.Admin.RolloutLockers(ctx, r.ID, "installed", 0)
		return err == nil && len(ls) >= 1
	})
	ls, err := h.Admin.RolloutLockers(ctx, r.ID, "", 0)
	require.NoError(t, err)
	for _, l := range ls {
		require.Contains(t, []string{"queued", "notified", "downloading", "downloaded", "verified", "installing", "installed", "failed"}, l.State, l.LockerID)
	}
	require.Greater(t, h.Metric("lockerhub_ota_status_rejected_total"), 100.0)
}
