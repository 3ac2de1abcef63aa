package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/hubtest"
)

type streamMsg struct {
	Type    string           `json:"type"`
	Summary map[string]any   `json:"summary"`
	Rows    []map[string]any `json:"rows"`
	Twin    map[string]any   `json:"twin"`
}

func dialStream(t *testing.T, h *hubtest.Hub) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(h.HTTPURL, "http", "ws", 1)+"/api/v1/stream",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + h.AdminToken}}})
	require.NoError(t, err)
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func readMsg(t *testing.T, ws *websocket.Conn, within time.Duration) (streamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, data, err := ws.Read(ctx)
	if err != nil {
		return streamMsg{}, err
	}
	var m streamMsg
	require.NoError(t, json.Unmarshal(data, &m))
	return m, nil
}

func sendWatch(t *testing.T, ws *websocket.Conn, v string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(v)))
}

// snapshotOf reads until the snapshot (deltas sent before the watch changed
// may come first).
func snapshotOf(t *testing.T, ws *websocket.Conn) streamMsg {
	t.Helper()
	for {
		m, err := readMsg(t, ws, 5*time.Second)
		require.NoError(t, err)
		if m.Type == "snapshot" {
			return m
		}
	}
}

// waitRow reads deltas until one shows the locker's row passing ok.
func waitRow(t *testing.T, ws *websocket.Conn, id string, within time.Duration, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		m, err := readMsg(t, ws, time.Until(deadline))
		if err != nil {
			break
		}
		for _, r := range m.Rows {
			if r["id"] == id && ok(r) {
				return r
			}
		}
	}
	t.Fatalf("no row of %s as wanted within %s", id, within)
	return nil
}

func TestStreamSendsSnapshotThenDeltas(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("L1")
	h.AddLocker("L2")
	ws := dialStream(t, h)
	sendWatch(t, ws, `{"watch":"fleet"}`)
	snap, err := readMsg(t, ws, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "snapshot", snap.Type)
	require.Equal(t, float64(2), snap.Summary["lockers"])
	require.Len(t, snap.Rows, 2)

	mosquittoPub(t, h, cert, "L1", "state", `{"boot":1,"seq":1,"ts":1795389000000,"cells":{"A01":{"door":"open","lock":"unlocked","occupied":false},"A02":{"door":"closed","lock":"locked","occupied":false}},"power":{"mains":false}}`)
	// Deltas are coalesced per locker: wait for the row showing the report and,
	// as mosquitto_pub has disconnected, offline (it was seen, so not "unknown").
	row := waitRow(t, ws, "L1", 3*time.Second, func(r map[string]any) bool {
		return r["open_doors"] == float64(1) && r["presence"] == "offline"
	})
	require.Equal(t, true, row["on_battery"])
	require.Equal(t, float64(1), row["free_cells"].(map[string]any)["M"], "A02 is free; A01 is open")

	// A filter: rows leaving it are sent as deleted.
	sendWatch(t, ws, `{"watch":"fleet","filter":{"q":"L2"}}`)
	snap = snapshotOf(t, ws)
	require.Len(t, snap.Rows, 1)
	require.Equal(t, "L2", snap.Rows[0]["id"])

	// One locker's twin.
	sendWatch(t, ws, `{"watch":"locker","id":"L1"}`)
	snap = snapshotOf(t, ws)
	require.Equal(t, "open", snap.Twin["reported"].(map[string]any)["cells"].(map[string]any)["A01"].(map[string]any)["door"])
	require.Equal(t, false, snap.Twin["connectivity"].(map[string]any)["online"])
	require.NotEmpty(t, snap.Twin["connectivity"].(map[string]any)["since"], "offline since the disconnect")

	status, body := call(t, "GET", h.HTTPURL+"/api/v1/fleet/summary?segment=test", h.AdminToken, "")
	require.Equal(t, 200, status)
	require.Equal(t, float64(2), body["lockers"])
	require.Equal(t, float64(1), body["on_battery"])
}

func TestStreamRefusesNonsenseAndStrangers(t *testing.T) {
	h := hubtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, strings.Replace(h.HTTPURL, "http", "ws", 1)+"/api/v1/stream", nil)
	require.Error(t, err)
	require.Equal(t, 401, resp.StatusCode)

	ws := dialStream(t, h)
	sendWatch(t, ws, `{"watch":"everything"}`)
	_, err = readMsg(t, ws, 5*time.Second)
	require.Equal(t, websocket.StatusPolicyViolation, websocket.CloseStatus(err))
}
