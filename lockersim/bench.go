package lockersim

import (
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
	Size            int           // payload bytes (about)
	Duration        time.Duration // how long to publish (or hold, with Idle)
	MaxMessages     int64         // stop after this many messages (0 = no limit but Duration)
	TopicTemplate   string        // {id} is replaced by the client ID
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
		Size:            200,
		Duration:        10 * time.Second,
		TopicTemplate:   "lockers/{id}/telemetry",
		Keepalive:       60 * time.Second,
		Drain:           5 * time.Second,
	}
}

// Limits that keep a bench bounded.
const (
	MaxBenchConnections = 19000 // a process here may hold at most 20,000 open files
	MaxBenchDuration    = time.Hour
	MaxBenchSize        = 256 << 10
	MaxBenchInflight    = 1000
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
}

func (c *BenchConfig) check() error {
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
	b := &benchRun{cfg: cfg, log: log.With("component", "lockersim-bench")}
	res := BenchResult{Mode: "publish", Protocol: int(cfg.MQTTVersion), TLS: cfg.TLS, QoS: int(cfg.QoS),
		Pattern: "one write per message (one TLS record with --tls)"}
	if cfg.Idle {
		res.Mode = "idle"
		res.Pattern = "idle"
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
	gen := newPayloadGen(cfg.Size)
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
			if err := c.client.Publish(c.topic, payload, 0, 0); err != nil {
				b.fail(err)
				return
			}
			b.sent.Add(1)
			continue
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		id := c.allocID()
		c.sentAt[id] = time.Now()
		c.mu.Unlock()
		if err := c.client.Publish(c.topic, payload, 1, id); err != nil {
			b.fail(err)
			return
		}
		b.sent.Add(1)
	}
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
// and ts, padded with a "pad" string when size asks for more.
type payloadGen struct {
	size int
	boot uint32
	seq  uint64
	pad  string
	buf  []byte // reused: Publish copies the payload before it returns
}

func newPayloadGen(size int) *payloadGen {
	return &payloadGen{size: size, boot: 1}
}

func (g *payloadGen) next() []byte {
	g.seq++
	buf := g.buf[:0]
	buf = append(buf, `{"boot":`...)
	buf = strconv.AppendUint(buf, uint64(g.boot), 10)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendUint(buf, g.seq, 10)
	buf = append(buf, `,"ts":`...)
	buf = strconv.AppendInt(buf, time.Now().UnixMilli(), 10)
	buf = append(buf, `,"m":{"temp_c":`...)
	buf = strconv.AppendFloat(buf, 4+float64(g.seq%100)/10, 'f', 1, 64)
	buf = append(buf, `,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71}`...)
	// ,"pad":"…"} costs 10 bytes plus the padding.
	if rest := g.size - len(buf) - 1 - 10; rest > 0 {
		if len(g.pad) != rest {
			g.pad = strings.Repeat("x", rest)
		}
		buf = append(buf, `,"pad":"`...)
		buf = append(buf, g.pad...)
		buf = append(buf, '"')
	}
	g.buf = append(buf, '}')
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
