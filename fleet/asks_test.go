package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/protocol"
)

type puback struct {
	id     uint16
	reason byte
	stored bool // the ask's answer was in fleet_asks when the PUBACK arrived
}

// askLocker is a bare MQTT 5 client acting as a locker that asks.
type askLocker struct {
	t       *testing.T
	id      string
	c       *lockersim.Client
	acks    chan puback
	answers chan protocol.Response
	pending sync.Map // packet id → ask id
	nextID  uint16
}

func connectAskLocker(t *testing.T, h *hubtest.Hub, cert hubtest.DeviceCert, id string) *askLocker {
	t.Helper()
	l := &askLocker{t: t, id: id, acks: make(chan puback, 16), answers: make(chan protocol.Response, 16)}
	c, err := lockersim.Connect(t.Context(), lockersim.ClientOptions{
		Addr: h.MQTTAddr, TLS: h.ClientTLS(cert), ClientID: id, Version: lockersim.MQTT5,
		Subscribe: []string{protocol.Topic(id, protocol.KindAskRes)},
		OnMessage: func(topic string, payload []byte) {
			var res protocol.Response
			if json.Unmarshal(payload, &res) == nil {
				l.answers <- res
			}
		},
		OnPuback: func(pid uint16, reason byte) {
			askID, _ := l.pending.Load(pid)
			var n int
			err := h.App.Pool.QueryRow(context.Background(), `SELECT count(*) FROM fleet_asks WHERE locker_id = $1 AND ask_id = $2`,
				id, askID).Scan(&n)
			l.acks <- puback{id: pid, reason: reason, stored: err == nil && n == 1}
		},
	})
	require.NoError(t, err)
	go func() { _ = c.ReadLoop() }()
	t.Cleanup(c.Close)
	l.c = c
	return l
}

// ask publishes an ask (QoS 1) and returns its PUBACK and, unless the
// PUBACK refused it, its answer.
func (l *askLocker) ask(askID string, payload string) (puback, protocol.Response) {
	l.t.Helper()
	l.nextID++
	l.pending.Store(l.nextID, askID)
	require.NoError(l.t, l.c.Publish(protocol.Topic(l.id, protocol.KindAskReq), []byte(payload), 1, l.nextID))
	var ack puback
	select {
	case ack = <-l.acks:
	case <-time.After(10 * time.Second):
		l.t.Fatalf("no PUBACK for ask %s", askID)
	}
	require.Equal(l.t, l.nextID, ack.id)
	if ack.reason >= 0x80 {
		return ack, protocol.Response{}
	}
	select {
	case res := <-l.answers:
		require.Equal(l.t, askID, res.ID)
		return ack, res
	case <-time.After(10 * time.Second):
		l.t.Fatalf("no answer to ask %s", askID)
	}
	return ack, protocol.Response{}
}

// TestAsksAnsweredOnceDurably: an ask is handled off the read loop, its
// answer stored before the PUBACK and then published; a republished ask
// (same id) is answered from storage, also after a hub restart, without a
// second handler call; unknown methods, panics and malformed asks.
func TestAsksAnsweredOnceDurably(t *testing.T) {
	h := hubtest.Start(t)
	cert := h.Locker("ASK-1")
	var calls atomic.Int32
	register := func() {
		h.App.Asks.Register("test.echo", func(ctx context.Context, lockerID, askID string, params json.RawMessage) (json.RawMessage, *protocol.Error) {
			calls.Add(1)
			return json.RawMessage(`{"locker":"` + lockerID + `","ask":"` + askID + `","params":` + string(params) + `}`), nil
		})
		h.App.Asks.Register("test.refuse", func(context.Context, string, string, json.RawMessage) (json.RawMessage, *protocol.Error) {
			return nil, &protocol.Error{Code: protocol.ErrCodeWrongCode, Message: "no such code"}
		})
		h.App.Asks.Register("test.panic", func(context.Context, string, string, json.RawMessage) (json.RawMessage, *protocol.Error) {
			panic("boom")
		})
	}
	register()
	l := connectAskLocker(t, h, cert, "ASK-1")

	echo := `{"id":"a-1","boot":1,"seq":1,"ts":1795389000300,"method":"test.echo","params":{"x":1}}`
	ack, res := l.ask("a-1", echo)
	require.Zero(t, ack.reason)
	require.True(t, ack.stored, "the answer is stored before the PUBACK")
	require.Nil(t, res.Error)
	require.JSONEq(t, `{"locker":"ASK-1","ask":"a-1","params":{"x":1}}`, string(res.Result))
	require.EqualValues(t, 1, calls.Load())
	first := res

	// Republished (a lost PUBACK): the stored answer, no second call.
	ack, again := l.ask("a-1", echo)
	require.Zero(t, ack.reason)
	require.JSONEq(t, string(res.Result), string(again.Result))
	require.EqualValues(t, 1, calls.Load())

	_, res = l.ask("a-2", `{"id":"a-2","boot":1,"seq":2,"ts":1795389000300,"method":"nobody.knows"}`)
	require.Equal(t, protocol.ErrCodeUnknownMethod, res.Error.Code)
	_, res = l.ask("a-3", `{"id":"a-3","boot":1,"seq":3,"ts":1795389000300,"method":"test.refuse","params":{}}`)
	require.Equal(t, protocol.ErrCodeWrongCode, res.Error.Code)
	_, res = l.ask("a-4", `{"id":"a-4","boot":1,"seq":4,"ts":1795389000300,"method":"test.panic"}`)
	require.Equal(t, protocol.ErrCodeInternal, res.Error.Code)
	ack, _ = l.ask("a-5", `{"id":"a-5","boot":1,"method":"test.echo"}`)
	require.EqualValues(t, 0x99, ack.reason, "a malformed ask is refused")
	require.False(t, ack.stored)

	require.EqualValues(t, 1, h.Metric("lockerhub_fleet_asks_total", "method", "test.echo", "outcome", "ok"))
	require.EqualValues(t, 1, h.Metric("lockerhub_fleet_asks_total", "method", "test.echo", "outcome", "repeat"))
	require.EqualValues(t, 1, h.Metric("lockerhub_fleet_asks_total", "method", "other", "outcome", "unknown_method"))
	require.EqualValues(t, 1, h.Metric("lockerhub_fleet_asks_total", "method", "test.panic", "outcome", "panic"))
	require.EqualValues(t, 1, h.Metric("lockerhub_fleet_asks_total", "method", "other", "outcome", "invalid"))

	// A hub restart between the answer and a republish: still from storage.
	h.Restart()
	register()
	l = connectAskLocker(t, h, cert, "ASK-1")
	_, again = l.ask("a-1", echo)
	require.JSONEq(t, string(first.Result), string(again.Result))
	require.EqualValues(t, 1, calls.Load(), "answered from storage after the restart")
	_, res = l.ask("a-6", `{"id":"a-6","boot":2,"seq":1,"ts":1795389000300,"method":"test.echo","params":{"y":2}}`)
	require.JSONEq(t, `{"locker":"ASK-1","ask":"a-6","params":{"y":2}}`, string(res.Result))
	require.EqualValues(t, 2, calls.Load())

	// Old answers go after the retention.
	n, err := h.App.Asks.Prune(context.Background(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 5, n)
}

// TestAskOverPerLockerBoundWithholdsPuback: a locker with more asks open
// than its share gets no PUBACK for the extra one and is disconnected with
// 0x97; after reconnecting, the republished ask is answered.
func TestAskOverPerLockerBoundWithholdsPuback(t *testing.T) {
	h := hubtest.Start(t, func(c *app.Config) { c.Asks.PerLocker = 1 })
	cert := h.Locker("ASK-2")
	release := make(chan struct{})
	var calls atomic.Int32
	h.App.Asks.Register("test.slow", func(ctx context.Context, _, askID string, _ json.RawMessage) (json.RawMessage, *protocol.Error) {
		calls.Add(1)
		if askID == "s-1" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return json.RawMessage(`{"done":true}`), nil
	})
	readErr := make(chan error, 1)
	c, err := lockersim.Connect(t.Context(), lockersim.ClientOptions{
		Addr: h.MQTTAddr, TLS: h.ClientTLS(cert), ClientID: "ASK-2", Version: lockersim.MQTT5,
		Subscribe: []string{protocol.Topic("ASK-2", protocol.KindAskRes)},
	})
	require.NoError(t, err)
	go func() { readErr <- c.ReadLoop() }()
	t.Cleanup(c.Close)
	topic := protocol.Topic("ASK-2", protocol.KindAskReq)
	require.NoError(t, c.Publish(topic, []byte(`{"id":"s-1","boot":1,"seq":1,"ts":1795389000300,"method":"test.slow"}`), 1, 1))
	hubtest.Eventually(t, 10*time.Second, "first ask running", func() bool { return calls.Load() == 1 })
	second := `{"id":"s-2","boot":1,"seq":2,"ts":1795389000300,"method":"test.slow"}`
	require.NoError(t, c.Publish(topic, []byte(second), 1, 2))
	select {
	case err := <-readErr:
		var de *lockersim.DisconnectError
		require.True(t, errors.As(err, &de), "%v", err)
		require.EqualValues(t, 0x97, de.Code)
	case <-time.After(10 * time.Second):
		t.Fatal("not disconnected")
	}
	require.EqualValues(t, 1, h.Metric("lockerhub_fleet_asks_total", "method", "test.slow", "outcome", "overloaded"))
	close(release)
	hubtest.Eventually(t, 10*time.Second, "first ask stored", func() bool {
		return h.Metric("lockerhub_fleet_asks_total", "method", "test.slow", "outcome", "ok") == 1
	})

	l := connectAskLocker(t, h, cert, "ASK-2")
	_, res := l.ask("s-1", `{"id":"s-1","boot":1,"seq":1,"ts":1795389000300,"method":"test.slow"}`)
	require.JSONEq(t, `{"done":true}`, string(res.Result))
	_, res = l.ask("s-2", second)
	require.JSONEq(t, `{"done":true}`, string(res.Result))
	require.EqualValues(t, 2, calls.Load(), "s-1 from storage, s-2 handled once")
}
