package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/fleet"
)

// Stream tuning.
const (
	streamMinInterval  = 25 * time.Millisecond // deltas to one browser at most this often
	streamWriteTimeout = 5 * time.Second       // a browser slower than this is closed ("too slow")
	streamMaxMessage   = 4 << 10               // what a browser may send
)

type streamMetrics struct {
	clients prometheus.Gauge
	sent    prometheus.Counter
	slow    prometheus.Counter
}

func newStreamMetrics(reg prometheus.Registerer) *streamMetrics {
	m := &streamMetrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockerhub_web_stream_clients", Help: "Browsers connected to the live stream."}),
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_web_stream_messages_total", Help: "Snapshots and deltas sent to browsers."}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockerhub_web_stream_closed_slow_total",
			Help: "Browsers closed because they did not take a message within the write timeout."}),
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.sent, m.slow)
	}
	return m
}

func (a *API) streamRoutes() []route {
	return []route{{"GET", "/api/v1/stream", false, a.stream}}
}

// watch is what a browser asks to see.
type watch struct {
	Watch  string          `json:"watch"` // fleet or locker
	ID     string          `json:"id,omitempty"`
	Filter fleet.RowFilter `json:"filter"`

	// For a caller limited to a carrier: hidden is a locker outside it
	// (shown as one that does not exist); known are the rows the browser
	// has, so rows of other carriers' lockers are never named in a delta.
	scoped bool
	hidden bool
	known  map[string]bool
}

// streamConn is one browser. Producers (the twin writer, presence, registry
// changes) only put the changed row into pending, replacing an older one of
// the same locker: whatever the browser's speed, they never wait and the
// memory is bounded by the number of lockers.
type streamConn struct {
	mu      sync.Mutex
	pending map[string]fleet.Row
	w       *watch
	wake    chan struct{}
}

func (c *streamConn) push(r fleet.Row) {
	c.mu.Lock()
	c.pending[r.ID] = r
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *streamConn) take() (map[string]fleet.Row, *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending
	c.pending = map[string]fleet.Row{}
	return p, c.w
}

// stream serves GET /api/v1/stream: one WebSocket per browser; a snapshot of
// what it watches, then deltas.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	ws.SetReadLimit(streamMaxMessage)
	a.sm.clients.Inc()
	defer a.sm.clients.Dec()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	c := &streamConn{pending: map[string]fleet.Row{}, wake: make(chan struct{}, 1)}
	unsubscribe := a.d.Overview.Subscribe(c.push)
	defer unsubscribe()
	if p, ok := principalFrom(ctx); ok {
		// Disabling the user or revoking the API client (web/users.go) ends
		// this stream at once.
		defer a.trackStream(streamOwner(p), cancel)()
	}

	watches := make(chan *watch, 1)
	go func() {
		defer cancel()
		for {
			var wt watch
			_, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if json.Unmarshal(data, &wt) != nil || (wt.Watch != "fleet" && wt.Watch != "locker") || (wt.Watch == "locker" && wt.ID == "") {
				_ = ws.Close(websocket.StatusPolicyViolation, `send {"watch":"fleet","filter":{…}} or {"watch":"locker","id":"…"}`)
				return
			}
			a.scopeWatch(r, &wt)
			select {
			case watches <- &wt:
			case <-ctx.Done():
				return
			}
		}
	}()

	send := func(v any) bool {
		data, err := json.Marshal(v)
		if err != nil {
			return false
		}
		wctx, wcancel := context.WithTimeout(ctx, streamWriteTimeout)
		defer wcancel()
		if err := ws.Write(wctx, websocket.MessageText, data); err != nil {
			if errors.Is(wctx.Err(), context.DeadlineExceeded) {
				a.sm.slow.Inc()
				_ = ws.Close(websocket.StatusPolicyViolation, "too slow")
			}
			return false
		}
		a.sm.sent.Inc()
		return true
	}

	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return
		case wt := <-watches:
			c.mu.Lock()
			c.w = wt
			c.pending = map[string]fleet.Row{}
			c.mu.Unlock()
			if !send(a.snapshot(wt)) {
				return
			}
			last = time.Now()
		case <-c.wake:
			if wait := streamMinInterval - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					continue
				}
			}
			changed, wt := c.take()
			if wt == nil {
				continue
			}
			if msg, ok := a.delta(wt, changed); ok {
				if !send(msg) {
					return
				}
				last = time.Now()
			}
		}
	}
}

// scopeWatch limits what a carrier-scoped caller watches to the carrier's
// lockers.
func (a *API) scopeWatch(r *http.Request, wt *watch) {
	c := callerCarrier(r)
	if c == "" {
		return
	}
	wt.scoped = true
	wt.Filter.Carrier = scopeCarrier(r, wt.Filter.Carrier)
	if wt.Watch == "locker" {
		wt.hidden = !a.inCallerScope(r, wt.ID)
	}
}

func (a *API) snapshot(wt *watch) any {
	if wt.Watch == "locker" {
		if wt.hidden {
			return map[string]any{"type": "snapshot", "twin": (&fleet.Twin{LockerID: wt.ID}).View()}
		}
		return map[string]any{"type": "snapshot", "twin": a.twinView(wt.ID)}
	}
	rows := a.d.Overview.Rows(wt.Filter)
	if wt.scoped {
		wt.known = make(map[string]bool, len(rows))
		for _, r := range rows {
			wt.known[r.ID] = true
		}
	}
	return map[string]any{"type": "snapshot", "summary": a.d.Overview.Summary(wt.Filter), "rows": rows}
}

// delta turns the rows changed since the last message into what this browser
// watches; ok is false when none of them concern it.
func (a *API) delta(wt *watch, changed map[string]fleet.Row) (any, bool) {
	if wt.Watch == "locker" {
		if _, ok := changed[wt.ID]; !ok || wt.hidden {
			return nil, false
		}
		return map[string]any{"type": "delta", "twin": a.twinView(wt.ID)}, true
	}
	rows := make([]fleet.Row, 0, len(changed))
	for _, r := range changed {
		// A row that left the filter is sent as deleted so the page drops it.
		match := wt.Filter.Match(r)
		if wt.scoped {
			if !match && !wt.known[r.ID] {
				continue // another carrier's locker: not even its ID
			}
			if match && !r.Deleted {
				wt.known[r.ID] = true
			} else {
				delete(wt.known, r.ID)
			}
		}
		if !match {
			r = fleet.Row{ID: r.ID, Deleted: true}
		}
		rows = append(rows, r)
	}
	if wt.scoped && len(rows) == 0 {
		return nil, false
	}
	return map[string]any{"type": "delta", "summary": a.d.Overview.Summary(wt.Filter), "rows": rows}, true
}

// twinView is the live twin with connectivity from the overview (no database).
func (a *API) twinView(id string) fleet.TwinView {
	var v fleet.TwinView
	if tw := a.d.Twins.Get(id); tw != nil {
		v = tw.View()
	} else {
		v = (&fleet.Twin{LockerID: id}).View()
	}
	if r, ok := a.d.Overview.Row(id); ok {
		v.Connectivity.Online, v.Connectivity.Since = r.Online, r.Since
	}
	v.Connectivity.ClockOffsetMs = a.clockOffset(id)
	return v
}

// streamOwner names whose stream it is: "user:<id>", "client:<id>" or
// "token:<id>".
func streamOwner(p access.Principal) string {
	switch {
	case p.UserID != 0:
		return "user:" + strconv.FormatInt(p.UserID, 10)
	case p.ClientID != 0:
		return "client:" + strconv.FormatInt(p.ClientID, 10)
	default:
		return "token:" + strconv.FormatInt(p.TokenID, 10)
	}
}

// streamsByUser holds the cancel functions of the live streams of each user
// and API client (by streamOwner).
type streamsByUser struct {
	mu sync.Mutex
	m  map[string]map[*context.CancelFunc]struct{}
}

// trackStream registers a stream of owner and returns its unregistration.
func (a *API) trackStream(owner string, cancel context.CancelFunc) func() {
	s := &a.streams
	key := &cancel
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]map[*context.CancelFunc]struct{}{}
	}
	if s.m[owner] == nil {
		s.m[owner] = map[*context.CancelFunc]struct{}{}
	}
	s.m[owner][key] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.m[owner], key)
		if len(s.m[owner]) == 0 {
			delete(s.m, owner)
		}
		s.mu.Unlock()
	}
}

// endStreams closes every live stream of owner (a user disabled or given
// another role or carrier, an API client revoked).
func (a *API) endStreams(owner string) {
	s := &a.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m[owner] {
		(*c)()
	}
}
