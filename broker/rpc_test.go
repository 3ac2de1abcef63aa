package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/broker"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestCallMQTT311And5: a call reaches the locker at QoS 0 with the envelope
// of docs/protocol.md (MQTT 5 also with response topic and correlation data)
// and the answer, refusal, silence or absence becomes the caller's result.
func TestCallMQTT311And5(t *testing.T) {
	h := hubtest.Start(t)
	b := h.App.Broker
	for _, ver := range []byte{4, 5} {
		id := fmt.Sprintf("L-rpc-v%d", ver)
		c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker(id)))
		c.ver = ver
		require.Zero(t, c.connect(id))
		require.Equal(t, byte(1), c.subscribe("lockers/"+id+"/rpc/req"))

		type answer struct {
			err error
			res map[string]any
		}
		call := func(ctx context.Context, method string) chan answer {
			ch := make(chan answer, 1)
			go func() {
				var res map[string]any
				err := b.Call(ctx, id, method, protocol.CellOpenParams{Cell: "A01"}, &res)
				ch <- answer{err, res}
			}()
			return ch
		}
		readReq := func() (protocol.Request, packets.Packet) {
			pk := c.mustRead(packets.Publish)
			require.Equal(t, "lockers/"+id+"/rpc/req", pk.TopicName)
			require.Zero(t, pk.FixedHeader.Qos, "decision 9")
			var req protocol.Request
			require.NoError(t, json.Unmarshal(pk.Payload, &req))
			return req, pk
		}
		respond := func(res protocol.Response) {
			raw, _ := json.Marshal(res)
			require.NoError(t, c.publish("lockers/"+id+"/rpc/res", 1, 9, raw))
			require.Equal(t, uint16(9), c.mustRead(packets.Puback).PacketID, "rpc/res is acked at once")
		}

		// Answered.
		ch := call(context.Background(), protocol.MethodCellStatus)
		req, pk := readReq()
		require.Equal(t, protocol.MethodCellStatus, req.Method)
		require.JSONEq(t, `{"cell":"A01"}`, string(req.Params))
		if ver == 5 {
			require.Equal(t, "lockers/"+id+"/rpc/res", pk.Properties.ResponseTopic)
			require.Equal(t, req.ID, string(pk.Properties.CorrelationData))
		}
		respond(protocol.Response{ID: req.ID, Result: json.RawMessage(`{"door":"closed"}`)})
		a := <-ch
		require.NoError(t, a.err)
		require.Equal(t, "closed", a.res["door"])

		// Refused by the device.
		ch = call(context.Background(), protocol.MethodCellOpen)
		req, _ = readReq()
		respond(protocol.Response{ID: req.ID, Error: &protocol.Error{Code: protocol.ErrCodeJammed, Message: "lock did not release"}})
		a = <-ch
		var de *broker.DeviceError
		require.ErrorAs(t, a.err, &de)
		require.Equal(t, protocol.ErrCodeJammed, de.Code)
		require.Equal(t, "lock did not release", de.Message)

		// No answer: timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		ch = call(ctx, protocol.MethodCellStatus)
		_, _ = readReq()
		a = <-ch
		cancel()
		require.ErrorIs(t, a.err, broker.ErrTimeout)
	}

	// Offline.
	require.ErrorIs(t, b.Call(context.Background(), "L-nobody", protocol.MethodCellStatus, nil, nil), broker.ErrOffline)
	require.Equal(t, 1.0, h.Metric("lockerhub_broker_rpc_calls_total", "outcome", "offline"))
}

// TestCallsInFlightAreBounded: beyond the per-locker limit a call is refused
// at once with ErrTooManyInFlight; other lockers are not affected.
func TestCallsInFlightAreBounded(t *testing.T) {
	h := hubtest.Start(t)
	b := h.App.Broker
	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L1")))
	require.Zero(t, c.connect("L1"))
	require.Equal(t, byte(1), c.subscribe("lockers/L1/rpc/req"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	errs := make(chan error, broker.DefaultMaxInFlight)
	for range broker.DefaultMaxInFlight {
		go func() { errs <- b.Call(ctx, "L1", protocol.MethodCellStatus, nil, nil) }()
	}
	for range broker.DefaultMaxInFlight {
		c.mustRead(packets.Publish)
	}
	err := b.Call(context.Background(), "L1", protocol.MethodCellStatus, nil, nil)
	require.ErrorIs(t, err, broker.ErrTooManyInFlight)
	require.ErrorIs(t, b.Call(context.Background(), "L2", protocol.MethodCellStatus, nil, nil), broker.ErrOffline,
		"another locker is not limited by L1's calls")
	cancel()
	for range broker.DefaultMaxInFlight {
		require.Error(t, <-errs)
	}
}

// TestRequestAnswersGoToObservers: an answer no Call waits for (a durable
// command's) goes to the OnResponse observers.
func TestRequestAnswersGoToObservers(t *testing.T) {
	got := make(chan protocol.Response, 4)
	h := hubtest.Start(t)
	b := h.App.Broker
	b.OnResponse(func(id string, res protocol.Response) {
		if id == "L1" {
			got <- res
		}
	})
	c := dialRaw(t, h.MQTTAddr, h.ClientTLS(h.Locker("L1")))
	require.Zero(t, c.connect("L1"))
	require.Equal(t, byte(1), c.subscribe("lockers/L1/rpc/req"))
	require.NoError(t, b.Request("L1", protocol.Request{ID: "x-1", Method: protocol.MethodCellStatus, Key: "x-1", NotAfter: 1}))
	pk := c.mustRead(packets.Publish)
	require.JSONEq(t, `{"id":"x-1","method":"cell.status","key":"x-1","not_after":1}`, string(pk.Payload))
	require.NoError(t, c.publish("lockers/L1/rpc/res", 1, 3, []byte(`{"id":"x-1","error":{"code":"expired","message":"late"}}`)))
	select {
	case res := <-got:
		require.Equal(t, "x-1", res.ID)
		require.Equal(t, protocol.ErrCodeExpired, res.Error.Code)
	case <-time.After(5 * time.Second):
		t.Fatal("the observer heard no answer")
	}
}

// TestCallWithMosquittoDevice: Debian's mosquitto_sub (MQTT 5 and 3.1.1) as
// the locker receives the request, mosquitto_pub answers it.
func TestCallWithMosquittoDevice(t *testing.T) {
	h := hubtest.Start(t)
	m := newMosq(t, h)
	cert := h.Locker("L9")
	for _, ver := range []string{"mqttv5", "mqttv311"} {
		var out lockedBuffer
		ctx, stop := context.WithCancel(context.Background())
		sub := exec.CommandContext(ctx, "mosquitto_sub", append(m.args(ver, "L9", cert.CertFile, cert.KeyFile),
			"-t", "lockers/L9/rpc/req", "-C", "1", "-F", "%t|%R|%D|%p")...)
		sub.Stdout, sub.Stderr = &out, &out
		require.NoError(t, sub.Start())
		done := make(chan error, 1)
		go func() { done <- sub.Wait() }()
		hubtest.Eventually(t, 5*time.Second, "mosquitto_sub subscribed", func() bool {
			return h.Metric("lockerhub_broker_connects_total") > 0 && h.App.Broker.Online("L9")
		})
		time.Sleep(200 * time.Millisecond) // the SUBSCRIBE follows the CONNACK

		res := make(chan error, 1)
		var result map[string]any
		go func() {
			res <- h.App.Broker.Call(context.Background(), "L9", protocol.MethodDisplayMessage, protocol.DisplayMessageParams{Text: "hi"}, &result)
		}()
		select {
		case err := <-done:
			require.NoError(t, err, out.String())
		case <-time.After(5 * time.Second):
			stop()
			t.Fatalf("%s: mosquitto_sub got no request: %s", ver, out.String())
		}
		stop()
		parts := strings.SplitN(strings.TrimSpace(out.String()), "|", 4)
		require.Len(t, parts, 4, out.String())
		require.Equal(t, "lockers/L9/rpc/req", parts[0])
		var req protocol.Request
		require.NoError(t, json.Unmarshal([]byte(parts[3]), &req))
		if ver == "mqttv5" {
			require.Equal(t, "lockers/L9/rpc/res", parts[1], "response topic")
			require.Equal(t, req.ID, parts[2], "correlation data")
		}
		code, pubOut := m.pub(append(m.args(ver, "L9", cert.CertFile, cert.KeyFile), "-q", "1", "-t", "lockers/L9/rpc/res",
			"-m", `{"id":"`+req.ID+`","result":{"shown":true}}`)...)
		require.Zero(t, code, pubOut)
		select {
		case err := <-res:
			require.NoError(t, err)
			require.Equal(t, true, result["shown"])
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the call did not return", ver)
		}
	}
}
