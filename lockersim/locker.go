package lockersim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// Firmware is the firmware version every simulated locker reports.
const Firmware = "1.0.0"

// Reasons a locker drops its own connection.
var (
	errReboot     = errors.New("rebooting")
	errGoOffline  = errors.New("going offline (simulated link loss)")
	errAckTimeout = errors.New("a QoS 1 message went unacknowledged too long: reconnecting to republish")
)

// Errors of control actions.
var (
	ErrUnknownCell = errors.New("unknown cell")
	ErrConflict    = errors.New("not possible in this state")
	ErrOffline     = errors.New("locker is offline")
)

// lockerEnv is what all lockers of a simulation share.
type lockerEnv struct {
	cfg   *Config
	log   *slog.Logger
	sched *scheduler
	stats *Stats
	ctx   context.Context // the simulation's; set by Start
	wg    *sync.WaitGroup // the simulation's goroutines (updates)

	ota     otaEnv
	otaOnce sync.Once

	layoutOnce sync.Once
	cellNames  []string       // shared by all lockers (same --cells)
	cellIndex  map[string]int // name → index into Locker.cells
}

func (e *lockerEnv) layout() ([]string, map[string]int) {
	e.layoutOnce.Do(func() {
		e.cellNames = CellNames(e.cfg.Cells)
		e.cellIndex = make(map[string]int, len(e.cellNames))
		for i, n := range e.cellNames {
			e.cellIndex[n] = i
		}
	})
	return e.cellNames, e.cellIndex
}

type cell struct {
	door     string
	lock     string
	occupied bool
	gen      uint64 // bumped at every door change: a stale auto-close timer does nothing
}

// Locker is one simulated locker. Its run goroutine owns the connection (and is
// its reader); everything else (RPCs, control API, timers) takes mu, queues
// messages in the outbox and writes them on the current connection.
type Locker struct {
	id   string
	env  *lockerEnv
	tls  *tls.Config // nil: plain TCP (--plain)
	log  *slog.Logger
	wake chan struct{} // cap 1: re-check offline/reboot state now

	mu             sync.Mutex
	boot           uint32
	seq            uint64
	cellNames      []string       // shared, read-only
	cellIndex      map[string]int // shared, read-only
	cells          []cell
	mains          bool
	batteryV       float64
	tempC          float64
	humidityPct    float64
	rssi           float64
	desiredVersion *int64
	display        string
	keys           *keyCache
	out            *outbox
	conn           *Client
	connectedAt    time.Time
	offlineUntil   time.Time
	rebootReq      bool
	asks           map[string]chan protocol.Response
	codes          codeStore                        // code secret and offline parcel list (pickup.go), on disk
	wrongCodes     []time.Time                      // wrong codes typed offline within the rate-limit window
	handedOut      map[string]protocol.LockerParcel // cell → the parcel last opened offline there (for the pickup scan)
	lastErr        string
	acked          uint64
	ackedTelemetry uint64 // telemetry samples the hub acknowledged as stored (PUBACK < 0x80)
	dropped        uint64
	rpcs           uint64
	commandOpens   uint64 // doors opened by cell.open (not by repeats of a key)
	firmware       string // the installed version (ota.go)
	otaJob         *otaJob
	otaInstalled   *protocol.OTAInstallParams // installed, ota/status not sent yet (after the reconnect)

	pos     *posTerminal   // pos.charge (pos.go); made on first use
	cam     camera         // video.start / video.stop (video.go)
	videoWG sync.WaitGroup // video RPCs in progress
}

// CellNames returns n cell names in columns of 10: A01–A10, B01–B10, …
func CellNames(n int) []string {
	names := make([]string, 0, n)
	for i := range n {
		col := i / 10
		var prefix string
		for c := col; ; c = c/26 - 1 {
			prefix = string(rune('A'+c%26)) + prefix
			if c < 26 {
				break
			}
		}
		names = append(names, fmt.Sprintf("%s%02d", prefix, i%10+1))
	}
	return names
}

// newLocker loads a locker's persistent state and boots it (boot counter + 1 on disk).
func newLocker(env *lockerEnv, id string, tlsCfg *tls.Config) (*Locker, error) {
	l := &Locker{
		id:          id,
		env:         env,
		tls:         tlsCfg,
		log:         env.log.With("locker", id),
		wake:        make(chan struct{}, 1),
		mains:       true,
		batteryV:    13.5,
		tempC:       16 + mrand.Float64()*6,
		humidityPct: 45 + mrand.Float64()*15,
		rssi:        -60 - mrand.Float64()*25,
		out:         newOutbox(env.cfg.QueueSize),
		asks:        map[string]chan protocol.Response{},
	}
	l.cellNames, l.cellIndex = env.layout()
	l.cells = make([]cell, len(l.cellNames))
	for i := range l.cells {
		l.cells[i] = cell{door: protocol.DoorClosed, lock: protocol.LockLocked}
	}
	keys, err := loadKeyCache(keysPath(env.cfg.DataDir, id), l.nowMs())
	if err != nil {
		return nil, fmt.Errorf("locker %s: key cache: %w", id, err)
	}
	l.keys = keys
	if l.codes, err = loadCodes(env.cfg.DataDir, id); err != nil {
		return nil, fmt.Errorf("locker %s: codes: %w", id, err)
	}
	if err := l.bootLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// ID returns the locker ID.
func (l *Locker) ID() string { return l.id }

// bootLocked is what a locker does at every (simulated) boot: the boot counter
// on disk goes up, seq starts again, the key cache is read back from disk.
func (l *Locker) bootLocked() error {
	st, err := nextBoot(l.env.cfg.DataDir, l.id)
	if err != nil {
		return fmt.Errorf("locker %s: boot counter: %w", l.id, err)
	}
	l.boot = st.Boot
	l.seq = 0
	l.desiredVersion = st.DesiredVersion
	l.firmware = st.Firmware
	if l.firmware == "" {
		l.firmware = Firmware
	}
	l.otaJob = nil // an update under way does not survive a reboot
	l.display = ""
	if l.keys != nil {
		if err := l.keys.close(); err != nil {
			return fmt.Errorf("locker %s: key cache: %w", l.id, err)
		}
	}
	keys, err := loadKeyCache(keysPath(l.env.cfg.DataDir, l.id), l.nowMs())
	if err != nil {
		return fmt.Errorf("locker %s: key cache: %w", l.id, err)
	}
	l.keys = keys
	return nil
}

// now is the locker's clock, with the --clock-skew fault applied.
func (l *Locker) now() time.Time { return time.Now().Add(l.env.cfg.ClockSkew) }
func (l *Locker) nowMs() int64   { return l.now().UnixMilli() }

func (l *Locker) headerLocked() protocol.Header {
	l.seq++
	return protocol.Header{Boot: l.boot, Seq: l.seq, TS: l.nowMs()}
}

// run is the locker's goroutine: connect, read until the connection ends,
// back off, reconnect, until ctx ends.
func (l *Locker) run(ctx context.Context, initialDelay time.Duration) {
	defer func() {
		l.videoWG.Wait()
		l.stopCamera()
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := l.keys.close(); err != nil {
			l.log.Warn("key cache: close", "error", err)
		}
	}()
	if !l.sleep(ctx, initialDelay) {
		return
	}
	attempt := 0
	for ctx.Err() == nil {
		l.mu.Lock()
		reboot := l.rebootReq
		l.rebootReq = false
		until := l.offlineUntil
		l.mu.Unlock()
		if reboot {
			l.stopCamera()
			l.mu.Lock()
			err := l.bootLocked()
			l.mu.Unlock()
			if err != nil {
				l.log.Error("reboot failed", "err", err)
			} else {
				l.env.stats.Boots.Add(1)
				l.log.Info("rebooted", "boot", l.boot)
			}
			attempt = 0
			continue
		}
		if time.Now().Before(until) {
			l.sleepUntil(ctx, until)
			continue
		}
		established, err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if established {
			attempt = 0
		}
		if errors.Is(err, errReboot) || errors.Is(err, errGoOffline) {
			continue
		}
		d := l.env.cfg.Backoff.Delay(attempt, nil)
		attempt++
		l.sleep(ctx, d)
	}
}

// sleep waits d, or until ctx ends or the locker is woken; it reports whether ctx is still alive.
func (l *Locker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-l.wake:
	case <-t.C:
	}
	return ctx.Err() == nil
}

func (l *Locker) sleepUntil(ctx context.Context, t time.Time) bool {
	return l.sleep(ctx, time.Until(t))
}

func (l *Locker) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// session makes one connection and reads it until it ends. established
// reports whether the CONNACK and SUBACK came.
func (l *Locker) session(ctx context.Context) (established bool, err error) {
	cfg := l.env.cfg
	opts := ClientOptions{
		Addr:      cfg.Hub,
		TLS:       l.tls,
		ClientID:  l.id,
		Version:   cfg.MQTTVersion,
		Keepalive: cfg.Keepalive,
		Subscribe: []string{
			protocol.Topic(l.id, protocol.KindRPCReq),
			protocol.Topic(l.id, protocol.KindAskRes),
			protocol.Topic(l.id, protocol.KindDesired),
		},
		OnMessage: l.onMessage,
		OnPuback:  l.onPuback,
	}
	// The TLS handshake needs a deep stack; done in a goroutine of its own, it
	// does not leave the locker's long-lived reader goroutine with a grown stack
	// (measured: about 16 KiB less per connected locker).
	type result struct {
		c   *Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Connect(ctx, opts)
		done <- result{c, err}
	}()
	r := <-done
	c, err := r.c, r.err
	if err != nil {
		l.env.stats.ConnectErrors.Add(1)
		l.noteErr(err)
		if isRefusal(err) || isTLSRefusal(err) {
			l.log.Warn("connect refused", "err", err)
		} else {
			l.log.Debug("connect failed", "err", err)
		}
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { c.Disconnect() })
	defer stop()

	l.mu.Lock()
	if l.rebootReq || time.Now().Before(l.offlineUntil) {
		l.mu.Unlock()
		c.Disconnect()
		return true, errGoOffline
	}
	l.conn = c
	l.connectedAt = time.Now()
	if cfg.NoRepublish {
		if n := l.out.discard(); n > 0 {
			l.env.stats.Discarded.Add(int64(n))
			l.log.Warn("fault --no-republish: discarded unacknowledged messages", "count", n)
		}
	}
	window := min(cfg.Inflight, int(c.Info().ReceiveMaximum))
	if n := l.out.connected(window); n > 0 {
		l.env.stats.Republished.Add(int64(n))
	}
	l.publishLocked(protocol.KindState, l.fullStateLocked())
	l.otaReportInstalledLocked()
	l.mu.Unlock()

	l.env.stats.Connected.Add(1)
	l.env.stats.Connects.Add(1)
	l.log.Debug("connected", "boot", l.boot)
	err = c.ReadLoop()
	l.env.stats.Connected.Add(-1)

	l.mu.Lock()
	l.conn = nil
	l.out.disconnected()
	l.mu.Unlock()
	if !errors.Is(err, errReboot) && !errors.Is(err, errGoOffline) && !errors.Is(err, ErrClosed) {
		l.noteErr(err)
		l.log.Debug("connection lost", "err", err)
	}
	return true, err
}

// isTLSRefusal reports whether err is the server refusing our TLS connection
// (an alert received, e.g. a revoked or unknown client certificate) or our
// refusing its certificate.
func isTLSRefusal(err error) bool {
	var ce *tls.CertificateVerificationError
	return errors.As(err, &ce) || strings.Contains(err.Error(), "remote error: tls")
}

func (l *Locker) noteErr(err error) {
	l.mu.Lock()
	l.lastErr = err.Error()
	l.mu.Unlock()
	l.env.stats.noteErr(err)
}

// publishLocked marshals v, queues it as a QoS 1 message and sends what the
// window allows. When the outbox is full the message is dropped and counted.
func (l *Locker) publishLocked(kind protocol.Kind, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		l.log.Error("encoding message", "kind", kind, "err", err)
		return
	}
	if err := l.out.add(protocol.Topic(l.id, kind), payload); err != nil {
		l.dropped++
		l.env.stats.Dropped.Add(1)
		l.log.Debug("outbox full: message dropped", "kind", kind, "queued", l.out.len())
		return
	}
	l.flushLocked()
}

// flushLocked sends the queued messages the window allows, and drops a
// connection whose oldest message has waited for its PUBACK longer than --ack-timeout.
func (l *Locker) flushLocked() {
	c := l.conn
	if c == nil {
		return
	}
	now := time.Now()
	if at := l.env.cfg.AckTimeout; at > 0 {
		if t := l.out.oldestInFlight(); !t.IsZero() && now.Sub(t) > at {
			c.CloseWith(errAckTimeout)
			return
		}
	}
	for _, m := range l.out.toSend(now) {
		if err := c.Publish(m.topic, m.payload, 1, m.id); err != nil {
			// The connection is closed by the failed write; the read loop ends and
			// everything is sent again on the next connection.
			return
		}
		l.env.stats.Published.Add(1)
	}
}

func (l *Locker) onPuback(id uint16, reason byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.env.cfg.DropAcksPct; p > 0 && mrand.Float64()*100 < p {
		l.env.stats.AcksIgnored.Add(1)
		return
	}
	m, ok := l.out.acked(id)
	if !ok {
		l.env.stats.StrayAcks.Add(1)
		return
	}
	l.acked++
	l.env.stats.Acked.Add(1)
	if reason < 0x80 && strings.HasSuffix(m.topic, "/"+string(protocol.KindTelemetry)) {
		l.ackedTelemetry++
	}
	if reason >= 0x80 {
		l.env.stats.Refused.Add(1)
		l.log.Warn("hub refused a message", "topic", m.topic, "reason", fmt.Sprintf("%s (0x%02X)", reasonName(reason), reason))
	} else if fn := l.env.cfg.OnAcked; fn != nil {
		fn(l.id, m.topic, m.payload)
	}
	l.flushLocked()
}

// onMessage handles a publish from the hub (reader goroutine).
func (l *Locker) onMessage(topic string, payload []byte) {
	id, kind, err := protocol.ParseTopic(topic)
	if err != nil || id != l.id {
		l.env.stats.BadMessages.Add(1)
		l.log.Warn("message on an unexpected topic", "topic", topic)
		return
	}
	switch kind {
	case protocol.KindRPCReq:
		l.handleRPC(payload)
	case protocol.KindAskRes:
		l.handleAskRes(payload)
	case protocol.KindDesired:
		l.handleDesired(payload)
	default:
		l.env.stats.BadMessages.Add(1)
	}
}

// handleRPC answers one rpc/req. It is the whole device side of decision 13:
// a repeated key gets the first result without acting again (also after a
// reboot: the cache is on disk), a request past not_after is refused as expired.
func (l *Locker) handleRPC(payload []byte) {
	req, perr := parseRequest(payload)
	if req.ID == "" {
		// Without an id there is nobody to answer.
		l.env.stats.BadMessages.Add(1)
		l.log.Warn("rpc request without id", "err", perr)
		return
	}
	if perr == nil && (req.Method == protocol.MethodVideoStart || req.Method == protocol.MethodVideoStop) {
		// Not physical (no key): answered off the read loop, ICE gathering takes a while.
		l.env.stats.RPCs.Add(1)
		l.videoWG.Add(1)
		go func() { defer l.videoWG.Done(); l.videoRPC(req) }()
		return
	}
	start := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if fn := l.env.cfg.OnRPC; fn != nil {
		// Runs (before the unlock) once the answer is written.
		defer func() { fn(req.Key, start, time.Since(start)) }()
	}
	l.rpcs++
	l.env.stats.RPCs.Add(1)
	if perr != nil {
		l.respondLocked(req.ID, nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: perr.Error()})
		return
	}
	if req.Method == protocol.MethodPOSCharge && l.posSilentLocked(req) {
		return // fault: the terminal hangs, nothing is answered (nor cached)
	}
	now := l.nowMs()
	if req.Key != "" {
		if e, ok := l.keys.get(req.Key, now); ok {
			l.env.stats.RPCRepeats.Add(1)
			l.respondLocked(req.ID, e.Result, e.Error)
			return
		}
	}
	if req.NotAfter != 0 && now > req.NotAfter {
		l.env.stats.RPCExpired.Add(1)
		l.respondLocked(req.ID, nil, &protocol.Error{Code: protocol.ErrCodeExpired,
			Message: fmt.Sprintf("received at %d, after not_after %d", now, req.NotAfter)})
		return
	}
	if fn := l.env.cfg.OnExecute; fn != nil {
		fn(l.id, req.Method, req.Key)
	}
	result, rerr, after := l.execLocked(req)
	var raw json.RawMessage
	if rerr == nil {
		var err error
		if raw, err = json.Marshal(result); err != nil {
			rerr = &protocol.Error{Code: protocol.ErrCodeInternal, Message: err.Error()}
		}
	}
	if req.Key != "" {
		na := req.NotAfter
		if na == 0 {
			na = now + keyTTLWithoutNotAfter.Milliseconds()
		}
		if err := l.keys.put(req.Key, keyEntry{NotAfter: na, Result: raw, Error: rerr}, now); err != nil {
			l.log.Error("writing key cache", "err", err)
		}
	}
	l.respondLocked(req.ID, raw, rerr)
	if after != nil {
		after()
	}
}

// parseRequest decodes an rpc/req payload. When the payload is not a valid
// request but has an id, the id is returned with the error so it can be answered.
func parseRequest(payload []byte) (protocol.Request, error) {
	var req protocol.Request
	if err := json.Unmarshal(payload, &req); err != nil {
		var idOnly struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(payload, &idOnly)
		return protocol.Request{ID: idOnly.ID}, fmt.Errorf("malformed request: %v", err)
	}
	if req.Method == "" {
		return req, errors.New("request has no method")
	}
	return req, nil
}

func (l *Locker) respondLocked(id string, result json.RawMessage, perr *protocol.Error) {
	res := protocol.Response{ID: id, Result: result, Error: perr}
	if perr == nil && len(result) == 0 {
		res.Result = json.RawMessage("{}")
	}
	l.publishLocked(protocol.KindRPCRes, res)
}

// execLocked performs one RPC. after, if not nil, runs once the response is queued.
func (l *Locker) execLocked(req protocol.Request) (result any, perr *protocol.Error, after func()) {
	switch req.Method {
	case protocol.MethodCellOpen, protocol.MethodCellStatus:
		var p protocol.CellOpenParams
		if err := json.Unmarshal(orEmpty(req.Params), &p); err != nil || p.Cell == "" {
			return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: `params must be {"cell":"A01"}`}, nil
		}
		c, ok := l.cell(p.Cell)
		if !ok {
			return nil, &protocol.Error{Code: protocol.ErrCodeUnknownCell, Message: fmt.Sprintf("no cell %q", p.Cell)}, nil
		}
		if req.Method == protocol.MethodCellStatus {
			return cellStatus{Cell: p.Cell, Door: c.door, Lock: c.lock, Occupied: c.occupied}, nil, nil
		}
		if c.door == protocol.DoorOpen {
			return map[string]any{"opened": true, "already_open": true}, nil, nil
		}
		if pct := l.env.cfg.JamPct; pct > 0 && mrand.Float64()*100 < pct {
			return nil, &protocol.Error{Code: protocol.ErrCodeJammed, Message: "lock did not release"}, nil
		}
		if pct := l.env.cfg.StuckDoorPct; pct > 0 && mrand.Float64()*100 < pct {
			// The lock released, but the door stays shut: no door event, so
			// the hub cannot confirm the opening.
			c.lock = protocol.LockUnlocked
			return map[string]any{"opened": true}, nil, nil
		}
		cmd := req.Key
		if cmd == "" {
			cmd = req.ID
		}
		l.commandOpens++
		l.openLocked(p.Cell, "command:"+cmd, true)
		return map[string]any{"opened": true}, nil, nil
	case protocol.MethodLockerReboot:
		return map[string]any{"rebooting": true}, nil, l.scheduleReboot
	case protocol.MethodPowerCycle:
		return map[string]any{"cycled": true}, nil, l.scheduleReboot
	case protocol.MethodCodesKey:
		res, perr := l.execCodesKeyLocked(req.Params)
		return res, perr, nil
	case protocol.MethodParcelsSync:
		res, perr := l.execParcelsSyncLocked(req.Params)
		return res, perr, nil
	case protocol.MethodOTAInstall:
		return l.execOTAInstallLocked(req.Params)
	case protocol.MethodPOSCharge:
		res, perr := l.execPOSChargeLocked(req.Params)
		return res, perr, nil
	case protocol.MethodDisplayMessage:
		var p protocol.DisplayMessageParams
		if err := json.Unmarshal(orEmpty(req.Params), &p); err != nil {
			return nil, &protocol.Error{Code: protocol.ErrCodeBadParams, Message: `params must be {"text":"…","ttl_s":N}`}, nil
		}
		l.display = p.Text
		return map[string]any{"shown": true}, nil, nil
	}
	return nil, &protocol.Error{Code: protocol.ErrCodeUnknownMethod, Message: fmt.Sprintf("method %q is not implemented by lockersim", req.Method)}, nil
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

type cellStatus struct {
	Cell     string `json:"cell"`
	Door     string `json:"door"`
	Lock     string `json:"lock"`
	Occupied bool   `json:"occupied"`
}

// scheduleReboot reboots shortly after the response went out, so its PUBACK
// can arrive (if it does not, the response is republished after the reboot).
func (l *Locker) scheduleReboot() {
	l.env.sched.After(250*time.Millisecond, func() { l.Reboot() })
}

// openLocked opens a cell's door. With a cause the lock releases first and the
// event is door_opened with that cause; without one the door was forced
// (lock still locked, event door_forced, no cause: decision 17).
func (l *Locker) openLocked(name, cause string, autoClose bool) {
	c, _ := l.cell(name)
	c.gen++
	c.door = protocol.DoorOpen
	typ := protocol.EventDoorForced
	if cause != "" {
		c.lock = protocol.LockUnlocked
		typ = protocol.EventDoorOpened
	}
	l.eventLocked(typ, name, cause, nil)
	l.publishLocked(protocol.KindState, l.cellStateLocked(name))
	if autoClose && l.env.cfg.DoorClose > 0 {
		gen := c.gen
		l.env.sched.After(l.env.cfg.DoorClose, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if c.gen == gen && c.door == protocol.DoorOpen {
				l.closeLocked(name)
			}
		})
	}
}

// closeLocked closes a door; the lock latches when the door closes.
func (l *Locker) closeLocked(name string) {
	c, _ := l.cell(name)
	c.gen++
	c.door = protocol.DoorClosed
	c.lock = protocol.LockLocked
	l.eventLocked(protocol.EventDoorClosed, name, "", nil)
	l.publishLocked(protocol.KindState, l.cellStateLocked(name))
}

func (l *Locker) eventLocked(typ, cellName, cause string, data any) {
	ev := protocol.Event{ID: rand.Text(), Header: l.headerLocked(), Type: typ, Cell: cellName, Cause: cause}
	if data != nil {
		raw, err := json.Marshal(data)
		if err == nil {
			ev.Data = raw
		}
	}
	l.env.stats.Events.Add(1)
	l.publishLocked(protocol.KindEvents, ev)
}

func (l *Locker) cellStateLocked(names ...string) protocol.State {
	st := protocol.State{Header: l.headerLocked(), Cells: map[string]protocol.CellState{}}
	for _, n := range names {
		c, _ := l.cell(n)
		occ := c.occupied
		st.Cells[n] = protocol.CellState{Door: c.door, Lock: c.lock, Occupied: &occ}
	}
	return st
}

func (l *Locker) powerLocked() *protocol.Power {
	mains := l.mains
	bv := round2(l.batteryV)
	return &protocol.Power{Mains: &mains, BatteryV: &bv}
}

// fullStateLocked is the report sent after every connect.
func (l *Locker) fullStateLocked() protocol.State {
	st := l.cellStateLocked(l.cellNames...)
	st.Full = true
	st.Power = l.powerLocked()
	st.Firmware = l.firmware
	st.DesiredVersion = l.desiredVersion
	return st
}

// telemetryLocked samples the sensors (a random walk around plausible values)
// and queues the sample.
func (l *Locker) telemetryLocked() {
	l.tempC += mrand.NormFloat64()*0.15 + (18-l.tempC)*0.05
	l.humidityPct = min(max(l.humidityPct+mrand.NormFloat64()*0.8+(55-l.humidityPct)*0.05, 5), 99)
	if l.mains {
		l.batteryV += (13.5-l.batteryV)*0.2 + mrand.NormFloat64()*0.01
	} else {
		l.batteryV = max(l.batteryV-0.02-mrand.Float64()*0.01, 10.5)
	}
	l.rssi = min(max(l.rssi+mrand.NormFloat64()*1.5+(-71-l.rssi)*0.05, -110), -40)
	mains := 0.0
	if l.mains {
		mains = 1
	}
	l.publishLocked(protocol.KindTelemetry, protocol.Telemetry{Header: l.headerLocked(), M: map[string]float64{
		"temp_c":       round2(l.tempC),
		"humidity_pct": round2(l.humidityPct),
		"battery_v":    round2(l.batteryV),
		"mains":        mains,
		"rssi_dbm":     float64(int(l.rssi)),
	}})
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// telemetryTick is scheduled every --telemetry by the shared scheduler.
func (l *Locker) telemetryTick(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	l.telemetryLocked()
	l.mu.Unlock()
	l.env.sched.After(l.env.cfg.Telemetry, func() { l.telemetryTick(ctx) })
}

func (l *Locker) handleDesired(payload []byte) {
	var d protocol.Desired
	if err := json.Unmarshal(payload, &d); err != nil {
		l.env.stats.BadMessages.Add(1)
		l.log.Warn("malformed desired", "err", err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	v := d.Version
	l.desiredVersion = &v
	if err := saveState(l.env.cfg.DataDir, l.id, deviceState{Boot: l.boot, DesiredVersion: &v}); err != nil {
		l.log.Error("saving state", "err", err)
	}
	st := protocol.State{Header: l.headerLocked(), DesiredVersion: &v}
	l.publishLocked(protocol.KindState, st)
}

func (l *Locker) handleAskRes(payload []byte) {
	var res protocol.Response
	if err := json.Unmarshal(payload, &res); err != nil || res.ID == "" {
		l.env.stats.BadMessages.Add(1)
		return
	}
	l.mu.Lock()
	ch, ok := l.asks[res.ID]
	delete(l.asks, res.ID)
	l.mu.Unlock()
	if ok {
		ch <- res // buffered 1, one sender
	}
}

// Ask sends a locker→hub request (ask/req, QoS 1: queued while offline) and
// waits for the answer on ask/res until ctx ends.
func (l *Locker) Ask(ctx context.Context, method string, params any) (protocol.Response, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return protocol.Response{}, err
	}
	id := "a-" + rand.Text()[:16]
	ch := make(chan protocol.Response, 1)
	l.mu.Lock()
	l.asks[id] = ch
	h := l.headerLocked()
	l.publishLocked(protocol.KindAskReq, protocol.Request{ID: id, Header: &h, Method: method, Params: raw})
	l.mu.Unlock()
	select {
	case res := <-ch:
		return res, nil
	case <-ctx.Done():
		l.mu.Lock()
		delete(l.asks, id)
		l.mu.Unlock()
		return protocol.Response{ID: id}, fmt.Errorf("no answer to %s %s: %w", method, id, ctx.Err())
	}
}

// Control actions (the control API calls these).

func (l *Locker) cellLocked(name string) (*cell, error) {
	c, ok := l.cell(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (cells are %s…%s)", ErrUnknownCell, name, l.cellNames[0], l.cellNames[len(l.cellNames)-1])
	}
	return c, nil
}

// OpenDoor opens a door as a person at the locker would. With a cause
// ("code:<parcel>", "service:<user>", …) the lock releases first; without, the
// door is forced.
func (l *Locker) OpenDoor(name, cause string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.cellLocked(name)
	if err != nil {
		return err
	}
	if c.door == protocol.DoorOpen {
		return fmt.Errorf("%w: door %s is already open", ErrConflict, name)
	}
	l.openLocked(name, cause, false)
	return nil
}

// CloseDoor closes a door (the lock latches).
func (l *Locker) CloseDoor(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.cellLocked(name)
	if err != nil {
		return err
	}
	if c.door == protocol.DoorClosed {
		return fmt.Errorf("%w: door %s is already closed", ErrConflict, name)
	}
	l.closeLocked(name)
	return nil
}

// SetOccupied puts a parcel into a cell (true) or takes it out (false); the door must be open.
func (l *Locker) SetOccupied(name string, occupied bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.cellLocked(name)
	if err != nil {
		return err
	}
	if c.door != protocol.DoorOpen {
		return fmt.Errorf("%w: door %s is closed; open it first", ErrConflict, name)
	}
	if c.occupied == occupied {
		return fmt.Errorf("%w: cell %s occupied is already %v", ErrConflict, name, occupied)
	}
	c.occupied = occupied
	l.publishLocked(protocol.KindState, l.cellStateLocked(name))
	return nil
}

// SetMains cuts (false) or restores (true) mains power.
func (l *Locker) SetMains(on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mains == on {
		return fmt.Errorf("%w: mains is already %v", ErrConflict, on)
	}
	l.mains = on
	typ := protocol.EventPowerLost
	if on {
		typ = protocol.EventPowerRestore
	}
	l.eventLocked(typ, "", "", nil)
	st := protocol.State{Header: l.headerLocked(), Power: l.powerLocked()}
	l.publishLocked(protocol.KindState, st)
	return nil
}

// Tamper reports a tamper event.
func (l *Locker) Tamper() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.eventLocked(protocol.EventTamper, "", "", nil)
}

// GoOffline drops the connection and stays away for d (messages queue meanwhile).
func (l *Locker) GoOffline(d time.Duration) {
	l.mu.Lock()
	l.offlineUntil = time.Now().Add(d)
	if l.conn != nil {
		l.conn.CloseWith(errGoOffline)
	}
	l.mu.Unlock()
	l.poke()
}

// ComeOnline ends an offline period now.
func (l *Locker) ComeOnline() {
	l.mu.Lock()
	l.offlineUntil = time.Time{}
	l.mu.Unlock()
	l.poke()
}

// Reboot drops the connection, increments the boot counter and reconnects.
func (l *Locker) Reboot() {
	l.mu.Lock()
	l.rebootReq = true
	if l.conn != nil {
		l.conn.CloseWith(errReboot)
	}
	l.mu.Unlock()
	l.poke()
}

// disconnect closes the current connection with DISCONNECT (shutdown).
func (l *Locker) disconnect() {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c != nil {
		c.Disconnect()
	}
}

// LockerView is a locker as the control API shows it.
type LockerView struct {
	ID           string                        `json:"id"`
	Connected    bool                          `json:"connected"`
	ConnectedAt  *time.Time                    `json:"connected_at,omitempty"`
	OfflineUntil *time.Time                    `json:"offline_until,omitempty"`
	Boot         uint32                        `json:"boot"`
	Seq          uint64                        `json:"seq"`
	Queued       int                           `json:"queued"`
	Acked        uint64                        `json:"acked"`
	AckedTelem   uint64                        `json:"acked_telemetry"` // telemetry samples acknowledged as stored
	Dropped      uint64                        `json:"dropped"`
	RPCs         uint64                        `json:"rpcs"`
	CommandOpens uint64                        `json:"command_opens"` // doors opened by cell.open
	Keys         int                           `json:"keys"`
	LastError    string                        `json:"last_error,omitempty"`
	Mains        bool                          `json:"mains"`
	BatteryV     float64                       `json:"battery_v"`
	Display      string                        `json:"display,omitempty"`
	Desired      *int64                        `json:"desired_version,omitempty"`
	CodeKey      int64                         `json:"code_key_version,omitempty"` // the pickup-code secret's version (never the secret)
	ParcelsSync  int64                         `json:"parcels_version,omitempty"`  // the offline parcel list's version
	Parcels      []protocol.LockerParcel       `json:"offline_parcels,omitempty"`  // parcels it may hand out offline
	Firmware     string                        `json:"firmware"`
	Updating     string                        `json:"updating,omitempty"` // the firmware version being installed
	Cells        map[string]protocol.CellState `json:"cells,omitempty"`
}

// View returns the locker's state; cells only when withCells.
func (l *Locker) View(withCells bool) LockerView {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := LockerView{
		ID: l.id, Connected: l.conn != nil, Boot: l.boot, Seq: l.seq, Queued: l.out.len(),
		Acked: l.acked, AckedTelem: l.ackedTelemetry, Dropped: l.dropped, RPCs: l.rpcs, CommandOpens: l.commandOpens, Keys: l.keys.len(), LastError: l.lastErr,
		Mains: l.mains, BatteryV: round2(l.batteryV), Display: l.display, Desired: l.desiredVersion,
		CodeKey: l.codes.KeyVersion, ParcelsSync: l.codes.ParcelsVersion, Parcels: slices.Clone(l.codes.Parcels),
		Firmware: l.firmware,
	}
	if l.otaJob != nil {
		v.Updating = l.otaJob.p.Version
	}
	if l.conn != nil {
		t := l.connectedAt
		v.ConnectedAt = &t
	}
	if time.Now().Before(l.offlineUntil) {
		t := l.offlineUntil
		v.OfflineUntil = &t
	}
	if withCells {
		v.Cells = map[string]protocol.CellState{}
		for _, n := range l.cellNames {
			c, _ := l.cell(n)
			occ := c.occupied
			v.Cells[n] = protocol.CellState{Door: c.door, Lock: c.lock, Occupied: &occ}
		}
	}
	return v
}

// cell returns the cell of that name.
func (l *Locker) cell(name string) (*cell, bool) {
	i, ok := l.cellIndex[name]
	if !ok {
		return nil, false
	}
	return &l.cells[i], true
}

// Cells returns the cell names in order.
func (l *Locker) Cells() []string { return slices.Clone(l.cellNames) }
