//go:build soak

// Package soak_test runs the hub for a long time under a realistic load and
// checks that it stays flat: memory, goroutines, errors and latency. It runs
// in `make soak` only (an hour by default), never in `make test`.
//
// The hub runs as its own process (bin/hub, built by `make soak`), so its
// memory and goroutines are its own; the lockers (lockersim) and the people
// (couriers, recipients, operators, dashboards) run in the test process.
//
// Environment: SOAK_DURATION (1h), SOAK_LOCKERS (10000), SOAK_OUT (the
// directory for soak.csv and the PNG plots; default docs/soak).
package soak_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/pg/pgtest"
	"github.com/lockerhub/lockerhub/protocol"
)

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// TestFleetSoak: 10,000 lockers reporting telemetry every 60 s, parcels
// delivered and collected by code, a marketplace's deliveries through the
// partner API (webhooks, payment at the locker, fiscal receipts), commands,
// alarms (tamper, mains cut and restored), an OTA rollout to 1,000 lockers,
// camera views over WebRTC, two live dashboards and history queries, for
// SOAK_DURATION. Every 15 s it samples the hub's /metrics; at the
// end it writes soak.csv and plots, and checks that, after a warm-up of a
// sixth of the run, memory and goroutines stay flat, errors do not grow and
// the latency percentiles hold.
func TestFleetSoak(t *testing.T) {
	duration := envDuration("SOAK_DURATION", time.Hour)
	n := envInt("SOAK_LOCKERS", 10000)
	out := os.Getenv("SOAK_OUT")
	if out == "" {
		out = filepath.Join("..", "docs", "soak")
	}
	hubBin, err := filepath.Abs(filepath.Join("..", "bin", "hub"))
	require.NoError(t, err)
	if _, err := os.Stat(hubBin); err != nil {
		t.Fatalf("%s is missing: run make soak (it builds it first)", hubBin)
	}

	inbox := newInbox()
	gateway := httptest.NewServer(http.HandlerFunc(inbox.sms))
	t.Cleanup(gateway.Close)

	shop := newShop(t)
	hub := startHub(t, hubBin, gateway.URL, shop.fiscal.srv.URL)
	ctx := context.Background()
	admin := apiclient.New(hub.http, hub.token)

	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = hub.mqtt, hub.device, hub.http, hub.token
	cfg.VarDir, cfg.DataDir = hub.dataDir, t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Segment = n, 20, "SOAK", "soak"
	cfg.Telemetry = 60 * time.Second
	cfg.DoorClose = 3 * time.Second // doors opened by a bare command close by themselves
	cfg.StatusEvery = 0
	cfg.EnrollConcurrency = 16
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	simCtx, stopSim := context.WithCancel(ctx)
	t.Cleanup(func() { stopSim(); sim.Stop() })
	t0 := time.Now()
	require.NoError(t, sim.Start(simCtx))
	hubtest.Eventually(t, 15*time.Minute, fmt.Sprintf("%d lockers connected", n), func() bool {
		return hub.gauge("lockerhub_broker_connected_lockers") >= float64(n)
	})
	t.Logf("%d lockers enrolled and connected in %s", n, time.Since(t0).Round(time.Second))

	shop.setup(t, ctx, admin, hub.http, sim, cfg.Cells)

	runCtx, stopRun := context.WithTimeout(ctx, duration)
	defer stopRun()
	d := &driver{t: t, admin: admin, sim: sim, inbox: inbox, hub: hub}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 4 {
		wg.Go(func() { d.parcels(runCtx, i) })
	}
	wg.Go(func() { shop.run(runCtx, d) })
	wg.Go(func() { d.commands(runCtx) })
	wg.Go(func() { d.video(runCtx) })
	wg.Go(func() { d.alarms(runCtx) })
	wg.Go(func() { d.history(runCtx) })
	wg.Go(func() { d.dashboard(runCtx, `{"watch":"fleet","filter":{}}`) })
	wg.Go(func() { d.dashboard(runCtx, `{"watch":"locker","id":"`+sim.Lockers()[0].ID()+`"}`) })
	wg.Go(func() { d.rollout(runCtx, n, min(5*time.Minute, duration/6)) })
	samples := sampleUntil(runCtx, hub, d, 15*time.Second)
	wg.Wait()
	t.Logf("ran %s: %d parcels picked up (%d failed), %d commands (%d failed), %d alarms raised, %d stream messages, %d history reads, %d camera views (%d failed, %d frames); rollout: %s",
		time.Since(start).Round(time.Second), d.parcelsDone.Load(), d.parcelsFailed.Load(), d.commandsDone.Load(), d.commandsFailed.Load(),
		d.alarmsRaised.Load(), d.streamMessages.Load(), d.historyReads.Load(), d.videoDone.Load(), d.videoFailed.Load(), d.videoFrames.Load(), d.rolloutResult())
	missing := shop.check(t, admin, 2*time.Minute)

	require.NoError(t, os.MkdirAll(out, 0o755))
	require.NoError(t, writeCSV(filepath.Join(out, "soak.csv"), samples))
	require.NoError(t, plotAll(out, samples, n, duration))
	summary := summarize(samples)
	t.Log(summary.String())
	hub.errMu.Lock()
	for _, line := range hub.firstErrors {
		t.Logf("hub ERROR: %s", line)
	}
	hub.errMu.Unlock()
	require.NoError(t, os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary.String()+"\n"), 0o644))

	// The checks, on what follows the warm-up.
	require.GreaterOrEqual(t, len(samples), 12, "too few samples")
	require.Zero(t, hub.exited(), "the hub process exited during the soak")
	require.LessOrEqual(t, summary.rssGrowth, 0.15, "hub RSS grew by more than 15%% after the warm-up")
	require.LessOrEqual(t, summary.heapGrowth, 0.20, "hub heap grew by more than 20%% after the warm-up")
	require.LessOrEqual(t, summary.goroutineSpread, 0.05, "hub goroutines moved by more than 5%% after the warm-up")
	require.GreaterOrEqual(t, summary.minConnected, 0.99*float64(n), "lockers dropped during the soak")
	require.LessOrEqual(t, summary.lateErrors, max(5, 2*summary.earlyErrors), "errors grew: %d in the last third, %d in the first", summary.lateErrors, summary.earlyErrors)
	require.LessOrEqual(t, summary.lateP99, 2*summary.earlyP99+50, "command p99 rose: %.0f ms late vs %.0f ms early", summary.lateP99, summary.earlyP99)
	fail := d.parcelsFailed.Load() + d.commandsFailed.Load() + shop.parcelsFailed.Load() + d.videoFailed.Load()
	total := d.parcelsDone.Load() + d.commandsDone.Load() + shop.parcelsDone.Load() + d.videoDone.Load() + fail
	require.LessOrEqual(t, float64(fail), 0.005*float64(total)+1, "more than 0.5%% of the parcels, commands and camera views failed (%d of %d)", fail, total)
	require.Positive(t, shop.parcelsDone.Load(), "no delivery of the shop went through")
	require.Positive(t, d.videoDone.Load(), "no camera view went through")
	require.Empty(t, missing, "webhooks or fiscal receipts of finished deliveries not delivered")
}

// hubProc is bin/hub running with its own data directory and database.
type hubProc struct {
	cmd                *exec.Cmd
	dataDir, logPath   string
	http, mqtt, device string
	token              string
	done               chan struct{}
	exitErr            atomic.Pointer[error]
	errorLines         atomic.Int64
	errMu              sync.Mutex
	firstErrors        []string // the first ERROR lines, logged at the end
	client             *http.Client
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func startHub(t *testing.T, bin, smsURL, fiscalURL string) *hubProc {
	dbURL := pgtest.NewDB(t, app.Migrations()...)
	h := &hubProc{dataDir: t.TempDir(), done: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second}}
	httpAddr, mqttAddr, deviceAddr := freePort(t), freePort(t), freePort(t)
	h.http, h.mqtt, h.device = "http://"+httpAddr, mqttAddr, "https://"+deviceAddr
	h.logPath = filepath.Join(h.dataDir, "hub.log")
	logFile, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { logFile.Close() })
	h.cmd = exec.Command(bin, "--data-dir", h.dataDir, "--database-url", dbURL,
		"--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--device-addr", deviceAddr,
		"--ota-url", h.device, "--video-udp-addr", "127.0.0.1:0",
		"--sms-url", smsURL, "--fiscal-url", fiscalURL, "--log-format", "json", "--log-level", "warn")
	h.cmd.Env = append(os.Environ(), "HUB_FISCAL_TOKEN=soak-fiscal")
	pr, pw := io.Pipe()
	h.cmd.Stdout, h.cmd.Stderr = pw, pw
	go h.countErrors(pr, logFile)
	require.NoError(t, h.cmd.Start())
	go func() {
		err := h.cmd.Wait()
		h.exitErr.Store(&err)
		pw.Close()
		close(h.done)
	}()
	t.Cleanup(func() {
		select {
		case <-h.done:
			return
		default:
		}
		_ = h.cmd.Process.Signal(os.Interrupt)
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.done
		}
	})
	hubtest.Eventually(t, 60*time.Second, "the hub ready", func() bool {
		res, err := h.client.Get(h.http + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	_, token, err := apiclient.ReadLocal(h.dataDir)
	require.NoError(t, err)
	h.token = token
	return h
}

// countErrors copies the hub's log to its file and counts the ERROR lines.
func (h *hubProc) countErrors(r io.Reader, to io.Writer) {
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 32<<10)
	for {
		k, err := r.Read(chunk)
		if k > 0 {
			_, _ = to.Write(chunk[:k])
			buf = append(buf, chunk[:k]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				if bytes.Contains(buf[:i], []byte(`"level":"ERROR"`)) {
					h.errorLines.Add(1)
					h.errMu.Lock()
					if len(h.firstErrors) < 20 {
						h.firstErrors = append(h.firstErrors, string(buf[:i]))
					}
					h.errMu.Unlock()
				}
				buf = buf[i+1:]
			}
			if len(buf) > 1<<20 { // one line that long: not a log line we count
				buf = buf[:0]
			}
		}
		if err != nil {
			return
		}
	}
}

// exited is 1 when the hub process has ended, 0 while it runs.
func (h *hubProc) exited() int {
	select {
	case <-h.done:
		return 1
	default:
		return 0
	}
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([^ ]+)`)

// metrics reads /metrics into name{labels} -> value.
func (h *hubProc) metrics() (map[string]float64, error) {
	res, err := h.client.Get(h.http + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		g := metricLine.FindStringSubmatch(line)
		if g == nil {
			continue
		}
		v, err := strconv.ParseFloat(g[3], 64)
		if err != nil {
			continue
		}
		m[g[1]+g[2]] = v
	}
	return m, nil
}

func (h *hubProc) gauge(name string) float64 {
	m, err := h.metrics()
	if err != nil {
		return math.NaN()
	}
	return m[name]
}

// errorCounters are the hub's counters of things that went wrong; their sum
// must not grow faster late in the run than early.
var errorCounters = []string{
	"lockerhub_telemetry_write_failures_total", "lockerhub_telemetry_rollup_failures_total",
	"lockerhub_outbox_failed_total", "lockerhub_fleet_commit_failures_total",
	"lockerhub_fleet_command_store_errors_total", "lockerhub_parcels_offline_list_errors_total",
	"lockerhub_broker_messages_invalid_total", "lockerhub_broker_accept_errors_total",
	"lockerhub_broker_unacked_quota_exceeded_total",
}

func sumPrefix(m map[string]float64, name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// inbox is the SMS gateway: it keeps the last text per phone number.
type inbox struct {
	mu   sync.Mutex
	last map[string]string
}

func newInbox() *inbox { return &inbox{last: map[string]string{}} }

func (in *inbox) sms(w http.ResponseWriter, r *http.Request) {
	var m struct{ To, Text string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	in.mu.Lock()
	in.last[m.To] = in.last[m.To] + "\n" + m.Text
	in.mu.Unlock()
}

var eightDigits = regexp.MustCompile(`\b\d{8}\b`)

// code waits for the pickup code sent to phone, then forgets the phone.
func (in *inbox) code(ctx context.Context, phone string) (string, error) {
	for ctx.Err() == nil {
		in.mu.Lock()
		text := in.last[phone]
		in.mu.Unlock()
		if c := eightDigits.FindString(text); c != "" {
			in.mu.Lock()
			delete(in.last, phone)
			in.mu.Unlock()
			return c, nil
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return "", fmt.Errorf("no SMS with a code for %s: %w", phone, ctx.Err())
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// every calls fn once per period until ctx ends (a call that overruns
// the period delays the next; ticks are not queued).
func every(ctx context.Context, period time.Duration, fn func()) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fn()
	}
}

// useCell is a person at an open cell: waits (15 s) until the door is
// open, puts a parcel in or takes it out, and shuts the door (it may have
// closed by itself, --door-close).
func useCell(ctx context.Context, l *lockersim.Locker, cell, who string, occupied bool) error {
	if err := poll(ctx, 15*time.Second, "cell open for the "+who, func() bool { return l.View(true).Cells[cell].Door == protocol.DoorOpen }); err != nil {
		return err
	}
	if err := l.SetOccupied(cell, occupied); err != nil {
		return err
	}
	_ = l.CloseDoor(cell)
	return nil
}

// poll calls cond every 100 ms until it holds or within passes.
func poll(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s", what, within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// driver plays the people around the fleet and records what they saw.
type driver struct {
	t     *testing.T
	admin *apiclient.Client
	sim   *lockersim.Sim
	inbox *inbox
	hub   *hubProc

	mu         sync.Mutex
	cmdLatency []float64 // ms of the current sample window
	pclLatency []float64
	lastErr    string
	rolloutMsg string

	parcelsDone, parcelsFailed   atomic.Int64
	commandsDone, commandsFailed atomic.Int64
	alarmsRaised, streamMessages atomic.Int64
	historyReads                 atomic.Int64
	videoDone, videoFailed       atomic.Int64
	videoFrames                  atomic.Int64
	busy                         sync.Map // locker id -> struct{}: one actor per locker at a time
}

func (d *driver) fail(what string, err error, counter *atomic.Int64) {
	counter.Add(1)
	d.mu.Lock()
	if d.lastErr == "" || counter.Load()%50 == 1 {
		d.t.Logf("%s: %v", what, err)
	}
	d.lastErr = what + ": " + err.Error()
	d.mu.Unlock()
}

// take picks a random locker nobody else is acting at.
func (d *driver) take() (*lockersim.Locker, func()) { return d.takeFrom(d.sim.Lockers()) }

// takeFrom picks a random locker of ls nobody else is acting at.
func (d *driver) takeFrom(ls []*lockersim.Locker) (*lockersim.Locker, func()) {
	for {
		l := ls[mrand.IntN(len(ls))]
		if _, taken := d.busy.LoadOrStore(l.ID(), struct{}{}); !taken {
			return l, func() { d.busy.Delete(l.ID()) }
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parcels: a courier delivers a parcel and its recipient collects it with
// the code from the SMS, one every 2 s per worker.
func (d *driver) parcels(ctx context.Context, worker int) {
	seq := 0
	every(ctx, 2*time.Second, func() {
		seq++
		start := time.Now()
		if err := d.parcel(ctx, worker, seq); err != nil {
			if ctx.Err() == nil {
				d.fail("parcel", err, &d.parcelsFailed)
			}
			return
		}
		d.parcelsDone.Add(1)
		d.mu.Lock()
		d.pclLatency = append(d.pclLatency, float64(time.Since(start).Milliseconds()))
		d.mu.Unlock()
	})
}

func (d *driver) parcel(ctx context.Context, worker, seq int) error {
	l, release := d.take()
	defer release()
	phone := fmt.Sprintf("+4917%02d%07d", worker, seq)
	p, err := d.admin.CreateParcel(ctx, apiclient.NewParcel{Locker: l.ID(), Size: "M", Reference: fmt.Sprintf("soak-%d-%d", worker, seq),
		Recipient: apiclient.Recipient{Name: "Soak", Phone: phone}}, fmt.Sprintf("soak-%d-%d", worker, seq))
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	open, err := d.admin.DropoffParcel(ctx, p.ID)
	if err != nil {
		return fmt.Errorf("drop-off %s: %w", p.ID, err)
	}
	return d.fillAndCollect(ctx, l, p.ID, open.Parcel.Cell, phone)
}

// fillAndCollect is what follows a drop-off that opened cell: the courier
// puts the parcel in and shuts the door, the parcel is deposited, the
// recipient types the code from the SMS (the locker charges its terminal
// first when an amount is due), takes the parcel out and shuts the door,
// and the parcel is picked up.
func (d *driver) fillAndCollect(ctx context.Context, l *lockersim.Locker, parcelID, cell, phone string) error {
	if err := useCell(ctx, l, cell, "courier", true); err != nil {
		return err
	}
	if err := d.waitParcel(ctx, parcelID, "deposited"); err != nil {
		return err
	}
	codeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	code, err := d.inbox.code(codeCtx, phone)
	cancel()
	if err != nil {
		return err
	}
	if res := l.EnterCode(ctx, code, 20*time.Second); res.Error != nil {
		return fmt.Errorf("code for %s: %s", parcelID, res.Error.Code)
	}
	if err := useCell(ctx, l, cell, "recipient", false); err != nil {
		return err
	}
	return d.waitParcel(ctx, parcelID, "picked_up")
}

func (d *driver) waitParcel(ctx context.Context, id, state string) error {
	var last string
	err := poll(ctx, 20*time.Second, id+" "+state, func() bool {
		p, err := d.admin.Parcel(ctx, id)
		if err == nil {
			last = p.State
		}
		return err == nil && p.State == state
	})
	if err != nil {
		return fmt.Errorf("%w (it is %s)", err, last)
	}
	return nil
}

// commands: an operator opens an empty cell somewhere every second and waits
// for the door sensor.
func (d *driver) commands(ctx context.Context) {
	every(ctx, time.Second, func() {
		l, release := d.take()
		view := l.View(true)
		var cell string
		for _, name := range l.Cells() {
			if c := view.Cells[name]; c.Door == protocol.DoorClosed && (c.Occupied == nil || !*c.Occupied) {
				cell = name
				break
			}
		}
		if cell == "" {
			release()
			return
		}
		start := time.Now()
		cmd, err := d.admin.OpenCell(ctx, l.ID(), cell, "", 10*time.Second)
		took := time.Since(start)
		if err == nil && cmd.State != "succeeded" {
			err = fmt.Errorf("command %s ended %s", cmd.ID, cmd.State)
		}
		if err == nil {
			// the door closes by itself (DoorClose); wait so the next actor finds it shut
			err = poll(ctx, 15*time.Second, "door closed again", func() bool { return l.View(true).Cells[cell].Door == protocol.DoorClosed })
		}
		release()
		if err != nil {
			if ctx.Err() == nil {
				d.fail("command", err, &d.commandsFailed)
			}
			return
		}
		d.commandsDone.Add(1)
		d.mu.Lock()
		d.cmdLatency = append(d.cmdLatency, float64(took.Microseconds())/1000)
		d.mu.Unlock()
	})
}

// alarms: a tamper every 20 s, and a mains cut restored after 30 s every
// minute, at random lockers; the on-call person acknowledges and resolves.
func (d *driver) alarms(ctx context.Context) {
	var cut []*lockersim.Locker
	defer func() {
		for _, l := range cut {
			_ = l.SetMains(true)
		}
	}()
	i := -1
	every(ctx, 20*time.Second, func() {
		i++
		l, release := d.take()
		l.Tamper()
		release()
		d.alarmsRaised.Add(1)
		if i%3 == 0 {
			for _, l := range cut {
				_ = l.SetMains(true)
			}
			cut = cut[:0]
			l, release := d.take()
			if l.SetMains(false) == nil {
				cut = append(cut, l)
				d.alarmsRaised.Add(1)
			}
			release()
		}
		if alarms, err := d.admin.Alarms(ctx, apiclient.AlarmFilter{State: "firing", Kind: "tamper", Limit: 100}); err == nil {
			for _, a := range alarms {
				_, _ = d.admin.ResolveAlarm(ctx, a.ID, "soak")
			}
		}
	})
}

// history: someone opens a locker page with its telemetry chart every 10 s.
func (d *driver) history(ctx context.Context) {
	every(ctx, 10*time.Second, func() {
		ls := d.sim.Lockers()
		id := ls[mrand.IntN(len(ls))].ID()
		from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		if _, status, err := d.admin.Do(ctx, http.MethodGet, "/api/v1/lockers/"+id+"/telemetry?metric=temp_c&from="+from, nil); err == nil && status == http.StatusOK {
			d.historyReads.Add(1)
		}
		if _, _, err := d.admin.Do(ctx, http.MethodGet, "/api/v1/lockers?limit=50", nil); err != nil && ctx.Err() == nil {
			d.t.Logf("locker list: %v", err)
		}
	})
}

// dashboard: a browser's live stream of the fleet list (watch) or of one
// locker's page, reconnected when it ends.
func (d *driver) dashboard(ctx context.Context, watch string) {
	url := strings.Replace(d.hub.http, "http", "ws", 1) + "/api/v1/stream"
	for ctx.Err() == nil {
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + d.hub.token}}})
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		ws.SetReadLimit(64 << 20)
		if err := ws.Write(ctx, websocket.MessageText, []byte(watch)); err != nil {
			ws.CloseNow()
			continue
		}
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				break
			}
			d.streamMessages.Add(1)
		}
		ws.CloseNow()
	}
}

// rollout: after the warm-up (at most five minutes), firmware 2.0.0 goes to
// 1,000 lockers (a tenth of a smaller fleet) in waves.
func (d *driver) rollout(ctx context.Context, n int, after time.Duration) {
	sleepCtx(ctx, after)
	if ctx.Err() != nil {
		return
	}
	data := make([]byte, 512<<10)
	_, _ = rand.Read(data)
	a, err := d.admin.UploadArtifact(ctx, "2.0.0", nil, "soak", bytes.NewReader(data))
	if err != nil {
		d.setRollout("upload: " + err.Error())
		return
	}
	var targets []string
	for i, l := range d.sim.Lockers() {
		if i%max(n/1000, 10) == 0 {
			targets = append(targets, l.ID())
		}
	}
	r, err := d.admin.CreateRollout(ctx, apiclient.NewRollout{Name: "soak", ArtifactID: a.ID, Start: true,
		Targets: apiclient.RolloutTargets{Lockers: targets},
		Policy:  apiclient.RolloutPolicy{Canary: 10, Percent: 25, Order: "id"}})
	if err != nil {
		d.setRollout("create: " + err.Error())
		return
	}
	start := time.Now()
	for ctx.Err() == nil {
		s, err := d.admin.RolloutStatus(ctx, r.ID)
		if err == nil {
			d.setRollout(fmt.Sprintf("%s after %s: %+v", s.Rollout.State, time.Since(start).Round(time.Second), s.Counts))
			if slices.Contains([]string{"completed", "aborted", "cancelled"}, s.Rollout.State) {
				return
			}
		}
		sleepCtx(ctx, 5*time.Second)
	}
}

func (d *driver) setRollout(s string) { d.mu.Lock(); d.rolloutMsg = s; d.mu.Unlock() }
func (d *driver) rolloutResult() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rolloutMsg == "" {
		return "not started"
	}
	return d.rolloutMsg
}

// takeLatencies hands over the latencies of the window that just ended.
func (d *driver) takeLatencies() (cmd, pcl []float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cmd, pcl = d.cmdLatency, d.pclLatency
	d.cmdLatency, d.pclLatency = nil, nil
	return cmd, pcl
}
