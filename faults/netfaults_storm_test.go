//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/protocol"
)

// TestNetFaultCutAndReconnectStorm: a fleet of lockersim lockers (10,000 by
// default, NETFAULTS_LOCKERS) in a network namespace of their own, a hub in
// this process. The link between them is cut (a blackhole) for 30 s, long
// enough for both sides' keepalives to declare every connection dead; then it
// comes back and every locker reconnects at once (backoff with full jitter,
// 1 s to 30 s). Checked, as docs/reliability.md says:
//   - all back: 99% within 15 s of the cut's end (the figure), and the last one;
//   - presence: all offline at the cut's end, all online after the storm;
//   - no dropped state: the state changed at the lockers during the cut is in
//     the twins afterwards, cell by cell;
//   - alarms: the offline alarms the cut implies (rule "for" 5 s here), all
//     resolved after the storm, and no alarm of any other kind;
//   - telemetry: every sample a locker saw acknowledged, before, during the
//     storm and after, is stored, exactly once.
func TestNetFaultCutAndReconnectStorm(t *testing.T) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("NETFAULTS_LOCKERS")); err == nil && v > 0 {
		n = v
	}
	const (
		cut       = 30 * time.Second
		keepalive = 10 * time.Second // the hub declares a silent connection dead after 15 s
		telemetry = 10 * time.Second
		prefix    = "NF-"
	)
	nw := netfaultsNetns(t)
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "hub.log"))
	require.NoError(t, err)
	t.Cleanup(func() { logFile.Close() })
	h := hubtest.Start(t, func(c *app.Config) {
		c.MQTTAddr, c.HTTPAddr, c.DeviceAddr = nw.HubIP+":0", nw.HubIP+":0", nw.HubIP+":0"
		c.Hostnames = []string{"localhost", "127.0.0.1", nw.HubIP}
		// 10,000 lockers log a lot: to a file, not the in-memory buffer.
		c.Logger = slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	ctx := context.Background()

	sim := netfaultsBuildLockersim(t)
	simLog := filepath.Join(dir, "lockersim.log")
	out, err := os.Create(simLog)
	require.NoError(t, err)
	t.Cleanup(func() { out.Close() })
	control := "http://" + nw.CtlSimIP + ":7070"
	cmd := nw.Command(sim, "run", "--hub", h.MQTTAddr, "--api", h.DeviceURL, "--admin", h.HTTPURL,
		"--admin-token", h.AdminToken, "--ca", h.CAFile(), "--data", filepath.Join(dir, "lockers"),
		"--prefix", prefix, "--lockers", strconv.Itoa(n), "--cells", "20", "--segment", "netfaults",
		"--telemetry", telemetry.String(), "--keepalive", keepalive.String(), "--ramp", "20s",
		"--enroll-concurrency", "16", "--status-every", "10s", "--control", nw.CtlSimIP+":7070", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("lockersim log (tail):\n%s\nhub log (tail):\n%s", netfaultsTail(simLog, 30), netfaultsTail(logFile.Name(), 30))
		}
	})
	sc := &netfaultsSim{t: t, url: control, c: &http.Client{Timeout: 60 * time.Second}}

	// Enrolment (registration, certificate) and the first connects.
	start := time.Now()
	hubtest.Eventually(t, 10*time.Minute, "all lockers enrolled and connected", func() bool {
		select {
		case <-exited:
			t.Fatalf("lockersim exited:\n%s", netfaultsTail(simLog, 30))
		default:
		}
		return h.App.Broker.Connected() == n
	})
	t.Logf("%d lockers enrolled and connected in %s", n, time.Since(start).Round(time.Second))
	// Every locker has had telemetry acknowledged before the cut.
	hubtest.Eventually(t, 3*telemetry, "a telemetry sample acked at every locker", func() bool {
		for _, v := range sc.lockers() {
			if v.AckedTelemetry == 0 {
				return false
			}
		}
		return true
	})
	// Before the cut: no open alarm. (A locker registered at enrolment has
	// free_cells_low until its first state report says its cells are free:
	// raised and resolved before this point, not the cut's doing.)
	hubtest.Eventually(t, 30*time.Second, "no open alarm before the cut", func() bool {
		return netfaultsCount(t, h, `SELECT count(*) FROM alarms_alarms WHERE state <> 'resolved'`) == 0
	})
	before := netfaultsCount(t, h, `SELECT coalesce(max(id), 0) FROM alarms_alarms`)
	// Set only now: lockers registered but not yet connected during a long
	// enrolment would be offline alarms of their own.
	require.NoError(t, h.Admin.JSON(ctx, http.MethodPut, "/api/v1/alarms/rules",
		map[string]any{"rules": []map[string]any{{"kind": "offline", "enabled": true, "for": "5s"}}}, nil))

	// The cut.
	cutAt := time.Now()
	nw.Cut()
	hubtest.Eventually(t, cut, "the hub saw every connection die", func() bool { return h.App.Broker.Connected() == 0 })
	allDown := time.Since(cutAt)
	hubtest.Eventually(t, cut-time.Since(cutAt), "every locker saw its connection die", func() bool { return sc.stats().Connected == 0 })
	// Cut off, lockers change: every 100th has a door opened by a technician, a
	// parcel put in and the door closed; the messages wait in its outbox.
	var changed []string
	for i := 1; i <= n; i += 100 {
		id := fmt.Sprintf("%s%05d", prefix, i)
		sc.post("/lockers/"+id+"/cells/A01/open", `{"cause":"service:netfaults"}`)
		sc.post("/lockers/"+id+"/cells/A01/deposit", "")
		sc.post("/lockers/"+id+"/cells/A01/close", "")
		changed = append(changed, id)
	}
	time.Sleep(time.Until(cutAt.Add(cut)))
	require.Equal(t, 0, h.App.Broker.Connected(), "no connection survives the cut")
	hubtest.Eventually(t, 10*time.Second, "presence: every locker offline", func() bool {
		return netfaultsPresence(t, h, "offline") == n
	})

	// The storm.
	nw.Restore()
	restored := time.Now()
	hubtest.Eventually(t, 2*time.Minute, "99% back", func() bool { return h.App.Broker.Connected() >= (n*99+99)/100 })
	p99 := time.Since(restored)
	hubtest.Eventually(t, 2*time.Minute, "all back", func() bool { return h.App.Broker.Connected() == n })
	all := time.Since(restored)
	netfaultsFigure(t, "cut_all_connections_dead_s", allDown.Seconds(), "s", n)
	netfaultsFigure(t, "storm_99pct_back_s", p99.Seconds(), "s", n)
	netfaultsFigure(t, "storm_all_back_s", all.Seconds(), "s", n)
	if p99 > 15*time.Second { // the requirement; the checks below still run
		t.Errorf("99%% of the lockers back after %s > 15 s after the cut's end", p99.Round(10*time.Millisecond))
	}

	hubtest.Eventually(t, 10*time.Second, "presence: every locker online", func() bool {
		return netfaultsPresence(t, h, "online") == n
	})
	hubtest.Eventually(t, time.Minute, "every locker's outbox acknowledged", func() bool {
		for _, v := range sc.lockers() {
			if v.Queued > 0 {
				return false
			}
		}
		return true
	})
	queuedAll := time.Since(restored)
	netfaultsFigure(t, "storm_outboxes_empty_s", queuedAll.Seconds(), "s", n)

	// Twins: the changed lockers and a sample of the others equal the lockers.
	check := append([]string{}, changed...)
	for range 200 {
		check = append(check, fmt.Sprintf("%s%05d", prefix, 1+rand.IntN(n)))
	}
	for _, id := range check {
		want := sc.locker(id).Cells
		var twin struct {
			Reported struct {
				Cells map[string]protocol.CellState `json:"cells"`
			} `json:"reported"`
		}
		require.NoError(t, h.Admin.JSON(ctx, http.MethodGet, "/api/v1/lockers/"+id+"/twin", nil, &twin))
		for name, c := range want {
			got := twin.Reported.Cells[name]
			require.Equal(t, c.Door, got.Door, "%s %s door", id, name)
			require.Equal(t, c.Lock, got.Lock, "%s %s lock", id, name)
			require.NotNil(t, got.Occupied, "%s %s occupied", id, name)
			require.Equal(t, *c.Occupied, *got.Occupied, "%s %s occupied", id, name)
		}
	}
	for _, id := range changed {
		require.True(t, *sc.locker(id).Cells["A01"].Occupied, "%s: the parcel put in during the cut", id)
	}
	require.Equal(t, int64(len(changed)), netfaultsCount(t, h,
		`SELECT count(*) FROM fleet_events WHERE type = 'door_opened' AND cause = 'service:netfaults' AND ts >= $1`, cutAt),
		"each door opened during the cut is one stored event")

	// Alarms: the offline ones, all resolved; nothing else.
	hubtest.Eventually(t, time.Minute, "offline alarms resolved", func() bool {
		return netfaultsCount(t, h, `SELECT count(*) FROM alarms_alarms WHERE state <> 'resolved'`) == 0
	})
	offline := netfaultsCount(t, h, `SELECT count(*) FROM alarms_alarms WHERE kind = 'offline' AND id > $1`, before)
	require.Equal(t, int64(0), netfaultsCount(t, h, `SELECT count(*) FROM alarms_alarms WHERE kind <> 'offline' AND id > $1`, before),
		"no alarm but offline: %s", netfaultsQuery(t, h, fmt.Sprintf(`SELECT kind || ' ' || locker_id || ' ' || summary FROM alarms_alarms WHERE kind <> 'offline' AND id > %d LIMIT 5`, before)))
	require.Greater(t, offline, int64(0), "the cut raised offline alarms")
	require.LessOrEqual(t, offline, int64(n), "at most one offline alarm per locker")
	netfaultsFigure(t, "offline_alarms", float64(offline), "", n)

	// Telemetry: let samples flow after the storm, then freeze the lockers'
	// view of what was acknowledged with a second cut (no PUBACK can arrive).
	time.Sleep(telemetry + 2*time.Second)
	nw.Cut()
	time.Sleep(2 * time.Second) // what the hub received before the cut is committed
	var last int64 = -1
	hubtest.Eventually(t, 30*time.Second, "ingest settled", func() bool {
		c := netfaultsCount(t, h, `SELECT count(*) FROM telemetry_samples`)
		settled := c == last
		last = c
		time.Sleep(time.Second)
		return settled
	})
	stored := map[string][2]int64{}
	rows, err := h.App.Pool.Query(ctx, `SELECT locker_id, count(*), count(DISTINCT (boot, seq)) FROM telemetry_samples GROUP BY locker_id`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		var c, d int64
		require.NoError(t, rows.Scan(&id, &c, &d))
		stored[id] = [2]int64{c, d}
	}
	require.NoError(t, rows.Err())
	var acked, unacked int64
	views := sc.lockers()
	require.Len(t, views, n)
	for _, v := range views {
		s := stored[v.ID]
		require.Equal(t, s[0], s[1], "%s: a sample stored twice", v.ID)
		require.GreaterOrEqual(t, s[0], int64(v.AckedTelemetry), "%s: an acknowledged sample is missing (stored %d, acked %d)", v.ID, s[0], v.AckedTelemetry)
		require.LessOrEqual(t, s[0], int64(v.AckedTelemetry)+int64(v.Queued), "%s: more stored than sent", v.ID)
		acked += int64(v.AckedTelemetry)
		unacked += s[0] - int64(v.AckedTelemetry)
		require.Zero(t, v.Dropped, "%s: outbox overflowed", v.ID)
	}
	st := sc.stats()
	require.Zero(t, st.Dropped+st.Discarded)
	require.Greater(t, acked, int64(2*n), "samples acknowledged before the cut, in the storm and after")
	netfaultsFigure(t, "telemetry_acked_and_stored", float64(acked), "", n)
	netfaultsFigure(t, "telemetry_stored_ack_in_flight", float64(unacked), "", n)
	netfaultsFigure(t, "republished", float64(st.Republished), "", n)
}

// netfaultsSim talks to lockersim's control API.
type netfaultsSim struct {
	t   testing.TB
	url string
	c   *http.Client
}

type netfaultsView struct {
	ID             string                        `json:"id"`
	Connected      bool                          `json:"connected"`
	Queued         int                           `json:"queued"`
	AckedTelemetry uint64                        `json:"acked_telemetry"`
	Dropped        uint64                        `json:"dropped"`
	Cells          map[string]protocol.CellState `json:"cells"`
}

type netfaultsStats struct {
	Connected   int64 `json:"connected"`
	Republished int64 `json:"republished"`
	Dropped     int64 `json:"dropped"`
	Discarded   int64 `json:"discarded"`
}

func (s *netfaultsSim) get(path string, v any) {
	s.t.Helper()
	resp, err := s.c.Get(s.url + path)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	require.Equal(s.t, http.StatusOK, resp.StatusCode, path)
	require.NoError(s.t, json.NewDecoder(resp.Body).Decode(v))
}

func (s *netfaultsSim) post(path, body string) {
	s.t.Helper()
	resp, err := s.c.Post(s.url+path, "application/json", strings.NewReader(body))
	require.NoError(s.t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, "%s: %s", path, msg)
}

func (s *netfaultsSim) lockers() []netfaultsView {
	var out struct {
		Lockers []netfaultsView `json:"lockers"`
	}
	s.get("/lockers", &out)
	return out.Lockers
}

func (s *netfaultsSim) locker(id string) netfaultsView {
	var v netfaultsView
	s.get("/lockers/"+id, &v)
	return v
}

func (s *netfaultsSim) stats() netfaultsStats {
	var st netfaultsStats
	s.get("/stats", &st)
	return st
}

// netfaultsPresence counts the lockers of segment netfaults in a presence state.
func netfaultsPresence(t testing.TB, h *hubtest.Hub, status string) int {
	t.Helper()
	p, err := h.Admin.ListLockers(context.Background(), apiclient.LockerFilter{Segment: "netfaults", Status: status, Limit: 1})
	require.NoError(t, err)
	return p.Total
}

func netfaultsCount(t testing.TB, h *hubtest.Hub, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, h.App.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func netfaultsQuery(t testing.TB, h *hubtest.Hub, sql string) string {
	t.Helper()
	rows, err := h.App.Pool.Query(context.Background(), sql)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func netfaultsFigure(t testing.TB, name string, v float64, unit string, n int) {
	t.Logf("figure %-32s %10.2f %-2s (%d lockers, %s)", name, v, unit, n, time.Now().UTC().Format(time.RFC3339))
}

func netfaultsBuildLockersim(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lockersim")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lockerhub/lockerhub/cmd/lockersim").CombinedOutput()
	require.NoError(t, err, "build lockersim: %s", out)
	return bin
}

func netfaultsTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
