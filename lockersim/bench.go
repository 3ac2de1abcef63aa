package lockersim

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// BenchConfig is everything `lockersim bench` needs.
type BenchConfig struct {
	Broker      string // host:port (loopback only)
	MQTTVersion byte
	TLS         bool
	Identity    IdentityOptions // with TLS: where ID.crt/ID.key live (--certs) and how to enrol missing ones
	Prefix      string          // client IDs are prefix + zero-padded number

	Connections     int
	DialConcurrency int           // connects in progress at once
	QoS             byte          // 0 or 1
	Rate            float64       // messages per second over all connections; 0 = as fast as acks allow
	Inflight        int           // QoS 1: max unacknowledged per connection
	Payload         string        // PayloadTelemetry (default) or PayloadState
	Size            int           // telemetry payload bytes (about)
	Duration        time.Duration // how long to publish (or hold, with Idle)
	MaxMessages     int64         // stop after this many messages (0 = no limit but Duration)
	TopicTemplate   string        // {id} is replaced by the client ID; empty: lockers/{id}/<Payload>
	SendLog         string        // file: one line "id seq unix_nanos" per message published (empty: none)
	Idle            bool          // connect and hold, no publishing
	Keepalive       time.Duration
	Drain           time.Duration // after Duration, wait this long for outstanding PUBACKs
}

// DefaultBenchConfig returns the defaults of `lockersim bench`.
func DefaultBenchConfig() BenchConfig {
	return BenchConfig{
		Broker:          "127.0.0.1:1883",
		MQTTVersion:     MQTT5,
		Prefix:          "BENCH-",
		Connections:     10,
		DialConcurrency: 64,
		QoS:             1,
		Inflight:        10,
		Payload:         PayloadTelemetry,
		Size:            200,
		Duration:        10 * time.Second,
		Keepalive:       60 * time.Second,
		Drain:           5 * time.Second,
	}
}

// What a bench publishes (--payload).
const (
	// PayloadTelemetry: a telemetry sample of about Size bytes.
	PayloadTelemetry = "telemetry"
	// PayloadState: a partial state report of one random cell among
	// StateBenchCells (door open or closed, occupied or not) with firmware
	// "b-<seq>", so a receiver can tell which report a twin reflects.
	PayloadState = "state"
)

// StateBenchCells is how many cells (A01–A10) state payloads pick from: the
// lockers must have at least that many (lockersim bench registers --cells).
const StateBenchCells = 10

// Limits that keep a bench bounded.
const (
	MaxBenchConnections = 19000 // a process here may hold at most 20,000 open files
	MaxBenchDuration    = time.Hour
	MaxBenchSize        = 256 << 10
	MaxBenchInflight    = 1000
	MaxSendLogBytes     = 256 << 20 // beyond it, lines are counted in send_log_dropped, not written
)

// BenchResult is the one JSON line a bench prints.
type BenchResult struct {
	Mode            string  `json:"mode"` // "publish" or "idle"
	Protocol        int     `json:"mqtt"`
	TLS             bool    `json:"tls"`
	QoS             int     `json:"qos"`
	Pattern         string  `json:"pattern"` // how messages are written (see NOTES.md on batching)
	Connections     int     `json:"connections"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	ConnectionsPerS float64 `json:"connections_per_s"`
	Seconds         float64 `json:"seconds"` // publishing (or holding) time
	Sent            int64   `json:"sent"`
	SentPerS        float64 `json:"sent_per_s"`
	Acked           int64   `json:"acked"`
	AckedPerS       float64 `json:"acked_per_s"`
	AckP50Ms        float64 `json:"ack_p50_ms"`
	AckP99Ms        float64 `json:"ack_p99_ms"`
	AckMaxMs        float64 `json:"ack_max_ms"`
	Refused         int64   `json:"refused"` // PUBACKs with a failure reason code
	Errors          int64   `json:"errors"`  // failed connects, write errors, lost connections, refusals
	FirstError      string  `json:"first_error,omitempty"`
	ClientRSSMiB    float64 `json:"client_rss_mib"` // this process, at the end of the connect phase
	Payload         string  `json:"payload"`
	SendLogLines    int64   `json:"send_log_lines,omitempty"`
	SendLogDropped  int64   `json:"send_log_dropped,omitempty"` // over MaxSendLogBytes
}

func (c *BenchConfig) check() error {
	if c.Payload == "" {
		c.Payload = PayloadTelemetry
	}
	if c.TopicTemplate == "" {
		c.TopicTemplate = "lockers/{id}/" + c.Payload
	}
	if err := CheckLoopback(c.Broker); err != nil {
		return fmt.Errorf("--broker: %w", err)
	}
	switch {
	case c.Connections < 1 || c.Connections > MaxBenchConnections:
		return fmt.Errorf("--connections %d: must be 1–%d (more needs several processes: the file limit is 20,000)", c.Connections, MaxBenchConnections)
	case c.Duration <= 0 || c.Duration > MaxBenchDuration:
		return fmt.Errorf("--duration %s: must be positive and at most %s", c.Duration, MaxBenchDuration)
	case c.QoS > 1:
		return fmt.Errorf("--qos %d: must be 0 or 1", c.QoS)
	case c.Inflight < 1 || c.Inflight > MaxBenchInflight:
		return fmt.Errorf("--inflight %d: must be 1–%d", c.Inflight, MaxBenchInflight)
	case c.Size < 0 || c.Size > MaxBenchSize:
		return fmt.Errorf("--size %d: must be 0–%d", c.Size, MaxBenchSize)
	case c.Rate < 0:
		return fmt.Errorf("--rate %v: must be ≥ 0", c.Rate)
	case c.MQTTVersion != MQTT311 && c.MQTTVersion != MQTT5:
		return fmt.Errorf("--mqtt %d: must be 4 or 5", c.MQTTVersion)
	case c.Payload != PayloadTelemetry && c.Payload != PayloadState:
		return fmt.Errorf("--payload %q: must be %s or %s", c.Payload, PayloadTelemetry, PayloadState)
	case !strings.Contains(c.TopicTemplate, "{id}") && c.TLS:
		return errors.New("--topic-template must contain {id} with --tls (a locker may publish only under its own topic)")
	}
	if c.DialConcurrency < 1 {
		c.DialConcurrency = 1
	}
	return nil
}

// benchConn is one connection of a bench.
type benchConn struct {
	id     string
	topic  string
	client *Client
	slots  chan struct{} // QoS 1 window: one token per message in flight

	mu     sync.Mutex
	sentAt map[uint16]time.Time
	nextID uint16
}

type benchRun struct {
	cfg      BenchConfig
	log      *slog.Logger
	sendLog  *sendLog // nil without --send-log
	boot     uint32   // of every payload: the start time
	hist     latencyHist
	sent     atomic.Int64
	acked    atomic.Int64
	refused  atomic.Int64
	errors   atomic.Int64
	errMu    sync.Mutex
	firstErr string
}

func (b *benchRun) fail(err error) {
	b.errors.Add(1)
	b.errMu.Lock()
	if b.firstErr == "" {
		b.firstErr = err.Error()
	}
	b.errMu.Unlock()
	b.log.Debug("bench error", "err", err)
}

// Bench connects cfg.Connections clients and publishes (or holds them, with
// Idle) for cfg.Duration, then returns the figures. It is bounded in
// connections, time and, optionally, messages, and aims only at loopback.
func Bench(ctx context.Context, cfg BenchConfig, log *slog.Logger) (BenchResult, error) {
	if err := cfg.check(); err != nil {
		return BenchResult{}, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Payloads carry the start time as their boot counter, so that a
	// later run's reports are newer than an earlier run's for the same lockers
	// (the hub ignores a report older than what its twin holds).
	b := &benchRun{cfg: cfg, log: log.With("component", "lockersim-bench"), boot: uint32(time.Now().Unix())}
	res := BenchResult{Mode: "publish", Protocol: int(cfg.MQTTVersion), TLS: cfg.TLS, QoS: int(cfg.QoS),
		Pattern: "one write per message (one TLS record with --tls)", Payload: cfg.Payload}
	if cfg.Idle {
		res.Mode = "idle"
		res.Pattern = "idle"
	}
	if cfg.SendLog != "" && !cfg.Idle {
		sl, err := createSendLog(cfg.SendLog)
		if err != nil {
			return res, err
		}
		b.sendLog = sl
		defer func() {
			if err := sl.close(); err != nil {
				b.fail(err)
			}
		}()
	}

	// Identities first (enrolment is not part of the connect time).
	ids := make([]string, cfg.Connections)
	tlsCfgs := make([]*tls.Config, cfg.Connections)
	for i := range ids {
		ids[i] = LockerID(cfg.Prefix, i+1, cfg.Connections)
	}
	if cfg.TLS {
		idOpts := cfg.Identity
		idOpts.ServerAddr = cfg.Broker
		idn, err := newIdentities(ctx, idOpts, b.log)
		if err != nil {
			return res, err
		}
		// Enrol the missing ones, --enroll-concurrency at a time (ensure bounds it).
		errs := make([]error, len(ids))
		var ewg sync.WaitGroup
		for i, id := range ids {
			ewg.Go(func() {
				if errs[i] = idn.ensure(ctx, id); errs[i] == nil {
					tlsCfgs[i], errs[i] = ClientTLS(idOpts.Dir, id, idn.pool, idn.serverName)
				}
			})
		}
		ewg.Wait()
		for _, err := range errs {
			if err != nil {
				return res, err // the first is enough: the others are most likely the same
			}
		}
	}

	// Connect phase.
	conns := make([]*benchConn, cfg.Connections)
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.DialConcurrency)
	start := time.Now()
	for i := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			bc := &benchConn{id: ids[i], topic: strings.ReplaceAll(cfg.TopicTemplate, "{id}", ids[i]),
				sentAt: map[uint16]time.Time{}}
			c, err := Connect(ctx, ClientOptions{
				Addr: cfg.Broker, TLS: tlsCfgs[i], ClientID: ids[i], Version: cfg.MQTTVersion,
				Keepalive: cfg.Keepalive, ConnectTimeout: 30 * time.Second,
				OnPuback: func(id uint16, reason byte) { b.onPuback(bc, id, reason) },
			})
			if err != nil {
				b.fail(err)
				return
			}
			bc.client = c
			bc.slots = make(chan struct{}, min(cfg.Inflight, int(c.Info().ReceiveMaximum)))
			conns[i] = bc
		})
	}
	wg.Wait()
	res.ConnectSeconds = time.Since(start).Seconds()
	live := conns[:0]
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	conns = live
	res.Connections = len(conns)
	if res.ConnectSeconds > 0 {
		res.ConnectionsPerS = float64(len(conns)) / res.ConnectSeconds
	}
	res.ClientRSSMiB = rssMiB()
	defer func() {
		for _, c := range conns {
			c.client.Disconnect()
		}
	}()

	// Readers: one goroutine per connection.
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Go(func() {
			if err := c.client.ReadLoop(); !errors.Is(err, ErrClosed) && ctx.Err() == nil {
				b.fail(fmt.Errorf("%s: connection lost: %w", c.id, err))
			}
		})
	}
	defer readers.Wait()

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	pubStart := time.Now()
	if !cfg.Idle && len(conns) > 0 {
		var pubs sync.WaitGroup
		for _, c := range conns {
			pubs.Go(func() { b.publishLoop(runCtx, c, len(conns)) })
		}
		pubs.Wait()
	} else {
		<-runCtx.Done()
	}
	res.Seconds = time.Since(pubStart).Seconds()
	if cfg.QoS == 1 && !cfg.Idle {
		// Wait a bounded time for the PUBACKs still due.
		deadline := time.Now().Add(cfg.Drain)
		for b.acked.Load()+b.refused.Load() < b.sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, c := range conns {
		c.client.Disconnect()
	}
	readers.Wait()

	if b.sendLog != nil {
		if err := b.sendLog.close(); err != nil {
			b.fail(err)
		}
		res.SendLogLines, res.SendLogDropped = b.sendLog.lines, b.sendLog.dropped
	}
	res.Sent = b.sent.Load()
	res.Acked = b.acked.Load()
	res.Refused = b.refused.Load()
	res.Errors = b.errors.Load()
	res.FirstError = b.firstErr
	if res.Seconds > 0 {
		res.SentPerS = round2(float64(res.Sent) / res.Seconds)
		res.AckedPerS = round2(float64(res.Acked) / res.Seconds)
	}
	res.AckP50Ms = round3(b.hist.quantileMs(0.50))
	res.AckP99Ms = round3(b.hist.quantileMs(0.99))
	res.AckMaxMs = round3(b.hist.quantileMs(1))
	res.ConnectSeconds = round3(res.ConnectSeconds)
	res.ConnectionsPerS = round2(res.ConnectionsPerS)
	res.Seconds = round3(res.Seconds)
	return res, nil
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func (b *benchRun) onPuback(c *benchConn, id uint16, reason byte) {
	c.mu.Lock()
	t, ok := c.sentAt[id]
	delete(c.sentAt, id)
	c.mu.Unlock()
	if !ok {
		b.fail(fmt.Errorf("%s: PUBACK for packet %d not in flight", c.id, id))
		return
	}
	if reason >= 0x80 {
		b.refused.Add(1)
		b.fail(fmt.Errorf("%s: publish refused: %s (0x%02X)", c.id, reasonName(reason), reason))
	} else {
		b.acked.Add(1)
		b.hist.record(time.Since(t))
	}
	<-c.slots
}

// publishLoop publishes on one connection until ctx ends: paced at
// Rate/connections when a rate is set, and for QoS 1 never more than the
// window unacknowledged.
func (b *benchRun) publishLoop(ctx context.Context, c *benchConn, nConns int) {
	cfg := b.cfg
	var interval time.Duration
	next := time.Now()
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(nConns) / cfg.Rate)
		next = next.Add(time.Duration(rand.Int64N(int64(interval) + 1))) // spread the connections' phases
	}
	gen := newPayloadGen(cfg.Size, b.boot)
	if cfg.Payload == PayloadState {
		gen = newStateGen(b.boot)
	}
	for ctx.Err() == nil {
		if cfg.MaxMessages > 0 && b.sent.Load() >= cfg.MaxMessages {
			return
		}
		if interval > 0 {
			now := time.Now()
			if d := next.Sub(now); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			} else if d < -time.Second {
				next = now // far behind (window full): do not burst to catch up
			}
			next = next.Add(interval)
		}
		payload := gen.next()
		if cfg.QoS == 0 {
			at := time.Now()
			if err := c.client.Publish(c.topic, payload, 0, 0); err != nil {
				b.fail(err)
				return
			}
			b.sent.Add(1)
			b.sendLog.write(c.id, gen.seq, at)
			continue
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		at := time.Now()
		c.mu.Lock()
		id := c.allocID()
		c.sentAt[id] = at
		c.mu.Unlock()
		if err := c.client.Publish(c.topic, payload, 1, id); err != nil {
			b.fail(err)
			return
		}
		b.sent.Add(1)
		b.sendLog.write(c.id, gen.seq, at)
	}
}

// sendLog records when each message was published: one line "id seq
// unix_nanos" (the time taken just before the write), for a receiver to
// measure publish→delivery latency. Buffered; bounded by MaxSendLogBytes.
type sendLog struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	bytes   int64
	lines   int64
	dropped int64
	closed  bool
	err     error
	line    []byte
}

func createSendLog(path string) (*sendLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--send-log: %w", err)
	}
	return &sendLog{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

// write adds a line; a nil log does nothing.
func (l *sendLog) write(id string, seq uint64, at time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	line := append(l.line[:0], id...)
	line = append(line, ' ')
	line = strconv.AppendUint(line, seq, 10)
	line = append(line, ' ')
	line = strconv.AppendInt(line, at.UnixNano(), 10)
	line = append(line, '\n')
	l.line = line
	if l.closed || l.err != nil || l.bytes+int64(len(line)) > MaxSendLogBytes {
		l.dropped++
		return
	}
	if _, err := l.w.Write(line); err != nil {
		l.err = fmt.Errorf("--send-log: %w", err)
		l.dropped++
		return
	}
	l.bytes += int64(len(line))
	l.lines++
}

// close flushes and closes the file (once; later calls return the first error).
func (l *sendLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = fmt.Errorf("--send-log: %w", err)
	}
	if err := l.f.Close(); err != nil && l.err == nil {
		l.err = fmt.Errorf("--send-log: %w", err)
	}
	return l.err
}

func (c *benchConn) allocID() uint16 {
	for {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		if _, used := c.sentAt[c.nextID]; !used {
			return c.nextID
		}
	}
}

// payloadGen makes valid telemetry JSON of about size bytes, with boot, seq
// and ts, padded when size asks for more with a measurement "pad" whose value
// is a long decimal (the hub refuses unknown top-level fields and non-numeric
// measurements); or, made by newStateGen, partial state reports.
type payloadGen struct {
	state bool
	size  int
	boot  uint32
	seq   uint64 // of the last payload made
	pad   string
	buf   []byte // reused: Publish copies the payload before it returns
}

func newPayloadGen(size int, boot uint32) *payloadGen {
	return &payloadGen{size: size, boot: boot}
}

// newStateGen makes partial state reports with the given boot counter: one
// random cell among A01–A10, door open or closed and occupied or not, and
// firmware "b-<seq>".
func newStateGen(boot uint32) *payloadGen {
	return &payloadGen{state: true, boot: boot}
}

func (g *payloadGen) next() []byte {
	g.seq++
	if g.state {
		return g.nextState()
	}
	buf := g.buf[:0]
	buf = append(buf, `{"boot":`...)
	buf = strconv.AppendUint(buf, uint64(g.boot), 10)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendUint(buf, g.seq, 10)
	buf = append(buf, `,"ts":`...)
	buf = strconv.AppendInt(buf, time.Now().UnixMilli(), 10)
	buf = append(buf, `,"m":{"temp_c":`...)
	buf = strconv.AppendFloat(buf, 4+float64(g.seq%100)/10, 'f', 1, 64)
	buf = append(buf, `,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71`...)
	// ,"pad":0.0…01}} costs 12 bytes besides the zeros.
	if rest := g.size - len(buf) - 12; rest > 0 {
		if len(g.pad) != rest {
			g.pad = strings.Repeat("0", rest)
		}
		buf = append(buf, `,"pad":0.`...)
		buf = append(buf, g.pad...)
		buf = append(buf, '1')
	}
	g.buf = append(buf, '}', '}')
	return g.buf
}

func (g *payloadGen) nextState() []byte {
	buf := g.buf[:0]
	buf = append(buf, `{"boot":`...)
	buf = strconv.AppendUint(buf, uint64(g.boot), 10)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendUint(buf, g.seq, 10)
	buf = append(buf, `,"ts":`...)
	buf = strconv.AppendInt(buf, time.Now().UnixMilli(), 10)
	buf = append(buf, `,"cells":{"A`...)
	buf = fmt.Appendf(buf, "%02d", 1+rand.IntN(StateBenchCells))
	buf = append(buf, `":{"door":"`...)
	door := protocol.DoorClosed
	if rand.IntN(2) == 0 {
		door = protocol.DoorOpen
	}
	buf = append(buf, door...)
	buf = append(buf, `","occupied":`...)
	buf = strconv.AppendBool(buf, rand.IntN(2) == 0)
	buf = append(buf, `}},"firmware":"b-`...)
	buf = strconv.AppendUint(buf, g.seq, 10)
	g.buf = append(buf, `"}`...)
	return g.buf
}

// rssMiB returns this process's resident set size (Linux), 0 if unknown.
func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return round2(kb / 1024)
			}
		}
	}
	return 0
}

// MarshalLine returns the result as one JSON line.
func (r BenchResult) MarshalLine() []byte {
	data, _ := json.Marshal(r)
	return append(data, '\n')
}
