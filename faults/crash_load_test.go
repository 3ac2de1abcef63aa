//go:build faults

package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/lockersim"
	"github.com/lockerhub/lockerhub/pg"
	"github.com/lockerhub/lockerhub/protocol"
)

// crashLockers is the fleet size of the crash tests: $LOCKERHUB_FAULT_LOCKERS,
// else def.
func crashLockers(t *testing.T, def int) int {
	if v := os.Getenv("LOCKERHUB_FAULT_LOCKERS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "LOCKERHUB_FAULT_LOCKERS")
		return n
	}
	return def
}

// crashSample is one telemetry sample as the locker published it.
type crashSample struct {
	locker string
	boot   uint32
	seq    uint64
	ts     int64
}

// crashScenario is a hub process under full load: a lockersim fleet in this
// process (telemetry, state, events), cell.open commands through the API
// with idempotency keys, tamper alarms notified to a local webhook, and an
// OTA rollout. It records what the lockers saw acknowledged and what they
// executed, so that a fault can be judged afterwards.
type crashScenario struct {
	t       *testing.T
	hub     *crashHub
	sim     *lockersim.Sim
	db      *pgxpool.Pool
	n       int
	ids     []string
	rcv     *crashReceiver
	rollout int64
	otaN    int

	mu      sync.Mutex
	acked   map[crashSample]int // telemetry samples acknowledged to the lockers
	execs   map[string]int      // RPC key → times the locker acted on it
	methods map[string]string   // RPC key → method
	cmds    map[string]string   // API idempotency key → command id
	cmdErrs []string            // broken promises of the API (another id for a key)
	apiErrs int                 // API calls that failed (retried with the same key)
	tamper  []string            // lockers whose tamper was pressed, in order

	loadCancel context.CancelFunc
	loadWG     sync.WaitGroup
	simCancel  context.CancelFunc

	faultAt, faultEnd time.Time // when the fault was injected and taken back
}

// crashReceiver is the on-call webhook: it answers 200 and counts each
// delivery by its stable id (the Lockerhub-Delivery header).
type crashReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string][]time.Time
}

func newCrashReceiver(t *testing.T) *crashReceiver {
	r := &crashReceiver{seen: map[string][]time.Time{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		id := req.Header.Get("Lockerhub-Delivery")
		r.mu.Lock()
		r.seen[id] = append(r.seen[id], time.Now())
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *crashReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// crashHubFlags are the hub settings of the crash tests: OTA step timeouts
// short enough for a test (a download cut by the crash fails its attempt and
// is retried).
var crashHubFlags = []string{
	"--ota-notify-timeout", "20s", "--ota-download-timeout", "20s", "--ota-verify-timeout", "20s",
	"--ota-install-timeout", "60s", "--ota-retries", "3", "--log-level", "info",
}

// crashStart boots the hub and the fleet and waits until every locker is
// connected. telemetry is each locker's sample interval.
func crashStart(t *testing.T, n int, telemetry time.Duration) *crashScenario {
	t.Helper()
	s := &crashScenario{t: t, n: n, acked: map[crashSample]int{}, execs: map[string]int{}, methods: map[string]string{}, cmds: map[string]string{}}
	s.hub = crashStartHub(t, crashHubFlags...)
	var err error
	s.db, err = pg.Connect(context.Background(), s.hub.DBURL, 4)
	require.NoError(t, err)
	t.Cleanup(s.db.Close)
	s.rcv = newCrashReceiver(t)

	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = s.hub.MQTT, s.hub.Device, s.hub.HTTPURL, s.hub.Token
	cfg.VarDir, cfg.DataDir = s.hub.DataDir, t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix, cfg.Segment = n, 10, "CR-", "crash"
	cfg.Telemetry, cfg.DoorClose, cfg.StatusEvery = telemetry, 2*time.Second, 0
	cfg.EnrollConcurrency = 16
	cfg.OnAcked = s.onAcked
	cfg.OnExecute = s.onExecute
	s.sim, err = lockersim.NewSim(cfg, crashSimLog(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s.simCancel = cancel
	start := time.Now()
	require.NoError(t, s.sim.Start(ctx))
	t.Cleanup(func() { cancel(); s.sim.Stop() })
	for _, l := range s.sim.Lockers() {
		s.ids = append(s.ids, l.ID())
	}
	crashEventually(t, time.Duration(n)*40*time.Millisecond+120*time.Second, "every locker enrolled and connected", func() bool {
		return s.sim.Stats().Connected.Load() == int64(n)
	})
	t.Logf("fleet: %d lockers enrolled and connected in %s; hub RSS %.0f MiB", n, time.Since(start).Round(100*time.Millisecond), s.hub.RSS())
	return s
}

// crashSimLog is the fleet's log: discarded, or at debug level into the file
// $LOCKERHUB_FAULT_SIMLOG names (every connect failure with its cause).
func crashSimLog(t *testing.T) *slog.Logger {
	path := os.Getenv("LOCKERHUB_FAULT_SIMLOG")
	if path == "" {
		return slog.New(slog.DiscardHandler)
	}
	f, err := os.Create(path)
	require.NoError(t, err, "LOCKERHUB_FAULT_SIMLOG")
	t.Cleanup(func() { _ = f.Close() })
	t.Logf("lockersim log: %s", path)
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (s *crashScenario) onAcked(locker, topic string, payload []byte) {
	if !strings.HasSuffix(topic, "/"+string(protocol.KindTelemetry)) {
		return
	}
	var h protocol.Header
	if err := json.Unmarshal(payload, &h); err != nil {
		s.t.Errorf("acked telemetry of %s does not decode: %v", locker, err)
		return
	}
	s.mu.Lock()
	s.acked[crashSample{locker, h.Boot, h.Seq, h.TS}]++
	s.mu.Unlock()
}

func (s *crashScenario) onExecute(locker, method, key string) {
	if key == "" {
		return
	}
	s.mu.Lock()
	s.execs[key]++
	s.methods[key] = method
	s.mu.Unlock()
}

// startLoad sets the alarm routing, uploads an artifact, starts a rollout
// over otaN lockers and starts the command and tamper generators.
func (s *crashScenario) startLoad(otaN int) {
	t := s.t
	ctx, cancel := crashCtx()
	defer cancel()
	routing := fmt.Sprintf(`{"receivers":[{"name":"ops","type":"webhook","url":%q,"secret":"crash-secret"}],
		"route":{"receivers":["ops"],"group_by":["locker"],"group_wait":"0s","group_interval":"1s","repeat_interval":"24h"}}`, s.rcv.srv.URL+"/ops")
	_, status, err := s.hub.Admin.Do(ctx, http.MethodPut, "/api/v1/alarms/routing", []byte(routing))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)

	artifact := make([]byte, 256<<10)
	_, _ = rand.Read(artifact)
	a, err := s.hub.Admin.UploadArtifact(ctx, "2.0.0", nil, "crash test build", bytes.NewReader(artifact))
	require.NoError(t, err)
	s.otaN = min(otaN, s.n)
	r, err := s.hub.Admin.CreateRollout(ctx, apiclient.NewRollout{ArtifactID: a.ID, Start: true,
		Targets: apiclient.RolloutTargets{Lockers: s.ids[:s.otaN]},
		Policy:  apiclient.RolloutPolicy{Canary: max(s.otaN/10, 1), Percent: 50, Soak: "1s", FailurePct: 50}})
	require.NoError(t, err)
	s.rollout = r.ID

	lctx, lcancel := context.WithCancel(context.Background())
	s.loadCancel = lcancel
	var next int
	var nextMu sync.Mutex
	key := func() int { nextMu.Lock(); defer nextMu.Unlock(); next++; return next }
	for range 2 {
		s.loadWG.Go(func() {
			for lctx.Err() == nil {
				s.command(lctx, key())
				crashSleep(lctx, 200*time.Millisecond)
			}
		})
	}
	s.loadWG.Go(func() {
		// Tamper at lockers outside the rollout, one every 300 ms.
		for i := s.otaN; i < s.n && lctx.Err() == nil; i++ {
			s.sim.Locker(s.ids[i]).Tamper()
			s.mu.Lock()
			s.tamper = append(s.tamper, s.ids[i])
			s.mu.Unlock()
			crashSleep(lctx, 300*time.Millisecond)
		}
	})
}

func crashSleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// command opens a cell through the API with idempotency key k, retrying
// the same key while the hub does not answer (it may be down, or its
// database may be): every try must name the same command.
func (s *crashScenario) command(ctx context.Context, k int) {
	idem := fmt.Sprintf("crash-%d", k)
	locker := s.ids[mrand.IntN(s.n)]
	cell := lockersim.CellNames(10)[k%10]
	var first string
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cmd, err := s.hub.Admin.OpenCell(cctx, locker, cell, idem, 0)
		cancel()
		if err != nil {
			s.mu.Lock()
			s.apiErrs++
			s.mu.Unlock()
			crashSleep(ctx, 500*time.Millisecond)
			continue
		}
		s.mu.Lock()
		if prev, ok := s.cmds[idem]; ok && prev != cmd.ID {
			s.cmdErrs = append(s.cmdErrs, fmt.Sprintf("key %s: command %s, then %s", idem, prev, cmd.ID))
		}
		s.cmds[idem] = cmd.ID
		s.mu.Unlock()
		if first == "" {
			first = cmd.ID
		}
		// Ask once more with the same key: the same command comes back.
		if mrand.IntN(4) == 0 {
			continue
		}
		return
	}
}

func (s *crashScenario) count(sql string, args ...any) int64 {
	var n int64
	ctx, cancel := crashCtx()
	defer cancel()
	require.NoError(s.t, s.db.QueryRow(ctx, sql, args...).Scan(&n), sql)
	return n
}

// waitBusy waits until every part of the load is under way: samples stored,
// commands answered, notices delivered, the rollout with lockers updated but
// not finished.
func (s *crashScenario) waitBusy() {
	crashEventually(s.t, 3*time.Minute, "load under way (samples, commands, notices, rollout)", func() bool {
		s.mu.Lock()
		cmds, acked := len(s.cmds), len(s.acked)
		s.mu.Unlock()
		return acked >= s.n && cmds >= 10 && s.rcv.count() >= 3 &&
			s.count(`SELECT count(*) FROM ota_lockers WHERE rollout_id = $1 AND state = 'installed'`, s.rollout) >= 1
	})
	st := s.rolloutState()
	require.NotEqual(s.t, "completed", st, "the rollout finished before the fault: give it more lockers")
	s.t.Logf("before the fault: %d samples acked, %d commands, %d notices, rollout %s with %d installed",
		s.ackedN(), s.cmdN(), s.rcv.count(), st, s.count(`SELECT count(*) FROM ota_lockers WHERE rollout_id = $1 AND state = 'installed'`, s.rollout))
}

func (s *crashScenario) ackedN() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.acked) }
func (s *crashScenario) cmdN() int   { s.mu.Lock(); defer s.mu.Unlock(); return len(s.cmds) }

func (s *crashScenario) rolloutState() string {
	var st string
	ctx, cancel := crashCtx()
	defer cancel()
	require.NoError(s.t, s.db.QueryRow(ctx, `SELECT state FROM ota_rollouts WHERE id = $1`, s.rollout).Scan(&st))
	return st
}

// waitReconnected measures how long after since 99 % and all of the lockers
// are connected again (the sim's own count).
func (s *crashScenario) waitReconnected(since time.Time, within time.Duration) (p99, all time.Duration) {
	want99 := int64(float64(s.n)*0.99 + 0.5)
	last := time.Now()
	crashEventually(s.t, within, "every locker reconnected", func() bool {
		c := s.sim.Stats().Connected.Load()
		if time.Since(last) >= 15*time.Second {
			last = time.Now()
			st := s.sim.Stats().Snapshot()
			s.t.Logf("%s after the restart: %d of %d lockers connected (%d connect errors so far, the last: %s)",
				time.Since(since).Round(time.Second), c, s.n, st.ConnectErrors, st.LastError)
		}
		if p99 == 0 && c >= want99 {
			p99 = time.Since(since)
		}
		return c == int64(s.n)
	})
	return p99, time.Since(since)
}

// finish lets the load run on for settle, stops it and checks every
// guarantee: samples acked = stored once, commands final and executed at
// most once, notices delivered once, the rollout completed.
func (s *crashScenario) finish(settle time.Duration) {
	t := s.t
	time.Sleep(settle)
	s.loadCancel()
	s.loadWG.Wait()

	// Commands: every one final; the locker acted at most once per key.
	ids := make([]string, 0, len(s.cmds))
	for _, id := range s.cmds {
		ids = append(ids, id)
	}
	require.Empty(t, s.cmdErrs, "an idempotency key named two commands")
	wait := crashEventually(t, 2*time.Minute, "every command in a final state", func() bool {
		return s.count(`SELECT count(*) FROM fleet_commands WHERE id = ANY($1) AND state IN ('pending', 'sent')`, ids) == 0
	})
	states := map[string]int{}
	ctx, cancel := crashCtx()
	rows, err := s.db.Query(ctx, `SELECT id, state, attempts FROM fleet_commands WHERE id = ANY($1)`, ids)
	require.NoError(t, err)
	var resent int
	s.mu.Lock()
	for rows.Next() {
		var id, state string
		var attempts int
		require.NoError(t, rows.Scan(&id, &state, &attempts))
		states[state]++
		if attempts > 1 {
			resent++
		}
		switch state {
		case "unconfirmed", "failed":
			// No door of this fleet sticks or jams: each opens at once.
			t.Errorf("command %s ended %s", id, state)
		case "succeeded":
			require.Equal(t, 1, s.execs[id], "command %s succeeded: the locker acted once", id)
		case "expired":
			require.Zero(t, s.execs[id], "command %s expired: never executed", id)
		default:
			require.LessOrEqual(t, s.execs[id], 1, "command %s (%s) executed twice", id, state)
		}
	}
	require.NoError(t, rows.Err())
	cancel()
	require.Len(t, ids, crashSum(states), "every command is stored")
	for k, n := range s.execs {
		require.LessOrEqual(t, n, 1, "%s %s executed %d times", s.methods[k], k, n)
	}
	apiErrs := s.apiErrs
	s.mu.Unlock()
	t.Logf("commands: %d through the API (%d API calls failed and were retried with the same key), states %v, %d sent more than once, all final %s after the load stopped; no key executed twice (%d keys executed)",
		len(ids), apiErrs, states, resent, wait.Round(100*time.Millisecond), len(s.execs))

	// The rollout resumes and finishes.
	wait = crashEventually(t, 4*time.Minute, "the rollout completed", func() bool {
		st := s.rolloutState()
		require.NotContains(t, []string{"paused", "cancelled", "failed"}, st)
		return st == "completed"
	})
	installed := s.count(`SELECT count(*) FROM ota_lockers WHERE rollout_id = $1 AND state = 'installed'`, s.rollout)
	attempts := s.count(`SELECT coalesce(sum(attempts), 0) FROM ota_lockers WHERE rollout_id = $1`, s.rollout)
	require.EqualValues(t, s.otaN, installed, "every locker of the rollout installed")
	t.Logf("rollout: %d lockers installed, %d attempts in all, completed %s after the commands", installed, attempts, wait.Round(100*time.Millisecond))

	// Alarms: every tamper an alarm, every notice delivered once.
	s.mu.Lock()
	tampered := slices.Clone(s.tamper)
	s.mu.Unlock()
	wait = crashEventually(t, 2*time.Minute, "a tamper alarm per locker, every notice sent", func() bool {
		return s.count(`SELECT count(DISTINCT locker_id) FROM alarms_alarms WHERE kind = 'tamper' AND locker_id = ANY($1)`, tampered) == int64(len(tampered)) &&
			s.count(`SELECT count(*) FROM outbox_messages WHERE id LIKE 'alarm-%' AND state <> 'sent'`) == 0 &&
			s.count(`SELECT count(*) FROM alarms_alarms a WHERE kind = 'tamper' AND NOT EXISTS
				(SELECT 1 FROM alarms_notifications n WHERE n.alarm_ids @> ARRAY[a.id])`) == 0
	})
	require.EqualValues(t, len(tampered), s.count(`SELECT count(*) FROM alarms_alarms WHERE kind = 'tamper'`), "one alarm per tampered locker")
	ctx, cancel = crashCtx()
	rows, err = s.db.Query(ctx, `SELECT id FROM outbox_messages WHERE id LIKE 'alarm-%'`)
	require.NoError(t, err)
	var notices []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		notices = append(notices, id)
	}
	require.NoError(t, rows.Err())
	cancel()
	s.rcv.mu.Lock()
	var inFlight []string
	for _, id := range notices {
		at := s.rcv.seen[id]
		require.NotEmpty(t, at, "notice %s was never delivered", id)
		if len(at) > 1 {
			// Decision 13: a duplicate only for a send in flight at the fault.
			require.Len(t, at, 2, "notice %s delivered %d times", id, len(at))
			require.True(t, at[0].Before(s.faultEnd) && at[0].After(s.faultAt.Add(-10*time.Second)),
				"notice %s delivered twice (%s and %s), the first not in flight at the fault (%s–%s)", id, at[0], at[1], s.faultAt, s.faultEnd)
			inFlight = append(inFlight, id)
		}
	}
	for id := range s.rcv.seen {
		require.True(t, slices.Contains(notices, id), "the receiver got %q, which the hub does not know", id)
	}
	s.rcv.mu.Unlock()
	t.Logf("alarms: %d tamper alarms, %d notices, each delivered once except %d in flight at the fault %v; all sent %s after the rollout",
		len(tampered), len(notices), len(inFlight), inFlight, wait.Round(100*time.Millisecond))

	// Telemetry: stop the lockers, then every sample they saw acknowledged
	// must be stored exactly once.
	s.simCancel()
	s.sim.Stop()
	st := s.sim.Stats().Snapshot()
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := map[crashSample]int{}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err = s.db.Query(ctx, `SELECT locker_id, boot, seq, (extract(epoch FROM ts) * 1000)::bigint FROM telemetry_samples WHERE locker_id LIKE 'CR-%'`)
	require.NoError(t, err)
	for rows.Next() {
		var k crashSample
		require.NoError(t, rows.Scan(&k.locker, &k.boot, &k.seq, &k.ts))
		stored[k]++
	}
	require.NoError(t, rows.Err())
	var missing []crashSample
	for k, n := range s.acked {
		require.Equal(t, 1, n, "sample %v acknowledged %d times", k, n)
		if stored[k] != 1 {
			missing = append(missing, k)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].locker < missing[j].locker })
	require.Empty(t, missing[:min(len(missing), 20)], "%d acknowledged samples not stored exactly once", len(missing))
	for k, n := range stored {
		require.Equal(t, 1, n, "sample %v stored %d times", k, n)
	}
	t.Logf("telemetry: %d samples acknowledged to the lockers, all stored exactly once; %d stored in all (the rest were stored but their PUBACK was lost); lockers republished %d messages, dropped %d (outbox full)",
		len(s.acked), len(stored), st.Republished, st.Dropped)
}

func crashSum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
