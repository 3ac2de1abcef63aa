package lockersim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
	"github.com/stretchr/testify/require"
)

// fakeHub is a test client on Mosquitto that plays the hub: it sees what the
// lockers publish and publishes rpc/req, ask/res and desired to them.
type fakeHub struct {
	t    *testing.T
	c    *Client
	mu   sync.Mutex
	msgs []hubMsg
	seen map[string]int // per topic: messages before this index are consumed
}

type hubMsg struct {
	topic string
	raw   []byte
	obj   map[string]any
}

func newFakeHub(t *testing.T, ids ...string) *fakeHub {
	t.Helper()
	h := &fakeHub{t: t, seen: map[string]int{}}
	var filters []string
	for _, id := range ids {
		filters = append(filters, "lockers/"+id+"/#")
	}
	c, err := Connect(t.Context(), ClientOptions{
		Addr: mosquittoAddr, ClientID: uniqueName(t) + "-hub", Subscribe: filters, Keepalive: 30 * time.Second,
		OnMessage: func(topic string, payload []byte) {
			var obj map[string]any
			_ = json.Unmarshal(payload, &obj)
			h.mu.Lock()
			h.msgs = append(h.msgs, hubMsg{topic: topic, raw: append([]byte(nil), payload...), obj: obj})
			h.mu.Unlock()
		},
	})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { c.ReadLoop(); close(done) }()
	t.Cleanup(func() { c.Disconnect(); <-done })
	h.c = c
	return h
}

// next waits for the next message on lockers/id/kind (after the ones already
// consumed on that topic) that satisfies match, and consumes the topic up to it.
func (h *fakeHub) next(id string, kind protocol.Kind, match func(m hubMsg) bool) hubMsg {
	h.t.Helper()
	topic := protocol.Topic(id, kind)
	var found hubMsg
	ok := false
	deadline := time.Now().Add(10 * time.Second)
	for !ok && time.Now().Before(deadline) {
		h.mu.Lock()
		for i := h.seen[topic]; i < len(h.msgs); i++ {
			m := h.msgs[i]
			if m.topic == topic && (match == nil || match(m)) {
				found, ok = m, true
				h.seen[topic] = i + 1
				break
			}
		}
		h.mu.Unlock()
		if !ok {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !ok {
		h.mu.Lock()
		var all []string
		for _, m := range h.msgs[h.seen[topic]:] {
			if m.topic == topic {
				all = append(all, string(m.raw))
			}
		}
		h.mu.Unlock()
		h.t.Fatalf("no matching message on %s; unconsumed:\n%s", topic, strings.Join(all, "\n"))
	}
	return found
}

func (h *fakeHub) publish(id string, kind protocol.Kind, v any) {
	h.t.Helper()
	data, err := json.Marshal(v)
	require.NoError(h.t, err)
	require.NoError(h.t, h.c.Publish(protocol.Topic(id, kind), data, 0, 0))
}

func eventType(typ string) func(hubMsg) bool {
	return func(m hubMsg) bool { return m.obj["type"] == typ }
}

func cellState(m hubMsg, cell string) map[string]any {
	cells, _ := m.obj["cells"].(map[string]any)
	c, _ := cells[cell].(map[string]any)
	return c
}

func hasCell(cell string) func(hubMsg) bool {
	return func(m hubMsg) bool { return cellState(m, cell) != nil }
}

type ctlClient struct {
	t    *testing.T
	base string
}

func (c ctlClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	require.NoError(c.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func (c ctlClient) ok(method, path string, body any) map[string]any {
	c.t.Helper()
	status, out := c.do(method, path, body)
	require.Equal(c.t, http.StatusOK, status, "%s %s: %v", method, path, out)
	return out
}

func TestControlAPIAgainstMosquitto(t *testing.T) {
	needMosquitto(t)
	prefix := fmt.Sprintf("T%s-", strings.ToUpper(uniqueName(t)[len(uniqueName(t))-6:]))
	id1, id2 := LockerID(prefix, 1, 2), LockerID(prefix, 2, 2)
	hub := newFakeHub(t, id1, id2)
	s := startTestSim(t, mosquittoAddr, func(c *Config) {
		c.Prefix = prefix
		c.Lockers = 2
		c.Control = "127.0.0.1:0"
		c.DoorClose = 200 * time.Millisecond
		c.AskTimeout = 5 * time.Second
	})
	ctl := ctlClient{t: t, base: "http://" + s.ControlAddr()}

	for _, id := range []string{id1, id2} {
		full := hub.next(id, protocol.KindState, func(m hubMsg) bool { return m.obj["full"] == true })
		require.EqualValues(t, 1, full.obj["boot"])
		require.Equal(t, Firmware, full.obj["firmware"])
		require.Len(t, full.obj["cells"], 4)
	}
	require.Eventually(t, func() bool {
		_, out := ctl.do("GET", "/lockers", nil)
		ls := out["lockers"].([]any)
		return len(ls) == 2 && ls[0].(map[string]any)["connected"] == true && ls[1].(map[string]any)["connected"] == true
	}, 10*time.Second, 10*time.Millisecond)
	v := ctl.ok("GET", "/lockers/"+id1, nil)
	require.Equal(t, "closed", v["cells"].(map[string]any)["A01"].(map[string]any)["door"])

	// A door opened with no cause is forced (decision 17).
	ctl.ok("POST", "/lockers/"+id1+"/cells/A01/open", nil)
	ev := hub.next(id1, protocol.KindEvents, eventType("door_forced"))
	require.Equal(t, "A01", ev.obj["cell"])
	require.Nil(t, ev.obj["cause"])
	st := hub.next(id1, protocol.KindState, hasCell("A01"))
	require.Equal(t, map[string]any{"door": "open", "lock": "locked", "occupied": false}, cellState(st, "A01"))

	// Deposit, close.
	ctl.ok("POST", "/lockers/"+id1+"/cells/A01/deposit", nil)
	st = hub.next(id1, protocol.KindState, hasCell("A01"))
	require.Equal(t, true, cellState(st, "A01")["occupied"])
	ctl.ok("POST", "/lockers/"+id1+"/cells/A01/close", nil)
	hub.next(id1, protocol.KindEvents, eventType("door_closed"))
	st = hub.next(id1, protocol.KindState, hasCell("A01"))
	require.Equal(t, map[string]any{"door": "closed", "lock": "locked", "occupied": true}, cellState(st, "A01"))

	// Opened with a cause: the lock releases, door_opened carries it; take the parcel.
	ctl.ok("POST", "/lockers/"+id1+"/cells/A01/open", map[string]string{"cause": "code:p-551"})
	ev = hub.next(id1, protocol.KindEvents, eventType("door_opened"))
	require.Equal(t, "code:p-551", ev.obj["cause"])
	ctl.ok("POST", "/lockers/"+id1+"/cells/A01/take", nil)
	st = hub.next(id1, protocol.KindState, func(m hubMsg) bool { return cellState(m, "A01")["occupied"] == false })
	ctl.ok("POST", "/lockers/"+id1+"/cells/A01/close", nil)
	hub.next(id1, protocol.KindEvents, eventType("door_closed"))

	// Refusals.
	status, out := ctl.do("POST", "/lockers/"+id1+"/cells/A01/close", nil)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "conflict", out["code"])
	status, out = ctl.do("POST", "/lockers/"+id1+"/cells/A01/deposit", nil)
	require.Equal(t, http.StatusConflict, status, "deposit needs an open door: %v", out)
	status, out = ctl.do("POST", "/lockers/"+id1+"/cells/Q07/open", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "unknown_cell", out["code"])
	status, _ = ctl.do("POST", "/lockers/NOPE/tamper", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _ = ctl.do("POST", "/lockers/"+id1+"/offline", map[string]any{"seconds": -1})
	require.Equal(t, http.StatusBadRequest, status)

	// Mains and tamper.
	ctl.ok("POST", "/lockers/"+id2+"/mains/cut", nil)
	hub.next(id2, protocol.KindEvents, eventType("power_lost"))
	st = hub.next(id2, protocol.KindState, func(m hubMsg) bool { return m.obj["power"] != nil })
	require.Equal(t, false, st.obj["power"].(map[string]any)["mains"])
	ctl.ok("POST", "/lockers/"+id2+"/mains/restore", nil)
	hub.next(id2, protocol.KindEvents, eventType("power_restored"))
	ctl.ok("POST", "/lockers/"+id2+"/tamper", nil)
	tamper := hub.next(id2, protocol.KindEvents, eventType("tamper"))
	require.NotEmpty(t, tamper.obj["id"])

	// Typing a code asks the hub; the control API returns the hub's answer.
	type askOut struct {
		status int
		body   map[string]any
	}
	answered := make(chan askOut, 1)
	go func() {
		status, out := ctl.do("POST", "/lockers/"+id1+"/code", map[string]string{"code": "48213907"})
		answered <- askOut{status, out}
	}()
	ask := hub.next(id1, protocol.KindAskReq, nil)
	require.Equal(t, protocol.AskCodeCheck, ask.obj["method"])
	require.Equal(t, map[string]any{"code": "48213907"}, ask.obj["params"])
	require.NotZero(t, ask.obj["seq"])
	require.EqualValues(t, 1, ask.obj["boot"])
	hub.publish(id1, protocol.KindAskRes, map[string]any{"id": ask.obj["id"], "result": map[string]any{"cell": "B03", "parcel": "p-551"}})
	a := <-answered
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, map[string]any{"cell": "B03", "parcel": "p-551"}, a.body["result"])

	go func() {
		status, out := ctl.do("POST", "/lockers/"+id1+"/barcode", map[string]string{"barcode": "JJD0001"})
		answered <- askOut{status, out}
	}()
	ask = hub.next(id1, protocol.KindAskReq, nil)
	require.Equal(t, protocol.AskBarcodeCheck, ask.obj["method"])
	hub.publish(id1, protocol.KindAskRes, map[string]any{"id": ask.obj["id"], "error": map[string]any{"code": "unknown_barcode", "message": "no such parcel"}})
	a = <-answered
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "unknown_barcode", a.body["error"].(map[string]any)["code"])

	// A command from the hub: the door opens with the command as cause and closes itself.
	hub.publish(id2, protocol.KindRPCReq, protocol.Request{ID: "c-81", Method: protocol.MethodCellOpen,
		Params: json.RawMessage(`{"cell":"A03"}`), Key: "c-81", NotAfter: time.Now().Add(time.Minute).UnixMilli()})
	ev = hub.next(id2, protocol.KindEvents, eventType("door_opened"))
	require.Equal(t, "command:c-81", ev.obj["cause"])
	res := hub.next(id2, protocol.KindRPCRes, nil)
	require.JSONEq(t, `{"id":"c-81","result":{"opened":true}}`, string(res.raw))
	st = hub.next(id2, protocol.KindState, hasCell("A03"))
	require.Equal(t, map[string]any{"door": "open", "lock": "unlocked", "occupied": false}, cellState(st, "A03"))
	hub.next(id2, protocol.KindEvents, eventType("door_closed"))
	st = hub.next(id2, protocol.KindState, hasCell("A03"))
	require.Equal(t, map[string]any{"door": "closed", "lock": "locked", "occupied": false}, cellState(st, "A03"))

	// Offline: the connection drops, messages queue, and come after reconnecting.
	ctl.ok("POST", "/lockers/"+id2+"/offline", map[string]any{"seconds": 60})
	require.Eventually(t, func() bool { return ctl.ok("GET", "/lockers/"+id2, nil)["connected"] == false }, 5*time.Second, 5*time.Millisecond)
	before := ctl.ok("GET", "/lockers/"+id2, nil)["queued"].(float64)
	ctl.ok("POST", "/lockers/"+id2+"/tamper", nil)
	require.Equal(t, before+1, ctl.ok("GET", "/lockers/"+id2, nil)["queued"], "queued while offline")
	ctl.ok("POST", "/lockers/"+id2+"/online", nil)
	offlineTamper := hub.next(id2, protocol.KindEvents, eventType("tamper"))
	full := hub.next(id2, protocol.KindState, func(m hubMsg) bool { return m.obj["full"] == true })
	require.Greater(t, full.obj["seq"].(float64), offlineTamper.obj["seq"].(float64))

	// Reboot: boot+1, seq from 1, full state again. (Messages of boot 1 still
	// unacknowledged at the reboot come first, republished.)
	ctl.ok("POST", "/lockers/"+id2+"/reboot", nil)
	full = hub.next(id2, protocol.KindState, func(m hubMsg) bool { return m.obj["full"] == true && m.obj["boot"] != 1.0 })
	require.EqualValues(t, 2, full.obj["boot"])
	require.EqualValues(t, 1, full.obj["seq"])

	// The hub reboots it too (locker.reboot answers first).
	hub.publish(id2, protocol.KindRPCReq, protocol.Request{ID: "r-1", Method: protocol.MethodLockerReboot})
	res = hub.next(id2, protocol.KindRPCRes, nil)
	require.JSONEq(t, `{"id":"r-1","result":{"rebooting":true}}`, string(res.raw))
	full = hub.next(id2, protocol.KindState, func(m hubMsg) bool { return m.obj["full"] == true && m.obj["boot"] == 3.0 })

	// desired: reported as applied.
	hub.publish(id1, protocol.KindDesired, protocol.Desired{Version: 7, Config: json.RawMessage(`{}`)})
	st = hub.next(id1, protocol.KindState, func(m hubMsg) bool { return m.obj["desired_version"] != nil })
	require.EqualValues(t, 7, st.obj["desired_version"])

	stats := ctl.ok("GET", "/stats", nil)
	require.EqualValues(t, 2, stats["lockers"])
	require.EqualValues(t, 2, stats["boots"])
	require.Greater(t, stats["acked"].(float64), 10.0)
}

func TestAskTimesOutWithoutAnswer(t *testing.T) {
	needMosquitto(t)
	prefix := fmt.Sprintf("U%s-", strings.ToUpper(uniqueName(t)[len(uniqueName(t))-6:]))
	s := startTestSim(t, mosquittoAddr, func(c *Config) {
		c.Prefix = prefix
		c.Control = "127.0.0.1:0"
		c.AskTimeout = 200 * time.Millisecond
	})
	ctl := ctlClient{t: t, base: "http://" + s.ControlAddr()}
	// A barcode without an answer in time is checked offline: a drop-off
	// scan needs the hub.
	status, out := ctl.do("POST", "/lockers/"+LockerID(prefix, 1, 1)+"/barcode", map[string]string{"barcode": "1"})
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, protocol.ErrCodeOffline, out["error"].(map[string]any)["code"])
	// A pickup code without an answer in time is checked offline (no key, no list here).
	out = ctl.ok("POST", "/lockers/"+LockerID(prefix, 1, 1)+"/code", map[string]string{"code": "12345678"})
	require.Equal(t, "offline", out["path"])
	require.Equal(t, false, out["opened"])
	require.Equal(t, protocol.ErrCodeWrongCode, out["error"].(map[string]any)["code"])
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := s.Lockers()[0].Ask(ctx, "code.check", nil)
	require.Error(t, err)
}

// TestDemoSMSGateway: the control API takes the hub's SMS (--sms-url) and
// shows them, newest first, per number, keeping the last 100.
func TestDemoSMSGateway(t *testing.T) {
	needMosquitto(t)
	prefix := fmt.Sprintf("S%s-", strings.ToUpper(uniqueName(t)[len(uniqueName(t))-6:]))
	s := startTestSim(t, mosquittoAddr, func(c *Config) {
		c.Prefix = prefix
		c.Control = "127.0.0.1:0"
	})
	base := "http://" + s.ControlAddr()
	for i := range 102 {
		ctl := ctlClient{t: t, base: base}
		ctl.ok("POST", "/sms", map[string]string{"to": fmt.Sprintf("+4917%d", i%2), "text": fmt.Sprintf("code %08d", i), "id": fmt.Sprint(i)})
	}
	resp, err := http.Post(base+"/sms", "application/json", strings.NewReader(`{"text":"no number"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	list := func(q string) []Text {
		resp, err := http.Get(base + "/sms" + q)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out []Text
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	all := list("")
	require.Len(t, all, 100, "the oldest go")
	require.Equal(t, "code 00000101", all[0].Text, "newest first")
	one := list("?to=%2B49170")
	require.Len(t, one, 50)
	for _, m := range one {
		require.Equal(t, "+49170", m.To)
	}
}
