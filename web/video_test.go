package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/video"
)

// videoHub is a hub with a short idle timeout and at most 2 viewers per locker.
func videoHub(t *testing.T) *hubtest.Hub {
	return hubtest.Start(t, func(c *app.Config) {
		c.Video.IdleTimeout = 500 * time.Millisecond
		c.Video.MaxViewersPerLocker = 2
		c.Video.StartTimeout = 5 * time.Second
		c.Video.ICEDisconnected, c.Video.ICEFailed = 500*time.Millisecond, time.Second
	})
}

// simLockers starts n simulated lockers (prefix00001…) that publish the test
// clip on video.start, and waits until they are online.
func simLockers(t *testing.T, h *hubtest.Hub, prefix string, n int) *lockersim.Sim {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = n, 4, prefix
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.VideoInterface, cfg.VideoICEFailed = "lo", 2*time.Second
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { stop(); sim.Stop() })
	for i := 1; i <= n; i++ {
		id := lockersim.LockerID(prefix, i, n)
		hubtest.Eventually(t, 30*time.Second, id+" online", func() bool { return h.App.Broker.Online(id) })
	}
	return sim
}

// TestWHEP: a pion WHEP player watches a simulated locker's camera through
// the hub over MQTT signalling and real WebRTC: frames decode; a second
// viewer shares the upstream; a third is refused with 429; leaving (DELETE)
// stops the upstream after the idle timeout. Bad input gets clear errors.
func TestWHEP(t *testing.T) {
	h := videoHub(t)
	simLockers(t, h, "V-", 1)
	h.AddLocker("V-OFF") // registered, never connected
	locker := "V-00001"
	whep := h.HTTPURL + "/api/v1/lockers/" + locker + "/video/whep"

	// Two technicians each start a viewer (the WHEP resource is theirs).
	techA, err := h.App.Access.CreateToken(t.Context(), "tech-a", access.RoleTechnician)
	require.NoError(t, err)
	techB, err := h.App.Access.CreateToken(t.Context(), "tech-b", access.RoleTechnician)
	require.NoError(t, err)
	v1 := hubtest.NewViewer(t)
	status, body := v1.WHEP(t, whep, techA)
	require.Equal(t, http.StatusCreated, status, body)
	require.True(t, strings.HasPrefix(v1.Location, "/api/v1/lockers/"+locker+"/video/whep/"), v1.Location)
	hubtest.Eventually(t, 15*time.Second, "frames decoded through the hub", func() bool { return v1.Frames.Load() >= 15 && v1.Keyframes.Load() >= 1 })

	v2 := hubtest.NewViewer(t)
	status, body = v2.WHEP(t, whep, techB)
	require.Equal(t, http.StatusCreated, status, body)
	hubtest.Eventually(t, 15*time.Second, "the second viewer decodes too", func() bool { return v2.Frames.Load() >= 15 })
	require.EqualValues(t, 1, h.Metric("lockerhub_video_stream_starts_total", "outcome", "ok"), "one upstream for both")

	v3 := hubtest.NewViewer(t)
	status, body = v3.WHEP(t, whep, h.AdminToken)
	require.Equal(t, http.StatusTooManyRequests, status, body)
	require.Contains(t, body, `"too_many_viewers"`)

	st, out := call(t, "GET", h.HTTPURL+"/api/v1/lockers/"+locker+"/video", h.AdminToken, "")
	require.Equal(t, 200, st)
	require.Equal(t, float64(2), out["status"].(map[string]any)["viewers"], out)

	// Only the viewer's own caller, or an admin, ends it.
	require.Equal(t, http.StatusForbidden, v1.Leave(t, h.HTTPURL, techB), "tech B may not end tech A's viewer")
	require.Equal(t, 2, h.App.Video.Status(locker).Viewers, "the refused DELETE ended nothing")
	require.Equal(t, http.StatusNoContent, v1.Leave(t, h.HTTPURL, techA))
	require.Equal(t, http.StatusNotFound, v1.Leave(t, h.HTTPURL, techA), "left already")
	require.Equal(t, http.StatusNoContent, v2.Leave(t, h.HTTPURL, h.AdminToken), "an admin ends anybody's viewer")
	hubtest.Eventually(t, 5*time.Second, "the upstream stops after the idle timeout", func() bool { return !h.App.Video.Status(locker).Streaming })
	hubtest.Eventually(t, 5*time.Second, "no peer connections", func() bool { return h.App.Video.Stats().PeerConnections == 0 })

	// Bad input.
	for _, tc := range []struct {
		name, url, ctype, body string
		status                 int
		code                   string
	}{
		{"garbage SDP", whep, "application/sdp", "this is no SDP", 400, "bad_offer"},
		{"no video", whep, "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 400, "bad_offer"},
		{"JSON", whep, "application/json", "{}", 415, "bad_offer"},
		{"unknown locker", h.HTTPURL + "/api/v1/lockers/NOPE/video/whep", "application/sdp", v3.Offer, 404, "not_found"},
		{"offline locker", h.HTTPURL + "/api/v1/lockers/V-OFF/video/whep", "application/sdp", v3.Offer, 409, "offline"},
	} {
		req, err := http.NewRequest("POST", tc.url, strings.NewReader(tc.body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", tc.ctype)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, tc.name)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, tc.name)
	}
	require.GreaterOrEqual(t, h.Metric("lockerhub_video_viewers_refused_total", "reason", "bad_offer"), 2.0)

	// Roles: a viewer-role user may not watch.
	pw := h.AddUser("looker", access.RoleViewer)
	s := h.Login("looker", pw)
	req, _ := http.NewRequest("POST", whep, strings.NewReader(v3.Offer))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("X-CSRF-Token", s.CSRF)
	resp, err := s.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// The views are audited.
	var n int
	require.NoError(t, h.App.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM audit_log WHERE object_type = 'video' AND object_id = $1 AND action IN ('view', 'view_end')`, locker).Scan(&n))
	require.Equal(t, 4, n, "two views and two ends")
}

// TestWHEPVanishingViewer: a viewer whose network goes away without a
// word is removed when ICE fails, and the upstream then stops.
func TestWHEPVanishingViewer(t *testing.T) {
	h := videoHub(t)
	simLockers(t, h, "VV-", 1)
	locker := "VV-00001"
	v := hubtest.NewViewer(t)
	status, body := v.WHEP(t, h.HTTPURL+"/api/v1/lockers/"+locker+"/video/whep", h.AdminToken)
	require.Equal(t, http.StatusCreated, status, body)
	hubtest.Eventually(t, 15*time.Second, "frames", func() bool { return v.Frames.Load() > 5 })
	_ = v.UDP.Close()
	hubtest.Eventually(t, 10*time.Second, "the vanished viewer is gone", func() bool { return h.App.Video.Status(locker).Viewers == 0 })
	hubtest.Eventually(t, 5*time.Second, "the upstream stopped", func() bool { return !h.App.Video.Status(locker).Streaming })
	require.Equal(t, 1.0, h.Metric("lockerhub_video_viewers_removed_total", "reason", "ice_failed"), fmt.Sprint(h.App.Video.Stats()))
}

// TestWHEPBadLockers: a locker that never answers video.start gives the
// viewer 504 no_answer within the start timeout; one whose answer is not
// SDP gives 502 locker_refused (counted); neither leaves a peer connection.
func TestWHEPBadLockers(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.Video.StartTimeout = time.Second })
	rawLocker := func(id string, answer func(req protocol.Request) *protocol.Response) {
		cert := h.Locker(id)
		var c *lockersim.Client
		var err error
		c, err = lockersim.Connect(t.Context(), lockersim.ClientOptions{
			Addr: h.MQTTAddr, TLS: h.ClientTLS(cert), ClientID: id,
			Subscribe: []string{protocol.Topic(id, protocol.KindRPCReq)},
			OnMessage: func(_ string, payload []byte) {
				var req protocol.Request
				if json.Unmarshal(payload, &req) != nil {
					return
				}
				if res := answer(req); res != nil {
					data, _ := json.Marshal(res)
					go func() { _ = c.Publish(protocol.Topic(id, protocol.KindRPCRes), data, 0, 0) }()
				}
			},
		})
		require.NoError(t, err)
		go func() { _ = c.ReadLoop() }()
		t.Cleanup(c.Close)
		hubtest.Eventually(t, 5*time.Second, id+" online", func() bool { return h.App.Broker.Online(id) })
	}
	rawLocker("SILENT", func(protocol.Request) *protocol.Response { return nil })
	rawLocker("GARBLED", func(req protocol.Request) *protocol.Response {
		return &protocol.Response{ID: req.ID, Result: json.RawMessage(`{"sdp":"not an SDP answer"}`)}
	})

	v := hubtest.NewViewer(t)
	start := time.Now()
	status, body := v.WHEP(t, h.HTTPURL+"/api/v1/lockers/SILENT/video/whep", h.AdminToken)
	require.Equal(t, http.StatusGatewayTimeout, status, body)
	require.Contains(t, body, `"no_answer"`)
	require.Less(t, time.Since(start), 5*time.Second)

	status, body = v.WHEP(t, h.HTTPURL+"/api/v1/lockers/GARBLED/video/whep", h.AdminToken)
	require.Equal(t, http.StatusBadGateway, status, body)
	require.Contains(t, body, `"locker_refused"`)
	require.Equal(t, 1.0, h.Metric("lockerhub_video_bad_answers_total"))
	hubtest.Eventually(t, 5*time.Second, "no peer connection left", func() bool { return h.App.Video.Stats() == video.Stats{} })
}
