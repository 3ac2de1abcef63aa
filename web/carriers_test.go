package web_test

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
)

func idsOf(m map[string]any, key string) []string {
	var ids []string
	items, _ := m[key].([]any)
	for _, it := range items {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	sort.Strings(ids)
	return ids
}

// TestCarrierScope: a courier and an API client of a carrier see only the
// lockers assigned to it; another locker is 404 as one that does not exist,
// lists leave it out and the live stream never shows it.
func TestCarrierScope(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	for id, carriers := range map[string][]string{"L-dhl": {"dhl"}, "L-ups": {"ups"}, "L-both": {"ups", "dhl"}, "L-none": nil} {
		_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: id, Cells: 4, Carriers: carriers})
		require.NoError(t, err)
	}
	pw := access.RandomPassword()
	_, err := h.App.Access.AddUser(ctx, access.NewUser{Username: "kurt", Password: pw, Role: access.RoleCourier, Carrier: "dhl"})
	require.NoError(t, err)
	s := h.Login("kurt", pw)
	courier := caller{name: "courier", role: access.RoleCourier, client: s.Client, csrf: s.CSRF}
	_, tok, err := h.App.Access.CreateClient(ctx, "shop", "dhl", []string{access.ScopeLockersRead, access.ScopeTelemetryRead})
	require.NoError(t, err)
	client := caller{name: "client", role: access.RoleClient, token: tok}
	viewerPW := h.AddUser("vera", access.RoleViewer)
	vs := h.Login("vera", viewerPW)
	viewer := caller{name: "viewer", client: vs.Client}

	mine := []string{"L-both", "L-dhl"}
	for _, c := range []caller{courier, client} {
		t.Run(c.name, func(t *testing.T) {
			status, m := c.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
			require.Equal(t, 200, status)
			require.Equal(t, mine, idsOf(m, "lockers"))
			require.EqualValues(t, 2, m["total"])
			status, m = c.do(t, "GET", h.HTTPURL+"/api/v1/lockers?carrier=ups", "")
			require.Equal(t, 200, status)
			require.Empty(t, idsOf(m, "lockers"), "another carrier's lockers: none")
			status, m = c.do(t, "GET", h.HTTPURL+"/api/v1/fleet/overview", "")
			require.Equal(t, 200, status)
			require.Equal(t, mine, idsOf(m, "rows"))
			require.EqualValues(t, 2, m["summary"].(map[string]any)["lockers"], m["summary"])

			for _, p := range []string{"", "/cells", "/twin", "/events", "/connectivity", "/telemetry/latest"} {
				if !strings.HasPrefix(p, "/telemetry") { // no samples: 404 for any locker
					status, _ := c.do(t, "GET", h.HTTPURL+"/api/v1/lockers/L-dhl"+p, "")
					require.Equal(t, 200, status, p)
				}
				status, m := c.do(t, "GET", h.HTTPURL+"/api/v1/lockers/L-ups"+p, "")
				_, nx := c.do(t, "GET", h.HTTPURL+"/api/v1/lockers/L-nx"+p, "")
				require.Equal(t, 404, status, "L-ups%s: not theirs, so not found", p)
				require.Equal(t, "not_found", m["code"])
				if p == "" || p == "/cells" {
					// Word for word what a locker that does not exist gets.
					require.Equal(t, strings.ReplaceAll(nx["message"].(string), "L-nx", "L-ups"), m["message"])
				}
			}
		})
	}
	// Without a carrier: the whole fleet.
	status, m := viewer.do(t, "GET", h.HTTPURL+"/api/v1/lockers", "")
	require.Equal(t, 200, status)
	require.Len(t, idsOf(m, "lockers"), 4)

	// A technician limited to a carrier gets 404 for writes to other lockers, too.
	tpw := access.RandomPassword()
	_, err = h.App.Access.AddUser(ctx, access.NewUser{Username: "tess", Password: tpw, Role: access.RoleTechnician, Carrier: "dhl"})
	require.NoError(t, err)
	ts := h.Login("tess", tpw)
	tech := caller{client: ts.Client, csrf: ts.CSRF}
	status, _ = tech.do(t, "PATCH", h.HTTPURL+"/api/v1/lockers/L-ups", `{"address":"Elsewhere 1"}`)
	require.Equal(t, 404, status)
	l, err := h.Admin.Locker(ctx, "L-ups")
	require.NoError(t, err)
	require.Empty(t, l.Address, "nothing changed")
	// It installs lockers for its carrier, cannot give one away, nor import.
	status, m = tech.do(t, "POST", h.HTTPURL+"/api/v1/lockers", `{"id":"L-new","cells":2}`)
	require.Equal(t, 201, status, m)
	require.Equal(t, []any{"dhl"}, m["carriers"])
	status, m = tech.do(t, "PATCH", h.HTTPURL+"/api/v1/lockers/L-new", `{"carriers":["ups"]}`)
	require.Equal(t, 400, status)
	require.Contains(t, m["message"], "must keep dhl")
	status, _ = tech.do(t, "PATCH", h.HTTPURL+"/api/v1/lockers/L-new", `{"carriers":["ups","dhl"]}`)
	require.Equal(t, 200, status)
	req, err := http.NewRequest("POST", h.HTTPURL+"/api/v1/lockers/import", strings.NewReader("id\nL-imp\n"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("X-CSRF-Token", ts.CSRF)
	resp, err := ts.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 403, resp.StatusCode)
	_, err = h.Admin.DeleteLocker(ctx, "L-new")
	require.NoError(t, err)

	// The live stream: the courier's snapshot and deltas hold only its lockers.
	ctx5, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx5, strings.Replace(h.HTTPURL, "http", "ws", 1)+"/api/v1/stream",
		&websocket.DialOptions{HTTPClient: s.Client})
	require.NoError(t, err)
	t.Cleanup(func() { ws.CloseNow() })
	sendWatch(t, ws, `{"watch":"fleet","filter":{}}`)
	snap := snapshotOf(t, ws)
	var ids []string
	for _, r := range snap.Rows {
		ids = append(ids, r["id"].(string))
	}
	sort.Strings(ids)
	require.Equal(t, mine, ids)
	_, err = h.Admin.UpdateLocker(ctx, "L-ups", map[string]any{"address": "Ups Street 1"})
	require.NoError(t, err)
	_, err = h.Admin.UpdateLocker(ctx, "L-dhl", map[string]any{"address": "Dhl Street 1"})
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	sawDHL := false
	for !sawDHL && time.Now().Before(deadline) {
		msg, err := readMsg(t, ws, time.Until(deadline))
		require.NoError(t, err)
		for _, r := range msg.Rows {
			require.NotEqual(t, "L-ups", r["id"], "another carrier's locker in a delta")
			sawDHL = sawDHL || r["id"] == "L-dhl"
		}
	}
	require.True(t, sawDHL, "the courier's own locker changes live")
	// Watching another carrier's locker: an empty twin, as for an unknown one.
	sendWatch(t, ws, `{"watch":"locker","id":"L-ups"}`)
	snap = snapshotOf(t, ws)
	require.Equal(t, "L-ups", snap.Twin["locker_id"])
	require.Empty(t, snap.Twin["cells"])

	// Removing the carrier from a locker removes it from the courier's page.
	sendWatch(t, ws, `{"watch":"fleet","filter":{}}`)
	snapshotOf(t, ws)
	_, err = h.Admin.UpdateLocker(ctx, "L-both", map[string]any{"carriers": []string{"ups"}})
	require.NoError(t, err)
	waitRow(t, ws, "L-both", 5*time.Second, func(r map[string]any) bool { return r["deleted"] == true })
	status, _ = courier.do(t, "GET", h.HTTPURL+"/api/v1/lockers/L-both", "")
	require.Equal(t, 404, status)
}

// TestCarrierScopeCommands: a courier opens cells of its carrier's lockers
// only, sees only their commands, and may send no other command.
func TestCarrierScopeCommands(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	for id, carriers := range map[string][]string{"L-dhl": {"dhl"}, "L-ups": {"ups"}} {
		_, err := h.Admin.CreateLocker(ctx, apiclient.NewLocker{ID: id, Cells: 4, Carriers: carriers})
		require.NoError(t, err)
	}
	ups, err := h.Admin.OpenCell(ctx, "L-ups", "A01", "", 0)
	require.NoError(t, err)
	pw := access.RandomPassword()
	_, err = h.App.Access.AddUser(ctx, access.NewUser{Username: "kurt", Password: pw, Role: access.RoleCourier, Carrier: "dhl"})
	require.NoError(t, err)
	s := h.Login("kurt", pw)
	courier := caller{client: s.Client, csrf: s.CSRF}

	status, m := courier.do(t, "POST", h.HTTPURL+"/api/v1/lockers/L-ups/cells/A01/open", "")
	require.Equal(t, 404, status, "another carrier's locker does not exist for it")
	require.Equal(t, "not_found", m["code"])
	status, m = courier.do(t, "POST", h.HTTPURL+"/api/v1/lockers/L-dhl/cells/A01/open", "")
	require.Equal(t, 202, status, m)
	mine := m["id"].(string)
	status, m = courier.do(t, "POST", h.HTTPURL+"/api/v1/lockers/L-dhl/commands", `{"method":"locker.reboot"}`)
	require.Equal(t, 403, status, "a courier only opens cells")
	require.Equal(t, "forbidden", m["code"])

	status, _ = courier.do(t, "GET", h.HTTPURL+"/api/v1/commands/"+ups.ID, "")
	require.Equal(t, 404, status)
	status, _ = courier.do(t, "GET", h.HTTPURL+"/api/v1/commands/"+mine, "")
	require.Equal(t, 200, status)
	status, m = courier.do(t, "GET", h.HTTPURL+"/api/v1/commands", "")
	require.Equal(t, 200, status)
	var lockers []string
	for _, c := range m["commands"].([]any) {
		lockers = append(lockers, c.(map[string]any)["locker_id"].(string))
	}
	require.Equal(t, []string{"L-dhl"}, lockers)
}
