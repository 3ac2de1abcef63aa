package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/protocol"
)

// Asks are a locker's requests to the hub (lockers/{id}/ask/req: code.check,
// barcode.check, …), answered on lockers/{id}/ask/res. DESIGN decision 10:
// an ask is acknowledged only once durable, so
//
//   - the ask is decoded strictly on the MQTT read loop, then queued for a
//     pool of workers (the handler never runs on the read loop);
//   - a worker looks the (locker, ask id) up in fleet_asks: an ask answered
//     before (republished after a lost PUBACK, a reconnect, a hub restart)
//     gets the stored answer again, without calling the handler;
//   - otherwise the method's handler runs (panics are recovered into
//     internal, an unknown method is answered unknown_method), the answer is
//     stored in fleet_asks, and only then is the PUBACK released and the
//     answer published on ask/res (QoS 0);
//   - the queue is bounded (AsksConfig.Queue) and so is each locker's share
//     of it (PerLocker asks queued or running): beyond either, the PUBACK is
//     withheld (ErrAsksOverloaded: the broker disconnects the locker with
//     0x97 and it republishes the ask after reconnecting). Nothing is
//     dropped silently.
//
// Stored answers are deleted after AsksConfig.Retention.

// AskFunc answers one ask. It runs on a worker goroutine with a context
// bounded by AsksConfig.HandlerTimeout. result must be a JSON object (nil
// means {}); a non-nil err is the answer instead. Whatever it returns is
// stored as the ask's answer for good. A hub crash between its return and
// the storing of the answer runs it again for the republished ask, so a
// handler with effects (a cell.open command) makes them idempotent by
// (locker, ask id), e.g. as the command's idempotency key.
type AskFunc func(ctx context.Context, lockerID, askID string, params json.RawMessage) (result json.RawMessage, err *protocol.Error)

// ErrAsksOverloaded withholds an ask's PUBACK: the queue or the locker's
// share of it is full, or its answer could not be stored.
var ErrAsksOverloaded = errors.New("ask queue is full")

// AsksConfig tunes asks; zero values take the defaults noted.
type AsksConfig struct {
	Workers        int           // handlers running at once, 8
	Queue          int           // asks waiting for a worker, 1,024
	PerLocker      int           // one locker's asks queued or running, 4
	HandlerTimeout time.Duration // bound of one handler call, 10 s (a locker gives up after 10 s)
	Retention      time.Duration // stored answers are kept, 7 days
	PruneEvery     time.Duration // how often old answers are deleted, 1 h
}

func (c *AsksConfig) defaults() {
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Queue == 0 {
		c.Queue = 1024
	}
	if c.PerLocker == 0 {
		c.PerLocker = 4
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = 10 * time.Second
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.PruneEvery == 0 {
		c.PruneEvery = time.Hour
	}
}

type askJob struct {
	in  Inbound
	req protocol.Request
}

// Asks takes the lockers' asks.
type Asks struct {
	pool *pgxpool.Pool
	send Sender
	log  *slog.Logger
	cfg  AsksConfig
	m    asksMetrics

	queue chan askJob

	mu       sync.Mutex
	handlers map[string]AskFunc
	perLock  map[string]int // asks queued or running, by locker
}

type asksMetrics struct {
	asks    *prometheus.CounterVec   // method, outcome
	seconds *prometheus.HistogramVec // method
	queued  prometheus.GaugeFunc
	pruned  prometheus.Counter
}

// Outcomes of asks (label outcome of lockerhub_fleet_asks_total).
const (
	askOK            = "ok"             // answered with a result
	askRefused       = "refused"        // answered with an error by the handler
	askRepeat        = "repeat"         // answered from storage
	askUnknownMethod = "unknown_method" // no handler
	askPanic         = "panic"          // the handler panicked: internal
	askInternal      = "internal"       // the handler returned something unusable: internal
	askInvalid       = "invalid"        // refused by the decoder, never stored
	askOverloaded    = "overloaded"     // PUBACK withheld
	askStoreFailed   = "store_failed"   // the answer could not be stored: PUBACK withheld
)

// NewAsks builds the asks; Register the methods, then Run.
func NewAsks(pool *pgxpool.Pool, send Sender, log *slog.Logger, reg prometheus.Registerer, cfg AsksConfig) *Asks {
	cfg.defaults()
	a := &Asks{pool: pool, send: send, log: log, cfg: cfg,
		queue:    make(chan askJob, cfg.Queue),
		handlers: map[string]AskFunc{},
		perLock:  map[string]int{},
	}
	a.m = asksMetrics{
		asks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockerhub_fleet_asks_total",
			Help: "Asks from lockers by method (registered ones; \"other\" for the rest) and outcome (ok, refused, repeat, unknown_method, panic, internal, invalid, overloaded, store_failed)."},
			[]string{"method", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lockerhub_fleet_ask_handler_seconds", Help: "Time an ask handler took, by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"method"}),
		queued: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lockerhub_fleet_asks_queued", Help: "Asks waiting for a worker."}, func() float64 { return float64(len(a.queue)) }),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockerhub_fleet_asks_pruned_total", Help: "Stored ask answers deleted after the retention."}),
	}
	reg.MustRegister(a.m.asks, a.m.seconds, a.m.queued, a.m.pruned)
	return a
}

// Register sets the handler of an ask method; a later call replaces it.
// Safe to call while running.
func (a *Asks) Register(method string, fn AskFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handlers[method] = fn
}

func (a *Asks) handler(method string) (AskFunc, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn := a.handlers[method]
	if fn == nil {
		return nil, "other"
	}
	return fn, method
}

// methodLabel bounds the method label to registered methods.
func (a *Asks) methodLabel(method string) string {
	_, l := a.handler(method)
	return l
}

// Submit decodes an ask on the caller's goroutine (the MQTT read loop) and
// queues it. It never blocks: a full queue, or a locker over its share,
// settles the message with ErrAsksOverloaded.
func (a *Asks) Submit(in Inbound) {
	req, err := protocol.DecodeAsk(in.Payload)
	if err != nil {
		a.m.asks.WithLabelValues("other", askInvalid).Inc()
		in.Done(err)
		return
	}
	label := a.methodLabel(req.Method)
	a.mu.Lock()
	if a.perLock[in.LockerID] >= a.cfg.PerLocker {
		a.mu.Unlock()
		a.m.asks.WithLabelValues(label, askOverloaded).Inc()
		in.Done(fmt.Errorf("%w: locker %s has %d asks open", ErrAsksOverloaded, in.LockerID, a.cfg.PerLocker))
		return
	}
	a.perLock[in.LockerID]++
	a.mu.Unlock()
	select {
	case a.queue <- askJob{in: in, req: req}:
	default:
		a.release(in.LockerID)
		a.m.asks.WithLabelValues(label, askOverloaded).Inc()
		in.Done(ErrAsksOverloaded)
	}
}

func (a *Asks) release(lockerID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perLock[lockerID]--; a.perLock[lockerID] <= 0 {
		delete(a.perLock, lockerID)
	}
}

// Run runs the workers and the pruning of old answers until ctx ends (after
// the broker has closed). Asks still queued then are left unacknowledged:
// their connections are gone, and the lockers republish them.
func (a *Asks) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-a.queue:
					a.process(ctx, j)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.prune(ctx) }()
	wg.Wait()
}

// process answers one ask: from storage, or by its handler and then stored.
func (a *Asks) process(ctx context.Context, j askJob) {
	defer a.release(j.in.LockerID)
	lockerID, req := j.in.LockerID, j.req
	fn, label := a.handler(req.Method)

	answer, found, err := a.stored(ctx, lockerID, req.ID)
	if err != nil {
		a.storeFailed(j, label, err)
		return
	}
	outcome := askRepeat
	if !found {
		var res protocol.Response
		res, outcome = a.call(ctx, fn, lockerID, req)
		if ctx.Err() != nil {
			// Shutting down: an answer made under a cancelled context is
			// not stored; the locker republishes the ask to the next hub.
			a.storeFailed(j, label, ctx.Err())
			return
		}
		if answer, err = json.Marshal(res); err != nil {
			a.storeFailed(j, label, err)
			return
		}
		// A concurrent copy of the same ask may have stored its answer
		// first: then that one is the answer.
		var first []byte
		err = a.pool.QueryRow(ctx, `INSERT INTO fleet_asks (locker_id, ask_id, method, answer) VALUES ($1, $2, $3, $4)
			ON CONFLICT (locker_id, ask_id) DO UPDATE SET locker_id = fleet_asks.locker_id
			RETURNING answer`, lockerID, req.ID, req.Method, answer).Scan(&first)
		if err != nil {
			a.storeFailed(j, label, err)
			return
		}
		answer = first
	}
	a.m.asks.WithLabelValues(label, outcome).Inc()
	j.in.Done(nil) // durable: the PUBACK may go
	if err := a.send.Send(lockerID, protocol.KindAskRes, answer); err != nil {
		a.log.Debug("ask answer not sent", "locker", lockerID, "ask", req.ID, "error", err)
	}
}

func (a *Asks) storeFailed(j askJob, label string, err error) {
	a.m.asks.WithLabelValues(label, askStoreFailed).Inc()
	a.log.Warn("ask answer not stored; PUBACK withheld", "locker", j.in.LockerID, "ask", j.req.ID, "method", j.req.Method, "error", err)
	j.in.Done(fmt.Errorf("%w: %v", ErrAsksOverloaded, err))
}

// stored returns the answer stored for an ask, if any.
func (a *Asks) stored(ctx context.Context, lockerID, askID string) ([]byte, bool, error) {
	var answer []byte
	err := a.pool.QueryRow(ctx, `SELECT answer FROM fleet_asks WHERE locker_id = $1 AND ask_id = $2`, lockerID, askID).Scan(&answer)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return answer, true, nil
}

// call runs the handler with a timeout and turns what it did into the answer.
func (a *Asks) call(ctx context.Context, fn AskFunc, lockerID string, req protocol.Request) (res protocol.Response, outcome string) {
	res.ID = req.ID
	if fn == nil {
		res.Error = &protocol.Error{Code: protocol.ErrCodeUnknownMethod, Message: fmt.Sprintf("the hub does not answer %q", req.Method)}
		return res, askUnknownMethod
	}
	label := req.Method
	start := time.Now()
	defer func() { a.m.seconds.WithLabelValues(label).Observe(time.Since(start).Seconds()) }()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("ask handler panicked", "locker", lockerID, "ask", req.ID, "method", req.Method, "panic", fmt.Sprint(p))
			res = protocol.Response{ID: req.ID, Error: &protocol.Error{Code: protocol.ErrCodeInternal, Message: "the hub failed to answer"}}
			outcome = askPanic
		}
	}()
	hctx, cancel := context.WithTimeout(ctx, a.cfg.HandlerTimeout)
	defer cancel()
	result, perr := fn(hctx, lockerID, req.ID, req.Params)
	switch {
	case perr != nil:
		res.Error = perr
		return res, askRefused
	case len(result) == 0:
		res.Result = json.RawMessage(`{}`)
	case !json.Valid(result):
		a.log.Error("ask handler returned invalid JSON", "locker", lockerID, "ask", req.ID, "method", req.Method)
		res.Error = &protocol.Error{Code: protocol.ErrCodeInternal, Message: "the hub failed to answer"}
		return res, askInternal
	default:
		res.Result = result
	}
	return res, askOK
}

// prune deletes stored answers older than the retention, every PruneEvery.
func (a *Asks) prune(ctx context.Context) {
	t := time.NewTicker(a.cfg.PruneEvery)
	defer t.Stop()
	for {
		if n, err := a.Prune(ctx, time.Now().Add(-a.cfg.Retention)); err != nil && ctx.Err() == nil {
			a.log.Warn("deleting old ask answers failed", "error", err)
		} else if n > 0 {
			a.log.Debug("old ask answers deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune deletes the answers stored before cutoff and returns how many.
func (a *Asks) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := a.pool.Exec(ctx, `DELETE FROM fleet_asks WHERE at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("prune asks: %w", err)
	}
	a.m.pruned.Add(float64(tag.RowsAffected()))
	return tag.RowsAffected(), nil
}
