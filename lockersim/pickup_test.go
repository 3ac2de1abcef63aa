package lockersim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestOfflinePickup: the hub's pickup-code secret (codes.key) and offline
// parcel list (parcels.sync) reach a lockersim locker; offline, the locker
// accepts a valid code for a parcel in its list (computed here with
// protocol.PickupCode), opens the cell itself, refuses wrong codes and
// rate-limits them; after reconnecting, its door_opened event with cause
// code:<parcel> is stored at the hub.
func TestOfflinePickup(t *testing.T) {
	h := hubtest.Start(t)
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = 1, 20, "OFF-"
	cfg.Control = "127.0.0.1:0"
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = time.Hour
	cfg.CodeTries, cfg.CodeWindow = 3, time.Minute
	cfg.AskTimeout = 5 * time.Second
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })
	id := "OFF-00001"
	l := sim.Locker(id)
	hubtest.Eventually(t, 30*time.Second, "locker online", func() bool { return h.App.Broker.Online(id) })

	// The secret is made on first use and delivered; the locker answers its version.
	secret, err := h.App.CodeKeys.Key(ctx, id)
	require.NoError(t, err)
	require.Len(t, secret, protocol.PickupKeyBytes)
	hubtest.Eventually(t, 10*time.Second, "codes.key acknowledged", func() bool {
		v, d, err := h.App.CodeKeys.DeliveredVersion(ctx, id)
		return err == nil && v > 0 && d == v && l.View(false).CodeKey == v
	})

	now := time.Now()
	valid := protocol.LockerParcel{ID: "p-1", Cell: "A02", ValidFrom: now.Add(-time.Hour).UnixMilli(), ValidTo: now.Add(time.Hour).UnixMilli()}
	expired := protocol.LockerParcel{ID: "p-2", Cell: "B01", ValidFrom: now.Add(-2 * time.Hour).UnixMilli(), ValidTo: now.Add(-time.Hour).UnixMilli()}
	code := func(p protocol.LockerParcel) string {
		c, err := protocol.PickupCode(secret, protocol.PickupCodeInput{LockerID: id, ParcelID: p.ID, Cell: p.Cell,
			ValidFrom: time.UnixMilli(p.ValidFrom), ValidTo: time.UnixMilli(p.ValidTo)})
		require.NoError(t, err)
		return c
	}
	require.NoError(t, h.App.LockerSync.SetParcels(ctx, id, []protocol.LockerParcel{valid, expired}))
	hubtest.Eventually(t, 10*time.Second, "parcels.sync acknowledged", func() bool {
		p, d, err := h.App.LockerSync.Parcels(ctx, id)
		return err == nil && p.Version > 0 && d == p.Version && len(l.View(false).Parcels) == 2
	})

	// Offline now.
	l.GoOffline(10 * time.Minute)
	hubtest.Eventually(t, 10*time.Second, "locker offline at the hub", func() bool { return !h.App.Broker.Online(id) })
	typeCode := func(c string) lockersim.CodeResult {
		body, _ := json.Marshal(map[string]string{"code": c})
		resp, err := http.Post("http://"+sim.ControlAddr()+"/lockers/"+id+"/code", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var out lockersim.CodeResult
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Equal(t, lockersim.CodeOffline, out.Path)
		return out
	}
	res := typeCode(code(valid))
	require.True(t, res.Opened, "%+v", res)
	require.Equal(t, "A02", res.Cell)
	require.Equal(t, "p-1", res.Parcel)
	require.Equal(t, protocol.DoorOpen, l.View(true).Cells["A02"].Door)
	require.Len(t, l.View(false).Parcels, 1, "the parcel left the list")

	// The same code again (its parcel is gone), an expired parcel's code, a wrong one: refused; then rate-limited.
	for _, c := range []string{code(valid), code(expired), "00000000"} {
		res = typeCode(c)
		require.False(t, res.Opened)
		require.Equal(t, protocol.ErrCodeWrongCode, res.Error.Code)
	}
	res = typeCode("11111111")
	require.Equal(t, protocol.ErrCodeRateLimited, res.Error.Code)
	require.Equal(t, protocol.DoorClosed, l.View(true).Cells["B01"].Door)

	// A rotation while offline cannot be sent; it goes out once the locker subscribes again.
	v2, err := h.App.CodeKeys.Rotate(ctx, id)
	require.NoError(t, err)

	// Back online: the pickup is reported and stored at the hub.
	l.ComeOnline()
	hubtest.Eventually(t, 10*time.Second, "rotated codes.key acknowledged after the reconnect", func() bool {
		_, d, err := h.App.CodeKeys.DeliveredVersion(ctx, id)
		return err == nil && d == v2 && l.View(false).CodeKey == v2
	})
	hubtest.Eventually(t, 30*time.Second, "door_opened code:p-1 stored at the hub", func() bool {
		var n int
		err := h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_events WHERE locker_id = $1 AND type = $2 AND cell = 'A02' AND cause = 'code:p-1'`,
			id, protocol.EventDoorOpened).Scan(&n)
		return err == nil && n == 1
	})
	var n int
	require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM fleet_events WHERE locker_id = $1 AND type = $2 AND cause = 'code:p-1'`,
		id, protocol.EventCodeOffline).Scan(&n))
	require.Equal(t, 1, n)

	// Online, a code is asked at the hub, which knows no parcel with it.
	body, _ := json.Marshal(map[string]string{"code": "22222222"})
	resp, err := http.Post("http://"+sim.ControlAddr()+"/lockers/"+id+"/code", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var online lockersim.CodeResult
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&online))
	require.Equal(t, lockersim.CodeOnline, online.Path)
	require.NotNil(t, online.Error)
	require.Equal(t, protocol.ErrCodeWrongCode, online.Error.Code)
}
