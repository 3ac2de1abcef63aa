package broker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/protocol"
)

// Device RPC: the hub publishes a request on lockers/{id}/rpc/req at QoS 0
// (DESIGN decision 9) and the locker answers on lockers/{id}/rpc/res; the
// answer is correlated by the request id. MQTT 5 lockers also get the
// response topic and the id as correlation data, so a generic MQTT 5
// responder can answer without knowing our envelope's id field.
//
// Two ways to use it:
//   - Call waits for the answer (per-call timeout, a per-locker limit of calls
//     in flight). Lost requests are not retried: the caller decides.
//   - Request only publishes; answers to requests no Call waits for go to the
//     OnResponse observers. Durable commands (fleet.Commands) use this: they
//     keep their own state in PostgreSQL and re-send until answered.

// Errors of Call. A locker's refusal is a *DeviceError.
var (
	ErrTimeout          = errors.New("the locker did not answer in time")
	ErrTooManyInFlight  = errors.New("too many calls in flight to this locker")
	ErrResponseMismatch = errors.New("the locker's answer did not decode")
)

// DeviceError is a request refused by the locker, with its code (protocol
// ErrCode*) and message.
type DeviceError struct {
	Code    string
	Message string
}

func (e *DeviceError) Error() string { return "refused by the locker: " + e.Code + ": " + e.Message }

// RPCDefaults for calls.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultMaxInFlight = 16
)

type pendingCall struct {
	locker string
	ch     chan protocol.Response
}

type rpcState struct {
	mu       sync.Mutex
	calls    map[string]*pendingCall // by request id
	inFlight map[string]int          // by locker
	observer []func(lockerID string, res protocol.Response)
	client   *mqtt.Client // the inline client the requests are published from
	m        rpcMetrics
}

type rpcMetrics struct {
	requests *prometheus.CounterVec // method
	calls    *prometheus.CounterVec // outcome
	seconds  prometheus.Histogram
}

func (b *Broker) initRPC() {
	b.rpc.calls = map[string]*pendingCall{}
	b.rpc.inFlight = map[string]int{}
	b.rpc.client = b.srv.NewClient(nil, mqtt.LocalListener, "lockerhub-rpc", true)
	b.handlers[protocol.KindRPCRes] = b.rpcResponse
	b.rpc.m = rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_rpc_requests_total", Help: "RPC requests published to lockers, by method."}, []string{"method"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_broker_rpc_calls_total", Help: "Calls that waited for an answer, by outcome (ok, refused, timeout, offline, too_many_in_flight, error)."},
			[]string{"outcome"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lockerhub_broker_rpc_call_seconds", Help: "Time from request to answer of calls that got one.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	b.cfg.Registerer.MustRegister(b.rpc.m.requests, b.rpc.m.calls, b.rpc.m.seconds)
}

// OnResponse registers fn to hear the answers that no Call waits for (the
// answers to Request). fn runs on the locker's read goroutine and must not
// block. Call it before Start.
func (b *Broker) OnResponse(fn func(lockerID string, res protocol.Response)) {
	b.rpc.observer = append(b.rpc.observer, fn)
}

// NewRequestID makes a request id for Call.
func NewRequestID() string { return "r-" + rand.Text()[:16] }

// Request publishes one RPC request to a locker at QoS 0 without waiting for
// the answer, which goes to the OnResponse observers. ErrOffline when the
// locker has no live session.
func (b *Broker) Request(lockerID string, req protocol.Request) error {
	if req.ID == "" || req.Method == "" {
		return errors.New("broker: a request needs an id and a method")
	}
	if err := protocol.ValidateLockerID(lockerID); err != nil {
		return err
	}
	if !b.Online(lockerID) {
		return fmt.Errorf("%w: %s", ErrOffline, lockerID)
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   protocol.Topic(lockerID, protocol.KindRPCReq),
		Payload:     payload,
		// Only MQTT 5 subscribers get properties; 3.1.1 encoding leaves them out.
		Properties: packets.Properties{
			ResponseTopic:   protocol.Topic(lockerID, protocol.KindRPCRes),
			CorrelationData: []byte(req.ID),
		},
	}
	if err := b.srv.InjectPacket(b.rpc.client, pk); err != nil {
		return fmt.Errorf("publish rpc request to %s: %w", lockerID, err)
	}
	b.rpc.m.requests.WithLabelValues(req.Method).Inc()
	return nil
}

// Call sends method(params) to a locker and waits for its answer, which is
// decoded into result (may be nil). It fails with ErrOffline, ErrTimeout (the
// context's deadline or DefaultCallTimeout, whichever is first),
// ErrTooManyInFlight or a *DeviceError.
func (b *Broker) Call(ctx context.Context, lockerID, method string, params, result any) error {
	req := protocol.Request{ID: NewRequestID(), Method: method}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("params of %s: %w", method, err)
		}
		req.Params = raw
	}
	return b.CallRequest(ctx, lockerID, req, result)
}

// CallRequest is Call with a request of the caller's own (key, not_after).
func (b *Broker) CallRequest(ctx context.Context, lockerID string, req protocol.Request, result any) error {
	if req.ID == "" {
		req.ID = NewRequestID()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	pc := &pendingCall{locker: lockerID, ch: make(chan protocol.Response, 1)}
	b.rpc.mu.Lock()
	if b.rpc.inFlight[lockerID] >= b.maxInFlight() {
		b.rpc.mu.Unlock()
		b.rpc.m.calls.WithLabelValues("too_many_in_flight").Inc()
		return fmt.Errorf("%w: %s has %d", ErrTooManyInFlight, lockerID, b.maxInFlight())
	}
	if _, dup := b.rpc.calls[req.ID]; dup {
		b.rpc.mu.Unlock()
		return fmt.Errorf("broker: request id %q is already in flight", req.ID)
	}
	b.rpc.calls[req.ID] = pc
	b.rpc.inFlight[lockerID]++
	b.rpc.mu.Unlock()
	defer func() {
		b.rpc.mu.Lock()
		delete(b.rpc.calls, req.ID)
		if b.rpc.inFlight[lockerID]--; b.rpc.inFlight[lockerID] <= 0 {
			delete(b.rpc.inFlight, lockerID)
		}
		b.rpc.mu.Unlock()
	}()

	start := time.Now()
	if err := b.Request(lockerID, req); err != nil {
		b.rpc.m.calls.WithLabelValues(outcome(err)).Inc()
		return err
	}
	select {
	case res := <-pc.ch:
		b.rpc.m.seconds.Observe(time.Since(start).Seconds())
		if res.Error != nil {
			b.rpc.m.calls.WithLabelValues("refused").Inc()
			return &DeviceError{Code: res.Error.Code, Message: res.Error.Message}
		}
		b.rpc.m.calls.WithLabelValues("ok").Inc()
		if result != nil && len(res.Result) > 0 {
			if err := json.Unmarshal(res.Result, result); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrResponseMismatch, req.Method, err)
			}
		}
		return nil
	case <-ctx.Done():
		b.rpc.m.calls.WithLabelValues("timeout").Inc()
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s %s after %s", ErrTimeout, lockerID, req.Method, time.Since(start).Round(time.Millisecond))
	}
}

func outcome(err error) string {
	if errors.Is(err, ErrOffline) {
		return "offline"
	}
	return "error"
}

func (b *Broker) maxInFlight() int {
	if b.cfg.MaxCallsInFlight > 0 {
		return b.cfg.MaxCallsInFlight
	}
	return DefaultMaxInFlight
}

// rpcResponse takes lockers/{id}/rpc/res. It is acknowledged at once (DESIGN
// decision 10): a lost answer is recovered by re-sending the request, which
// the locker answers from its key cache.
func (b *Broker) rpcResponse(m Message) {
	defer m.Done(nil)
	var res protocol.Response
	if err := json.Unmarshal(m.Payload, &res); err != nil || res.ID == "" {
		b.m.invalid.WithLabelValues(string(protocol.KindRPCRes)).Inc()
		b.log.Warn("rpc response without id or not JSON; dropped", "locker", m.LockerID)
		return
	}
	b.rpc.mu.Lock()
	pc := b.rpc.calls[res.ID]
	if pc != nil && pc.locker == m.LockerID {
		delete(b.rpc.calls, res.ID) // a repeated answer goes to the observers
	} else {
		pc = nil
	}
	observers := b.rpc.observer
	b.rpc.mu.Unlock()
	if pc != nil {
		pc.ch <- res // buffered 1, sent once
		return
	}
	for _, fn := range observers {
		fn(m.LockerID, res)
	}
}
