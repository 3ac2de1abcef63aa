package lockersim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

// Config is everything `lockersim run` needs.
type Config struct {
	Hub        string // MQTT address of the hub, host:port
	API        string // device listener (enrolment), https://host:port
	Admin      string // admin HTTP API, http://host:port (enrolment: register lockers, make tokens)
	AdminToken string // bearer token; default from VarDir/admin.token
	CAFile     string // hub CA; default VarDir/ca.crt, else DataDir/ca.crt, else fetched from Admin
	VarDir     string // a local hub's data directory (hub.json, admin.token, ca.crt)
	Plain      bool   // plain TCP MQTT, no certificates (e.g. against Mosquitto in tests)

	Lockers int    // how many lockers
	Cells   int    // cells per locker
	Prefix  string // locker ID prefix: IDs are prefix + zero-padded number
	Segment string // segment given when registering
	Control string // control API listen address ("" = none)
	DataDir string // certificates, boot counters, key caches

	MQTTVersion byte          // 4 or 5
	Telemetry   time.Duration // telemetry interval
	Ramp        time.Duration // initial connects spread uniformly over [0, Ramp)
	DoorClose   time.Duration // a door opened by a command closes itself after this
	Keepalive   time.Duration // MQTT keepalive
	QueueSize   int           // max unacknowledged QoS 1 messages kept per locker
	Inflight    int           // max QoS 1 messages in flight per connection (also bounded by the server's Receive Maximum)
	AckTimeout  time.Duration // a message unacknowledged this long makes the locker reconnect (0 = never)
	AskTimeout  time.Duration // how long the control API waits for an ask's answer; then a code is checked offline
	CodeTries   int           // wrong pickup codes checked offline within CodeWindow before the keypad refuses (rate_limited)
	CodeWindow  time.Duration // the window of CodeTries
	Backoff     Backoff       // reconnect policy

	EnrollConcurrency int // enrolments at once

	// Faults.
	DropAcksPct float64 // ignore this percentage of PUBACKs (the message stays queued)
	JamPct      float64 // cell.open fails with "jammed" this often
	// StuckDoorPct: cell.open releases the lock and answers, but the door
	// stays shut (no door event) this often.
	StuckDoorPct float64
	// POS is each locker's POS terminal at the start (pos.go): approve
	// (""), decline, timeout or none; the control API sets it per locker.
	POS string
	// OTA: injected firmware update failures (ota.go); OTAMaxDownloads
	// bounds the simulation's concurrent artifact downloads (64).
	OTA             OTAFaults
	OTAMaxDownloads int

	// OnRPC, when set (library use only: benchmarks), hears of every rpc/req
	// handled: its key, when it was read and how long the locker took until its
	// answer (and, for cell.open, its door event) was written.
	OnRPC func(key string, received time.Time, took time.Duration)
	// OnAcked, when set (library use only: fault tests), hears of every QoS 1
	// message the hub acknowledged with a success reason: the topic and the
	// payload exactly as published (so boot, seq and ts of what the locker saw
	// acknowledged can be compared with what the hub stored). It runs under
	// the locker's lock: keep it short, never call back into the locker.
	OnAcked func(lockerID, topic string, payload []byte)
	// OnExecute, when set (library use only: fault tests), hears of every RPC
	// the locker acted on, with its method and idempotency key: not of the
	// repeats of a key it answered from its key cache, nor of refusals
	// (expired, bad parameters). Same rules as OnAcked.
	OnExecute   func(lockerID, method, key string)
	ClockSkew   time.Duration // the lockers' clocks are off by this much (ts and not_after checks)
	NoRepublish bool          // discard unacknowledged messages at reconnect instead of republishing

	// Video (video.start): ICE host candidates only on this interface ("lo"
	// in tests, "" = all), how long without connectivity before a stream is
	// given up (0: pion's default), the VP8 IVF clip to loop (nil: TestClip).
	VideoInterface string
	VideoICEFailed time.Duration
	VideoClip      []byte

	StatusEvery time.Duration // status line period (0 = none)
	Status      io.Writer     // where the status line goes (nil = none)
}

// DefaultConfig returns the defaults of `lockersim run`.
func DefaultConfig() Config {
	return Config{
		VarDir:            "./var",
		Lockers:           1,
		Cells:             20,
		Prefix:            "SIM-",
		DataDir:           "./var/lockersim",
		MQTTVersion:       MQTT5,
		Telemetry:         60 * time.Second,
		Ramp:              -1,
		DoorClose:         5 * time.Second,
		Keepalive:         60 * time.Second,
		QueueSize:         1000,
		Inflight:          32,
		AckTimeout:        60 * time.Second,
		AskTimeout:        10 * time.Second,
		CodeTries:         5,
		CodeWindow:        5 * time.Minute,
		Backoff:           DefaultBackoff,
		EnrollConcurrency: 8,
		StatusEvery:       10 * time.Second,
	}
}

// LockerID returns the ID of locker n (1-based) of a fleet of total lockers.
func LockerID(prefix string, n, total int) string {
	width := max(5, len(fmt.Sprint(total)))
	return fmt.Sprintf("%s%0*d", prefix, width, n)
}

// Sim is a running simulation of many lockers.
type Sim struct {
	cfg     Config
	log     *slog.Logger
	stats   *Stats
	env     *lockerEnv
	lockers []*Locker
	byID    map[string]*Locker

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	srv     *http.Server
	ctlAddr string
	phones  phones
}

// NewSim checks cfg and prepares a simulation; Start runs it.
func NewSim(cfg Config, log *slog.Logger) (*Sim, error) {
	if cfg.Lockers < 1 || cfg.Lockers > 20000 {
		return nil, fmt.Errorf("--lockers %d: must be 1–20000 (a process here may hold 20,000 open files)", cfg.Lockers)
	}
	if cfg.Cells < 1 || cfg.Cells > 260 {
		return nil, fmt.Errorf("--cells %d: must be 1–260", cfg.Cells)
	}
	if cfg.MQTTVersion != MQTT311 && cfg.MQTTVersion != MQTT5 {
		return nil, fmt.Errorf("--mqtt %d: must be 4 or 5", cfg.MQTTVersion)
	}
	if cfg.Telemetry <= 0 {
		return nil, errors.New("--telemetry must be positive")
	}
	if cfg.QueueSize < 1 || cfg.Inflight < 1 {
		return nil, errors.New("--queue and --inflight must be at least 1")
	}
	if cfg.Ramp < 0 {
		cfg.Ramp = min(time.Duration(cfg.Lockers)*time.Millisecond, 30*time.Second)
	}
	if cfg.Backoff.Base <= 0 || cfg.Backoff.Max < cfg.Backoff.Base {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.EnrollConcurrency < 1 {
		cfg.EnrollConcurrency = 1
	}
	if err := CheckLoopback(cfg.Hub); err != nil {
		return nil, fmt.Errorf("--hub: %w", err)
	}
	if cfg.Control != "" {
		if err := CheckLoopback(cfg.Control); err != nil {
			return nil, fmt.Errorf("--control (it has no authentication): %w", err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "lockersim")
	s := &Sim{cfg: cfg, log: log, stats: &Stats{}, byID: map[string]*Locker{}}
	s.env = &lockerEnv{cfg: &s.cfg, log: log, sched: newScheduler(), stats: s.stats}
	return s, nil
}

// CheckLoopback refuses targets that are not on this machine: lockersim is a
// load generator and only ever aims at loopback addresses, or at an address
// across a veth link (whose other end is a network namespace of this machine).
func CheckLoopback(hostport string) error {
	host := hostport
	if u, err := url.Parse(hostport); err == nil && u.Host != "" {
		host = u.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !(ip.IsLoopback() || onVeth(ip)) {
		return fmt.Errorf("%q is not a loopback address: lockersim only targets this machine (127.0.0.0/8, ::1, localhost, or across a veth link to another network namespace)", hostport)
	}
	return nil
}

// Stats returns the live counters.
func (s *Sim) Stats() *Stats { return s.stats }

// ControlAddr returns the control API's listening address once started.
func (s *Sim) ControlAddr() string { return s.ctlAddr }

// Locker returns a locker by ID.
func (s *Sim) Locker(id string) *Locker { return s.byID[id] }

// Lockers returns every locker, in ID order.
func (s *Sim) Lockers() []*Locker { return s.lockers }

// Run starts the simulation and runs it until ctx ends.
func (s *Sim) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	s.Stop()
	return nil
}

// Start boots the lockers (boot counters + 1 on disk), starts the control API,
// the scheduler, a goroutine per locker and the status line. Lockers without a
// certificate enrol first (at most --enroll-concurrency at once). Stop ends it all.
func (s *Sim) Start(ctx context.Context) error {
	cfg := &s.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	var ids *identities
	if !cfg.Plain {
		var err error
		ids, err = newIdentities(ctx, IdentityOptions{
			Dir: cfg.DataDir, CAFile: cfg.CAFile, VarDir: cfg.VarDir, Admin: cfg.Admin, AdminToken: cfg.AdminToken,
			API: cfg.API, Cells: cfg.Cells, Segment: cfg.Segment, ServerAddr: cfg.Hub, Concurrency: cfg.EnrollConcurrency,
		}, s.log)
		if err != nil {
			return err
		}
		if ids.opts.AdminToken == "" {
			for n := 1; n <= cfg.Lockers; n++ {
				if id := LockerID(cfg.Prefix, n, cfg.Lockers); !HasCert(cfg.DataDir, id) {
					_, err := ids.getEnroller()
					return fmt.Errorf("locker %s: %w", id, err)
				}
			}
		}
	}
	for n := 1; n <= cfg.Lockers; n++ {
		id := LockerID(cfg.Prefix, n, cfg.Lockers)
		l, err := newLocker(s.env, id, nil)
		if err != nil {
			return err
		}
		s.lockers = append(s.lockers, l)
		s.byID[id] = l
	}
	s.stats.Lockers.Store(int64(len(s.lockers)))

	ctx, s.cancel = context.WithCancel(ctx)
	s.env.ctx, s.env.wg = ctx, &s.wg
	if cfg.Control != "" {
		ln, err := net.Listen("tcp", cfg.Control)
		if err != nil {
			s.cancel()
			return fmt.Errorf("control API: %w", err)
		}
		s.ctlAddr = ln.Addr().String()
		s.srv = &http.Server{Handler: s.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
		s.wg.Go(func() {
			if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("control API", "err", err)
			}
		})
	}
	s.wg.Go(func() { s.env.sched.Run(ctx, 4) })
	now := time.Now()
	for _, l := range s.lockers {
		var delay time.Duration
		if cfg.Ramp > 0 {
			delay = time.Duration(rand.Int64N(int64(cfg.Ramp)))
		}
		s.env.sched.At(now.Add(delay+time.Duration(rand.Int64N(int64(cfg.Telemetry)))), func() { l.telemetryTick(ctx) })
		s.wg.Go(func() {
			if !l.sleep(ctx, delay) {
				return
			}
			if ids != nil {
				tc, err := ids.tlsFor(ctx, l.id, cfg.Backoff)
				if err != nil {
					return // ctx ended
				}
				l.tls = tc
			}
			l.run(ctx, 0)
		})
	}
	if cfg.Status != nil && cfg.StatusEvery > 0 {
		s.wg.Go(func() {
			t := time.NewTicker(cfg.StatusEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					fmt.Fprintln(cfg.Status, s.stats.Snapshot().StatusLine())
				}
			}
		})
	}
	s.log.Info("started", "lockers", len(s.lockers), "hub", cfg.Hub, "control", s.ctlAddr, "ramp", cfg.Ramp)
	return nil
}

// Stop disconnects every locker (DISCONNECT, clean), stops the control API
// and waits for every goroutine.
func (s *Sim) Stop() {
	if s.cancel == nil {
		return
	}
	if s.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.srv.Shutdown(sctx)
		cancel()
	}
	s.cancel()
	for _, l := range s.lockers {
		l.disconnect()
	}
	s.wg.Wait()
	if s.cfg.Status != nil {
		fmt.Fprintln(s.cfg.Status, s.stats.Snapshot().StatusLine())
	}
}

// IdentityOptions say where certificates live and how to get missing ones.
type IdentityOptions struct {
	Dir         string // ID.crt, ID.key, ca.crt
	CAFile      string // explicit CA file (optional)
	VarDir      string // a local hub's data dir: hub.json, admin.token, ca.crt
	Admin       string // admin API URL
	AdminToken  string
	API         string // device listener URL
	Cells       int
	Segment     string
	ServerAddr  string // MQTT host:port: its host is the TLS server name
	Concurrency int    // enrolments at once
}

// identities gives lockers their TLS configuration, enrolling the ones without
// a certificate.
type identities struct {
	opts       IdentityOptions
	log        *slog.Logger
	pool       *x509.CertPool
	serverName string
	sem        chan struct{}

	mu       sync.Mutex
	enroller *Enroller // made at the first enrolment
}

func newIdentities(ctx context.Context, o IdentityOptions, log *slog.Logger) (*identities, error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(o.ServerAddr)
	if err != nil {
		return nil, fmt.Errorf("MQTT address %q: %w", o.ServerAddr, err)
	}
	ids := &identities{opts: o, log: log, serverName: host, sem: make(chan struct{}, max(o.Concurrency, 1))}
	ids.fillFromLocal()
	caPath, err := ids.caFile(ctx)
	if err != nil {
		return nil, err
	}
	if ids.pool, err = CAPool(caPath); err != nil {
		return nil, fmt.Errorf("hub CA: %w", err)
	}
	return ids, nil
}

// fillFromLocal takes missing admin URL, device URL and token from a local hub's VarDir.
func (ids *identities) fillFromLocal() {
	o := &ids.opts
	if o.Admin != "" && o.API != "" && o.AdminToken != "" {
		return
	}
	local, tok, err := apiclient.ReadLocal(o.VarDir)
	if o.Admin == "" {
		o.Admin = local.HTTP
	}
	if o.API == "" {
		o.API = local.Device
	}
	if o.AdminToken == "" {
		o.AdminToken = tok
	}
	if err != nil {
		ids.log.Debug("no local hub info", "err", err)
	}
	if o.Admin == "" {
		o.Admin = "http://127.0.0.1:8080"
	}
	if o.API == "" {
		o.API = "https://127.0.0.1:8443"
	}
}

// caFile finds the hub CA: --ca, VarDir/ca.crt, Dir/ca.crt, else fetched from the admin API into Dir/ca.crt.
func (ids *identities) caFile(ctx context.Context) (string, error) {
	o := ids.opts
	if o.CAFile != "" {
		if _, err := os.Stat(o.CAFile); err != nil {
			return "", fmt.Errorf("--ca: %w", err)
		}
		return o.CAFile, nil
	}
	for _, p := range []string{filepath.Join(o.VarDir, apiclient.CAFile), filepath.Join(o.Dir, apiclient.CAFile)} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if err := CheckLoopback(o.Admin); err != nil {
		return "", fmt.Errorf("--admin: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	data, err := apiclient.New(o.Admin, "").CA(ctx)
	if err != nil {
		return "", fmt.Errorf("no hub CA (--ca, %s) and fetching it from %s failed: %w",
			filepath.Join(o.VarDir, apiclient.CAFile), o.Admin, err)
	}
	p := filepath.Join(o.Dir, apiclient.CAFile)
	if err := writeFileAtomic(p, data, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

func (ids *identities) getEnroller() (*Enroller, error) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if ids.enroller != nil {
		return ids.enroller, nil
	}
	o := ids.opts
	if o.AdminToken == "" {
		return nil, fmt.Errorf("certificates missing in %s and no admin credential: pass --admin-token or run a local hub (%s)",
			o.Dir, filepath.Join(o.VarDir, apiclient.AdminTokenFile))
	}
	for _, u := range []string{o.Admin, o.API} {
		if err := CheckLoopback(u); err != nil {
			return nil, err
		}
	}
	ids.enroller = &Enroller{
		Admin:   apiclient.New(o.Admin, o.AdminToken),
		Device:  apiclient.NewTLS(o.API, "", &tls.Config{RootCAs: ids.pool, MinVersion: tls.VersionTLS12}),
		Dir:     o.Dir,
		Cells:   o.Cells,
		Segment: o.Segment,
	}
	return ids.enroller, nil
}

// ensure enrols id if it has no certificate (once; bounded concurrency).
func (ids *identities) ensure(ctx context.Context, id string) error {
	if HasCert(ids.opts.Dir, id) {
		return nil
	}
	e, err := ids.getEnroller()
	if err != nil {
		return err
	}
	select {
	case ids.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-ids.sem }()
	if HasCert(ids.opts.Dir, id) {
		return nil
	}
	if err := e.Enroll(ctx, id); err != nil {
		return err
	}
	ids.log.Info("enrolled", "locker", id)
	return nil
}

// tlsFor returns id's TLS configuration, enrolling it first if needed and
// retrying with backoff while the hub is not reachable. It fails only when ctx ends.
func (ids *identities) tlsFor(ctx context.Context, id string, b Backoff) (*tls.Config, error) {
	for attempt := 0; ; attempt++ {
		err := ids.ensure(ctx, id)
		if err == nil {
			var tc *tls.Config
			if tc, err = ClientTLS(ids.opts.Dir, id, ids.pool, ids.serverName); err == nil {
				return tc, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ids.log.Warn("no certificate yet", "locker", id, "err", err)
		t := time.NewTimer(b.Delay(attempt, nil))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
