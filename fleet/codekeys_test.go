package fleet_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// rpcLocker is a bare MQTT 5 client that sees the hub's RPC requests and
// answers only when told to.
type rpcLocker struct {
	c      *lockersim.Client
	reqs   chan protocol.Request
	nextID uint16
	later  []protocol.Request // received while waiting for another method
}

func connectRPCLocker(t *testing.T, h *hubtest.Hub, cert hubtest.DeviceCert, id string) *rpcLocker {
	t.Helper()
	l := &rpcLocker{reqs: make(chan protocol.Request, 64)}
	c, err := lockersim.Connect(t.Context(), lockersim.ClientOptions{
		Addr: h.MQTTAddr, TLS: h.ClientTLS(cert), ClientID: id, Version: lockersim.MQTT5,
		Subscribe: []string{protocol.Topic(id, protocol.KindRPCReq)},
		OnMessage: func(topic string, payload []byte) {
			var req protocol.Request
			if json.Unmarshal(payload, &req) == nil {
				l.reqs <- req
			}
		},
	})
	require.NoError(t, err)
	go func() { _ = c.ReadLoop() }()
	t.Cleanup(c.Close)
	l.c = c
	return l
}

func (l *rpcLocker) next(t *testing.T, method string) protocol.Request {
	t.Helper()
	for i, req := range l.later {
		if req.Method == method {
			l.later = append(l.later[:i], l.later[i+1:]...)
			return req
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case req := <-l.reqs:
			if req.Method == method {
				return req
			}
			l.later = append(l.later, req)
		case <-deadline:
			t.Fatalf("no %s request", method)
		}
	}
}

func (l *rpcLocker) answer(t *testing.T, id string, req protocol.Request, version int64) {
	t.Helper()
	res, _ := json.Marshal(protocol.Response{ID: req.ID, Result: json.RawMessage(`{"version":` + jsonInt(version) + `}`)})
	l.nextID++ // a packet id still unacknowledged must not be reused
	require.NoError(t, l.c.Publish(protocol.Topic(id, protocol.KindRPCRes), res, 1, l.nextID))
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestCodesKeyAndParcelsSyncResentUntilAcknowledged: the secret and the
// parcel list go out when made, again after a reconnect while unanswered,
// and are recorded as delivered only when the locker answers that version; a
// rotation sends a higher version.
func TestCodesKeyAndParcelsSyncResentUntilAcknowledged(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	cert := h.Locker("CK-1")
	l := connectRPCLocker(t, h, cert, "CK-1")
	hubtest.Eventually(t, 10*time.Second, "online", func() bool { return h.App.Broker.Online("CK-1") })

	secret, err := h.App.CodeKeys.Key(ctx, "CK-1")
	require.NoError(t, err)
	again, err := h.App.CodeKeys.Key(ctx, "CK-1")
	require.NoError(t, err)
	require.Equal(t, secret, again, "made once")
	req := l.next(t, protocol.MethodCodesKey)
	var p protocol.CodesKeyParams
	require.NoError(t, json.Unmarshal(req.Params, &p))
	require.Equal(t, secret, p.Key)
	v1 := p.Version
	require.Positive(t, v1)

	parcels := []protocol.LockerParcel{{ID: "p-1", Cell: "A01", ValidFrom: 1, ValidTo: 2}}
	require.NoError(t, h.App.LockerSync.SetParcels(ctx, "CK-1", parcels))
	preq := l.next(t, protocol.MethodParcelsSync)
	var pp protocol.ParcelsSyncParams
	require.NoError(t, json.Unmarshal(preq.Params, &pp))
	require.Equal(t, parcels, pp.Parcels)

	// No answer; the locker reconnects: both come again.
	l.c.Close()
	hubtest.Eventually(t, 10*time.Second, "offline", func() bool { return !h.App.Broker.Online("CK-1") })
	l = connectRPCLocker(t, h, cert, "CK-1")
	req = l.next(t, protocol.MethodCodesKey)
	require.NoError(t, json.Unmarshal(req.Params, &p))
	require.Equal(t, v1, p.Version)
	preq = l.next(t, protocol.MethodParcelsSync)
	_, delivered, err := h.App.CodeKeys.DeliveredVersion(ctx, "CK-1")
	require.NoError(t, err)
	require.Zero(t, delivered, "not delivered before the locker answers")

	l.answer(t, "CK-1", req, v1)
	l.answer(t, "CK-1", preq, pp.Version)
	hubtest.Eventually(t, 10*time.Second, "both acknowledged", func() bool {
		_, d, err := h.App.CodeKeys.DeliveredVersion(ctx, "CK-1")
		list, pd, err2 := h.App.LockerSync.Parcels(ctx, "CK-1")
		return err == nil && err2 == nil && d == v1 && pd == list.Version
	})
	require.Zero(t, h.Metric("lockerhub_fleet_code_keys_pending"))
	require.Zero(t, h.Metric("lockerhub_fleet_parcel_lists_pending"))

	// A rotation: a new secret with a higher version.
	v2, err := h.App.CodeKeys.Rotate(ctx, "CK-1")
	require.NoError(t, err)
	require.Greater(t, v2, v1)
	req = l.next(t, protocol.MethodCodesKey)
	require.NoError(t, json.Unmarshal(req.Params, &p))
	require.Equal(t, v2, p.Version)
	require.NotEqual(t, secret, p.Key)

	// Bad lists and unknown lockers are refused.
	require.ErrorIs(t, h.App.LockerSync.SetParcels(ctx, "CK-1", []protocol.LockerParcel{{ID: "p", Cell: "nope", ValidFrom: 1, ValidTo: 2}}), fleet.ErrInvalidParcels)
	_, err = h.App.CodeKeys.Key(ctx, "NOBODY")
	require.ErrorIs(t, err, fleet.ErrNotFound)

	// Disabling the locker deletes its key; enabled again, a new one has a higher version.
	_, err = h.Admin.UpdateLocker(ctx, "CK-1", map[string]any{"enabled": false})
	require.NoError(t, err)
	v, _, err := h.App.CodeKeys.DeliveredVersion(ctx, "CK-1")
	require.NoError(t, err)
	require.Zero(t, v, "no key after disabling")
	_, err = h.Admin.UpdateLocker(ctx, "CK-1", map[string]any{"enabled": true})
	require.NoError(t, err)
	fresh, err := h.App.CodeKeys.Key(ctx, "CK-1")
	require.NoError(t, err)
	require.NotEqual(t, secret, fresh)
	v, _, err = h.App.CodeKeys.DeliveredVersion(ctx, "CK-1")
	require.NoError(t, err)
	require.Greater(t, v, v2)
}

// TestCodeSecretAppearsNowhere: after the secret reached a locker (and was
// rotated), neither it nor its hex or base64 forms appear in the twin, its
// history, the events, the stream, the audit log, the hub's log, the metrics
// or any API answer.
func TestCodeSecretAppearsNowhere(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	sim := startSim(t, h, "SEC-", 1, nil)
	id := sim.Lockers()[0].ID()
	var secrets [][]byte
	s1, err := h.App.CodeKeys.Key(ctx, id)
	require.NoError(t, err)
	secrets = append(secrets, s1)
	v, err := h.App.CodeKeys.Rotate(ctx, id)
	require.NoError(t, err)
	hubtest.Eventually(t, 10*time.Second, "the rotated key acknowledged", func() bool {
		_, d, err := h.App.CodeKeys.DeliveredVersion(ctx, id)
		return err == nil && d == v && sim.Lockers()[0].View(false).CodeKey == v
	})
	s2, err := h.App.CodeKeys.Key(ctx, id)
	require.NoError(t, err)
	secrets = append(secrets, s2)
	require.NoError(t, h.App.LockerSync.SetParcels(ctx, id, []protocol.LockerParcel{{ID: "p-1", Cell: "A01", ValidFrom: 1, ValidTo: 2}}))
	// Some device traffic, so the twin, its history and the events have content.
	require.NoError(t, sim.Lockers()[0].OpenDoor("A03", "service:test"))
	hubtest.Eventually(t, 10*time.Second, "door event stored", func() bool {
		var n int
		return h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_events WHERE locker_id = $1`, id).Scan(&n) == nil && n > 0
	})

	var haystack []string
	get := func(path string) {
		req, _ := http.NewRequest("GET", h.HTTPURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
		haystack = append(haystack, path+": "+string(body))
	}
	for _, p := range []string{"/api/v1/lockers", "/api/v1/lockers/" + id, "/api/v1/lockers/" + id + "/twin",
		"/api/v1/lockers/" + id + "/events", "/api/v1/lockers/" + id + "/connectivity", "/api/v1/lockers/" + id + "/cells",
		"/api/v1/fleet/overview", "/api/v1/commands", "/api/v1/audit", "/metrics"} {
		get(p)
	}
	for _, table := range []string{"fleet_twins", "fleet_twin_history", "fleet_events", "fleet_commands", "audit_log", "fleet_asks"} {
		rows, err := h.App.Pool.Query(ctx, `SELECT t::text FROM `+table+` t`)
		require.NoError(t, err)
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			haystack = append(haystack, table+": "+s)
		}
		require.NoError(t, rows.Err())
	}
	// The stream: the fleet rows and the locker's twin.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(wctx, strings.Replace(h.HTTPURL, "http", "ws", 1)+"/api/v1/stream",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + h.AdminToken}}})
	require.NoError(t, err)
	defer ws.CloseNow()
	for _, watch := range []string{`{"watch":"fleet"}`, `{"watch":"locker","id":"` + id + `"}`} {
		require.NoError(t, ws.Write(wctx, websocket.MessageText, []byte(watch)))
		for {
			_, data, err := ws.Read(wctx)
			require.NoError(t, err)
			haystack = append(haystack, "stream: "+string(data))
			if strings.Contains(string(data), `"snapshot"`) {
				break
			}
		}
	}
	haystack = append(haystack, "log: "+h.Log.String())

	all := strings.Join(haystack, "\n")
	require.Contains(t, all, id, "the search covers the locker's data")
	require.Contains(t, all, `"object_type": "code_key"`, "and the rotation's audit record")
	require.Contains(t, all, "lockerhub_fleet_code_keys_sent_total", "and the metrics")
	for _, s := range secrets {
		for _, form := range []string{hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)),
			base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s),
			base64.URLEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s),
			`\\x` + hex.EncodeToString(s)} {
			require.NotContains(t, all, form)
		}
	}
}
