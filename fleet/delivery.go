package fleet

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/protocol"
)

// Requester publishes an RPC request to a locker without waiting for the
// answer; answers come back through the broker's OnResponse observers.
// broker.Broker implements it.
type Requester interface {
	Request(lockerID string, req protocol.Request) error
}

// DeliveryResend is how often a versioned document (codes.key,
// parcels.sync) the locker has not acknowledged is sent again while it is
// connected, as for the desired configuration.
const DeliveryResend = 30 * time.Second

// versionResult is how a locker acknowledges a versioned document: the
// version it now holds.
type versionResult struct {
	Version int64 `json:"version"`
}

// deliveryStore is the PostgreSQL side of one kind of versioned document.
type deliveryStore interface {
	// pending lists the lockers whose current version is not delivered.
	pending(ctx context.Context) (map[string]int64, error)
	// params returns the current document of a locker if its version is
	// above the delivered one (ok false: nothing to deliver).
	params(ctx context.Context, lockerID string) (version int64, params any, ok bool, err error)
	// delivered records that the locker holds version.
	delivered(ctx context.Context, lockerID string, version int64) error
}

// delivery sends one kind of versioned document to lockers by RPC: after the
// locker subscribes to rpc/req, when the document changes, and every resend
// period until the locker answers {"version": N} with the current version
// (DESIGN decision 9: QoS 0, acknowledged by the application). The
// document's content is never logged. One goroutine (run) does every
// database access; the broker's callbacks only queue work for it, and a full
// queue is covered by the periodic resend.
type delivery struct {
	method   string
	idPrefix string // request ids: <prefix><version>-<random>
	req      Requester
	store    deliveryStore
	log      *slog.Logger
	resend   time.Duration

	mu      sync.Mutex
	pending map[string]int64 // locker → version not yet acknowledged

	kicks chan string
	acks  chan deliveryAck

	sent, acked prometheus.Counter
}

type deliveryAck struct {
	lockerID string
	version  int64
}

func newDelivery(method, idPrefix, metricPart string, req Requester, store deliveryStore, log *slog.Logger, reg prometheus.Registerer) *delivery {
	d := &delivery{method: method, idPrefix: idPrefix, req: req, store: store, log: log, resend: DeliveryResend,
		pending: map[string]int64{},
		kicks:   make(chan string, 4096),
		acks:    make(chan deliveryAck, 4096),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_" + metricPart + "_sent_total", Help: method + " requests sent to lockers (first sends and re-sends)."}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_" + metricPart + "_acknowledged_total", Help: method + " versions acknowledged by lockers."}),
	}
	pendingGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lockerhub_fleet_" + metricPart + "_pending", Help: "Lockers that have not acknowledged the current " + method + " version."},
		func() float64 { d.mu.Lock(); defer d.mu.Unlock(); return float64(len(d.pending)) })
	reg.MustRegister(d.sent, d.acked, pendingGauge)
	return d
}

// load reads which lockers wait for a delivery. Call it before the broker starts.
func (d *delivery) load(ctx context.Context) error {
	p, err := d.store.pending(ctx)
	if err != nil {
		return fmt.Errorf("load pending %s: %w", d.method, err)
	}
	d.mu.Lock()
	d.pending = p
	d.mu.Unlock()
	return nil
}

// changed notes a new version of a locker's document and sends it.
func (d *delivery) changed(lockerID string, version int64) {
	d.mu.Lock()
	if version > d.pending[lockerID] {
		d.pending[lockerID] = version
	}
	d.mu.Unlock()
	d.kick(lockerID)
}

// forget drops a locker (its document was deleted).
func (d *delivery) forget(lockerID string) {
	d.mu.Lock()
	delete(d.pending, lockerID)
	d.mu.Unlock()
}

func (d *delivery) kick(lockerID string) {
	select {
	case d.kicks <- lockerID:
	default: // the periodic resend sends it
	}
}

// Subscribed is told which hub→device kinds a locker has subscribed to
// (broker.OnSubscribed); it runs on the read loop and only queues.
func (d *delivery) Subscribed(lockerID string, kinds []protocol.Kind) {
	if !slices.Contains(kinds, protocol.KindRPCReq) {
		return
	}
	d.mu.Lock()
	_, ok := d.pending[lockerID]
	d.mu.Unlock()
	if ok {
		d.kick(lockerID)
	}
}

// Response takes the answers to requests nobody waits for
// (broker.OnResponse) and keeps those of this method; it only queues.
func (d *delivery) Response(lockerID string, res protocol.Response) {
	if !strings.HasPrefix(res.ID, d.idPrefix) {
		return
	}
	if res.Error != nil {
		d.log.Warn(d.method+" refused by the locker", "locker", lockerID, "code", res.Error.Code, "message", res.Error.Message)
		return
	}
	var r versionResult
	if err := json.Unmarshal(res.Result, &r); err != nil || r.Version <= 0 {
		d.log.Warn(d.method+" answer without a version", "locker", lockerID)
		return
	}
	select {
	case d.acks <- deliveryAck{lockerID, r.Version}:
	default: // the resend asks again and the locker answers again
	}
}

// run sends and records acknowledgements until ctx ends.
func (d *delivery) run(ctx context.Context) {
	tick := time.NewTicker(d.resend)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-d.kicks:
			d.send(ctx, id)
		case a := <-d.acks:
			d.ack(ctx, a)
		case <-tick.C:
			d.mu.Lock()
			ids := make([]string, 0, len(d.pending))
			for id := range d.pending {
				ids = append(ids, id)
			}
			d.mu.Unlock()
			for _, id := range ids {
				if ctx.Err() != nil {
					return
				}
				d.send(ctx, id)
			}
		}
	}
}

func (d *delivery) send(ctx context.Context, lockerID string) {
	version, params, ok, err := d.store.params(ctx, lockerID)
	if err != nil {
		d.log.Warn(d.method+" not sent: reading it failed", "locker", lockerID, "error", err)
		return
	}
	if !ok {
		d.forget(lockerID)
		return
	}
	raw, err := json.Marshal(params)
	if err != nil {
		d.log.Error(d.method+" not sent: encoding failed", "locker", lockerID, "version", version)
		return
	}
	id := fmt.Sprintf("%s%d-%s", d.idPrefix, version, rand.Text()[:8])
	if err := d.req.Request(lockerID, protocol.Request{ID: id, Method: d.method, Params: raw}); err != nil {
		d.log.Debug(d.method+" not sent", "locker", lockerID, "version", version, "error", err)
		return
	}
	d.sent.Inc()
}

func (d *delivery) ack(ctx context.Context, a deliveryAck) {
	if err := d.store.delivered(ctx, a.lockerID, a.version); err != nil {
		d.log.Warn(d.method+" acknowledgement not stored", "locker", a.lockerID, "version", a.version, "error", err)
		return
	}
	d.acked.Inc()
	d.mu.Lock()
	if v, ok := d.pending[a.lockerID]; ok && a.version >= v {
		delete(d.pending, a.lockerID)
	}
	d.mu.Unlock()
}
