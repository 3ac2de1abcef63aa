package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/protocol"
)

// startSim enrols and connects n simulated lockers with ids prefix00001…
func startSim(t *testing.T, h *hubtest.Hub, prefix string, n int, mod func(*lockersim.Config)) *lockersim.Sim {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = n, 10, prefix
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = time.Hour // doors stay open: every open is counted once
	if mod != nil {
		mod(&cfg)
	}
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { cancel(); sim.Stop() })
	for _, l := range sim.Lockers() {
		hubtest.Eventually(t, 30*time.Second, l.ID()+" online at the hub", func() bool { return h.App.Broker.Online(l.ID()) })
	}
	return sim
}

func fastConfirm(c *app.Config) {
	c.Commands.ConfirmWithin = time.Second
	c.Commands.ResendAfter = 500 * time.Millisecond
}

// TestCellOpenOnceForOneIdempotencyKey: one key, many requests (at once and
// after the end), one door opening, MQTT 5 and 3.1.1 lockers alike; the same
// key with another cell is a conflict.
func TestCellOpenOnceForOneIdempotencyKey(t *testing.T) {
	h := hubtest.Start(t, fastConfirm)
	ctx := context.Background()
	for _, ver := range []byte{lockersim.MQTT5, lockersim.MQTT311} {
		prefix := fmt.Sprintf("V%d-", ver)
		sim := startSim(t, h, prefix, 1, func(c *lockersim.Config) { c.MQTTVersion = ver })
		id := prefix + "00001"
		key := "pickup-" + prefix

		var wg sync.WaitGroup
		cmds := make([]apiclient.Command, 8)
		errs := make([]error, 8)
		for i := range cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmds[i], errs[i] = h.Admin.OpenCell(ctx, id, "A02", key, 10*time.Second)
			}()
		}
		wg.Wait()
		replays := 0
		for i := range cmds {
			require.NoError(t, errs[i])
			require.Equal(t, cmds[0].ID, cmds[i].ID, "one key, one command")
			require.Equal(t, "succeeded", cmds[i].State, "%+v", cmds[i])
			if cmds[i].Replayed {
				replays++
			}
		}
		require.Equal(t, len(cmds)-1, replays)
		require.NotNil(t, cmds[0].ConfirmedAt, "confirmed by the door sensor")

		again, err := h.Admin.OpenCell(ctx, id, "A02", key, 0)
		require.NoError(t, err)
		require.Equal(t, cmds[0].ID, again.ID)
		require.True(t, again.Replayed)
		require.Equal(t, "succeeded", again.State)

		_, err = h.Admin.OpenCell(ctx, id, "A03", key, 0)
		require.True(t, apiclient.IsCode(err, "idempotency_conflict"), "%v", err)

		l := sim.Locker(id)
		require.EqualValues(t, 1, l.View(false).CommandOpens, "one door opening")
		require.Equal(t, protocol.DoorOpen, l.View(true).Cells["A02"].Door)
		require.Equal(t, protocol.DoorClosed, l.View(true).Cells["A03"].Door)
	}

}

// TestCommandsBadInput: unknown cell and locker, malformed bodies and
// parameters are refused with a code, nothing stored.
func TestCommandsBadInput(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: "L1", Cells: 4})
	require.NoError(t, err)
	for _, tc := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/api/v1/lockers/L1/cells/Z99/open", ``, 404, "unknown_cell"},
		{"/api/v1/lockers/L2/cells/A01/open", ``, 404, "not_found"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open","params":{"cell":"Z99"}}`, 404, "unknown_cell"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open"`, 400, "bad_json"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open","params":{}}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open","params":{"cell":"A01","x":1}}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"self.destruct"}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"locker.reboot","params":{"now":true}}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"display.message","params":{"text":""}}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open","params":{"cell":"A01"},"valid_for":"2h"}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open","params":{"cell":"A01"},"valid_for":"soon"}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands", `{"method":"cell.open","params":{"cell":"A01"},"not_after":"2020-01-01T00:00:00Z"}`, 400, "invalid"},
		{"/api/v1/lockers/L1/commands?wait=2h", `{"method":"cell.open","params":{"cell":"A01"}}`, 400, "invalid"},
		{"/api/v1/commands/c-nope", ``, 404, "not_found"},
		{"/api/v1/commands?state=lost", ``, 400, "invalid"},
	} {
		method := "POST"
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		if tc.path[:len("/api/v1/commands")] == "/api/v1/commands" {
			method = "GET"
		}
		_, status, err := h.Admin.Do(ctx, method, tc.path, body)
		require.Equal(t, tc.status, status, "%s %s: %v", tc.path, tc.body, err)
		require.True(t, apiclient.IsCode(err, tc.code), "%s %s: %v", tc.path, tc.body, err)
	}
	cmds, err := h.Admin.Commands(ctx, apiclient.CommandFilter{})
	require.NoError(t, err)
	require.Empty(t, cmds, "nothing stored")

	// Offline: accepted, pending (it waits).
	cmd, err := h.Admin.OpenCell(ctx, "L1", "A01", "", 0)
	require.NoError(t, err)
	require.Equal(t, "pending", cmd.State)
	require.Zero(t, cmd.Attempts)
}

// TestOfflineLockerGetsValidCommandsOnly: commands to an offline locker wait;
// on its reconnect the valid one is delivered and the expired one never
// reaches it.
func TestOfflineLockerGetsValidCommandsOnly(t *testing.T) {
	h := hubtest.Start(t, fastConfirm)
	ctx := context.Background()
	sim := startSim(t, h, "OFF-", 1, nil)
	l := sim.Locker("OFF-00001")
	l.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "locker offline", func() bool { return !h.App.Broker.Online("OFF-00001") })
	rpcs := l.View(false).RPCs

	short, err := h.Admin.SendCommand(ctx, "OFF-00001", apiclient.NewCommand{Method: "cell.open", Params: []byte(`{"cell":"A01"}`), ValidFor: "1s"}, 0)
	require.NoError(t, err)
	long, err := h.Admin.SendCommand(ctx, "OFF-00001", apiclient.NewCommand{Method: "cell.open", Params: []byte(`{"cell":"A02"}`), ValidFor: "1m"}, 0)
	require.NoError(t, err)
	require.Equal(t, "pending", long.State)

	short, err = h.Admin.Command(ctx, short.ID, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "expired", short.State)
	require.Equal(t, "not_sent", short.Error.Code)
	require.Zero(t, short.Attempts)

	l.ComeOnline()
	long, err = h.Admin.Command(ctx, long.ID, 20*time.Second)
	require.NoError(t, err)
	require.Equal(t, "succeeded", long.State, "%+v", long)
	v := l.View(true)
	require.Equal(t, protocol.DoorOpen, v.Cells["A02"].Door)
	require.Equal(t, protocol.DoorClosed, v.Cells["A01"].Door, "the expired command never opened its door")
	require.Equal(t, rpcs+1, v.RPCs, "the locker saw only the valid command (once)")

	listed, err := h.Admin.Commands(ctx, apiclient.CommandFilter{Locker: "OFF-00001", State: "expired"})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, short.ID, listed[0].ID)
}

// TestCommandsSurviveRestart: a command stored for an offline locker survives
// a hub restart and is delivered after it; a command that succeeded before
// the restart is not executed again.
func TestCommandsSurviveRestart(t *testing.T) {
	h := hubtest.Start(t, fastConfirm)
	ctx := context.Background()
	sim := startSim(t, h, "RS-", 1, nil)
	l := sim.Locker("RS-00001")
	done, err := h.Admin.OpenCell(ctx, "RS-00001", "A01", "k1", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "succeeded", done.State)

	l.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "locker offline", func() bool { return !h.App.Broker.Online("RS-00001") })
	waiting, err := h.Admin.OpenCell(ctx, "RS-00001", "A03", "k2", 0)
	require.NoError(t, err)
	require.Equal(t, "pending", waiting.State)

	h.Restart()
	l.ComeOnline()
	got, err := h.Admin.Command(ctx, waiting.ID, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, "succeeded", got.State, "%+v", got)
	again, err := h.Admin.OpenCell(ctx, "RS-00001", "A01", "k1", 0)
	require.NoError(t, err)
	require.Equal(t, done.ID, again.ID)
	require.EqualValues(t, 2, l.View(false).CommandOpens, "A01 once, A03 once")
}

// TestRestartWhileSentResendsAndOpensOnce: a command sent but not settled
// when the hub stopped. With its door event stored, the restart settles it
// from the events without sending it again; without (the event still on its
// way), it is sent again, the locker answers from its key cache without
// acting again, and the door the twin has open confirms it.
func TestRestartWhileSentResendsAndOpensOnce(t *testing.T) {
	h := hubtest.Start(t, fastConfirm)
	ctx := context.Background()
	sim := startSim(t, h, "RSS-", 1, func(c *lockersim.Config) { c.MQTTVersion = lockersim.MQTT311 })
	l := sim.Locker("RSS-00001")
	unsettle := func(id string, dropEvent bool) {
		hubtest.Eventually(t, 5*time.Second, "final state stored", func() bool {
			var state string
			err := h.App.Pool.QueryRow(ctx, `SELECT state FROM fleet_commands WHERE id = $1`, id).Scan(&state)
			return err == nil && state == "succeeded"
		})
		_, err := h.App.Pool.Exec(ctx, `UPDATE fleet_commands SET state = 'sent', answered_at = NULL, confirmed_at = NULL,
			finished_at = NULL, result = NULL WHERE id = $1`, id)
		require.NoError(t, err)
		if dropEvent {
			_, err = h.App.Pool.Exec(ctx, `DELETE FROM fleet_events WHERE cause = $1`, "command:"+id)
			require.NoError(t, err)
		}
	}
	for _, dropEvent := range []bool{false, true} {
		cell := map[bool]string{false: "A05", true: "A06"}[dropEvent]
		cmd, err := h.Admin.OpenCell(ctx, "RSS-00001", cell, "", 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, "succeeded", cmd.State)
		opens := l.View(false).CommandOpens
		unsettle(cmd.ID, dropEvent)
		rpcs := l.View(false).RPCs
		h.Restart()
		got, err := h.Admin.Command(ctx, cmd.ID, 30*time.Second)
		require.NoError(t, err)
		require.Equal(t, "succeeded", got.State, "event dropped %v: %+v", dropEvent, got)
		if dropEvent {
			require.NotNil(t, got.AnsweredAt)
			require.Greater(t, l.View(false).RPCs, rpcs, "sent again")
		} else {
			require.NotNil(t, got.ConfirmedAt)
			require.Equal(t, rpcs, l.View(false).RPCs, "settled from the stored event, not sent again")
		}
		require.Equal(t, opens, l.View(false).CommandOpens, "the door did not open twice")
		hubtest.Eventually(t, 30*time.Second, "locker back", func() bool { return h.App.Broker.Online("RSS-00001") })
	}
}

// TestCellOpenUnconfirmedWhenTheDoorStaysShut: the locker answers, the door
// sensor never reports the door open: unconfirmed, not succeeded. A jammed
// lock is a failure with the locker's code.
func TestCellOpenUnconfirmedWhenTheDoorStaysShut(t *testing.T) {
	h := hubtest.Start(t, fastConfirm)
	ctx := context.Background()
	startSim(t, h, "STK-", 1, func(c *lockersim.Config) { c.StuckDoorPct = 100 })
	cmd, err := h.Admin.OpenCell(ctx, "STK-00001", "A01", "", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "unconfirmed", cmd.State, "%+v", cmd)
	require.Equal(t, "door_not_opened", cmd.Error.Code)
	require.NotNil(t, cmd.AnsweredAt)

	startSim(t, h, "JAM-", 1, func(c *lockersim.Config) { c.JamPct = 100 })
	cmd, err = h.Admin.OpenCell(ctx, "JAM-00001", "A01", "", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "failed", cmd.State)
	require.Equal(t, protocol.ErrCodeJammed, cmd.Error.Code)

	// Other methods succeed on the answer.
	for _, nc := range []apiclient.NewCommand{
		{Method: "cell.status", Params: []byte(`{"cell":"A01"}`)},
		{Method: "display.message", Params: []byte(`{"text":"Hello"}`)},
	} {
		got, err := h.Admin.SendCommand(ctx, "JAM-00001", nc, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, "succeeded", got.State, "%s: %+v", nc.Method, got)
		require.NotEmpty(t, got.Result)
	}
}

// TestDoorConfirmationWaitsForTheDatabase: a cell.open reaches its locker
// while PostgreSQL is away; the locker answers (rpc/res needs no database)
// and opens the door, but its door event waits unacknowledged for the
// database. The confirmation window must not run out meanwhile: once the
// database is back the event is stored and the command succeeds (found by
// the fault suite's 60 s PostgreSQL outage: it ended unconfirmed, though
// the door had opened at once).
func TestDoorConfirmationWaitsForTheDatabase(t *testing.T) {
	var proxy *pgtest.Proxy
	h := hubtest.Start(t, fastConfirm, func(c *app.Config) { c.DatabaseURL, proxy = pgtest.Proxied(t, c.DatabaseURL) })
	ctx := context.Background()
	sim := startSim(t, h, "DBW-", 1, nil)
	l := sim.Locker("DBW-00001")
	l.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "locker offline", func() bool { return !h.App.Broker.Online(l.ID()) })
	cmd, err := h.Admin.OpenCell(ctx, l.ID(), "A01", "", 0)
	require.NoError(t, err)
	require.Equal(t, "pending", cmd.State)

	proxy.Cut()
	l.ComeOnline()
	hubtest.Eventually(t, 20*time.Second, "the locker opened the door and the hub has its answer", func() bool {
		got, err := h.App.Commands.Get(ctx, cmd.ID)
		require.NoError(t, err)
		return l.View(false).CommandOpens == 1 && got.AnsweredAt != nil
	})
	// Eight confirmation windows without the database: still waiting.
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		got, err := h.App.Commands.Get(ctx, cmd.ID)
		require.NoError(t, err)
		require.Equal(t, "sent", got.State, "%+v", got)
		time.Sleep(100 * time.Millisecond)
	}
	proxy.Restore()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got, err := h.App.Commands.Wait(wctx, cmd.ID)
	require.NoError(t, err)
	require.Equal(t, "succeeded", got.State, "%+v", got)
	require.NotNil(t, got.ConfirmedAt)
	require.EqualValues(t, 1, l.View(false).CommandOpens, "the door opened once")
}

// TestRestartUnderLoadLosesNoCommandAndOpensOnce: callers open 40 cells with
// an idempotency key each and repeat on any error until they see a final
// state; the hub restarts while they do. Every command succeeds, each key
// is one command, and every door opened exactly once.
func TestRestartUnderLoadLosesNoCommandAndOpensOnce(t *testing.T) {
	h := hubtest.Start(t, fastConfirm)
	sim := startSim(t, h, "LD-", 5, nil)
	api := apiclient.New(h.HTTPURL, h.AdminToken) // h.Admin is replaced by Restart
	const n = 40
	ids := make([]string, n)
	states := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		if i == n/2 {
			h.Restart()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			locker, cell := fmt.Sprintf("LD-%05d", i%5+1), fmt.Sprintf("A%02d", i/5+1)
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				cmd, err := api.OpenCell(ctx, locker, cell, fmt.Sprintf("load-%d", i), 10*time.Second)
				cancel()
				if err == nil && cmd.Final() {
					ids[i], states[i] = cmd.ID, cmd.State
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		require.Equal(t, "succeeded", states[i], "command %d (%s)", i, ids[i])
		require.False(t, seen[ids[i]], "one command per key")
		seen[ids[i]] = true
	}
	var opens uint64
	for _, l := range sim.Lockers() {
		opens += l.View(false).CommandOpens
	}
	require.EqualValues(t, n, opens, "every door opened exactly once")
}
