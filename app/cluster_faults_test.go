//go:build faults

package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/app"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/pg/pgtest"
)

// buildCmd builds one of cmd/ into dir (the go build cache makes it cheap).
func buildCmd(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "../cmd/"+name)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s: %s", name, b)
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// hubProc is one bin/hub process.
type hubProc struct {
	bin, node, dataDir, dbURL   string
	mqtt, http, device, logPath string
	cmd                         *exec.Cmd
}

func (p *hubProc) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	p.cmd = exec.Command(p.bin, "--node", p.node, "--data-dir", p.dataDir, "--database-url", p.dbURL,
		"--mqtt-addr", p.mqtt, "--http-addr", p.http, "--device-addr", p.device, "--video-udp-addr", "127.0.0.1:0",
		"--hostnames", "127.0.0.1,localhost")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() { p.stop() })
	hubtest.Eventually(t, 60*time.Second, "hub "+p.node+" ready", func() bool {
		res, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

func (p *hubProc) stop() {
	if p.cmd != nil && p.cmd.Process != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	}
}

func (p *hubProc) kill9() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// metric reads one series of a process's /metrics (0 when absent).
func metric(t *testing.T, httpAddr, series string) float64 {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && name == series {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}

func startSimProc(t *testing.T, bin string, h *hubProc, token, prefix string, n int) {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "lockersim.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "run", "--hub", h.mqtt, "--api", "https://"+h.device, "--admin", "http://"+h.http,
		"--admin-token", token, "--ca", filepath.Join(h.dataDir, "ca.crt"), "--var", dir, "--data", dir,
		"--lockers", strconv.Itoa(n), "--cells", "4", "--prefix", prefix, "--segment", "cluster",
		"--control", "", "--door-close", "0", "--status-every", "0", "--ramp", "0s")
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("lockersim %s log:\n%s", prefix, tail(b, 3000))
		}
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// TestClusterFaultTwoHubProcesses runs the two-node case as an operator
// would: two bin/hub processes with --node, one PostgreSQL database, the
// same CA (B starts on a copy of A's data directory), a lockersim process
// per node. A cell.open created through A's API for a locker connected to B
// is delivered by B and confirmed by the door sensor, A's ?wait answer and
// API show it succeeded; A's presence and twin of B's lockers follow. Then B
// is killed (kill -9): A marks B's lockers offline once B's heartbeat is
// stale, and a command made through A meanwhile waits (pending); B is
// started again, its lockers reconnect, and the waiting command is
// delivered by the new B.
func TestClusterFaultTwoHubProcesses(t *testing.T) {
	bins := t.TempDir()
	hubBin, simBin := buildCmd(t, bins, "hub"), buildCmd(t, bins, "lockersim")
	dbURL := pgtest.NewDB(t, app.Migrations()...)
	logs := t.TempDir()
	a := &hubProc{bin: hubBin, node: "a", dataDir: t.TempDir(), dbURL: dbURL, mqtt: freePort(t), http: freePort(t), device: freePort(t),
		logPath: filepath.Join(logs, "a.log")}
	a.start(t)
	b := &hubProc{bin: hubBin, node: "b", dataDir: t.TempDir(), dbURL: dbURL, mqtt: freePort(t), http: freePort(t), device: freePort(t),
		logPath: filepath.Join(logs, "b.log")}
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "admin.token", "admin.password", "tls-ticket.keys"} {
		data, err := os.ReadFile(filepath.Join(a.dataDir, f))
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(b.dataDir, f), data, 0o600))
	}
	b.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*hubProc{a, b} {
				data, _ := os.ReadFile(p.logPath)
				t.Logf("hub %s log (end):\n%s", p.node, tail(data, 6000))
			}
		}
	})
	tokenBytes, err := os.ReadFile(filepath.Join(a.dataDir, "admin.token"))
	require.NoError(t, err)
	token := strings.TrimSpace(string(tokenBytes))
	apiA, apiB := apiclient.New("http://"+a.http, token), apiclient.New("http://"+b.http, token)
	ctx := context.Background()

	const n = 5
	startSimProc(t, simBin, a, token, "PA-", n)
	startSimProc(t, simBin, b, token, "PB-", n)
	online := func(api *apiclient.Client, id string) bool {
		l, err := api.Locker(ctx, id)
		return err == nil && l.Online
	}
	for i := 1; i <= n; i++ {
		for _, id := range []string{fmt.Sprintf("PA-%05d", i), fmt.Sprintf("PB-%05d", i)} {
			hubtest.Eventually(t, 60*time.Second, id+" online on both nodes", func() bool { return online(apiA, id) && online(apiB, id) })
		}
	}

	// A command through A for a locker on B.
	first, err := apiA.OpenCell(ctx, "PB-00001", "A01", "", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "succeeded", first.State, "%+v", first)
	require.NotNil(t, first.ConfirmedAt, "confirmed by the door sensor")
	for _, api := range []*apiclient.Client{apiA, apiB} {
		got, err := api.Command(ctx, first.ID, 0)
		require.NoError(t, err)
		require.Equal(t, "succeeded", got.State)
		require.Equal(t, 1, got.Attempts)
	}
	require.GreaterOrEqual(t, metric(t, b.http, "lockerhub_fleet_cluster_commands_adopted_total"), 1.0)
	require.Equal(t, 0.0, metric(t, a.http, "lockerhub_fleet_command_sends_total"), "A sent nothing: B did")
	hubtest.Eventually(t, 5*time.Second, "A's twin of PB-00001 shows the door open", func() bool {
		var tw twinDoc
		err := apiA.JSON(ctx, http.MethodGet, "/api/v1/lockers/PB-00001/twin", nil, &tw)
		return err == nil && tw.Reported.Cells["A01"].Door == "open" && tw.Connectivity.Online
	})

	// Timed: through A to each of B's lockers and to A's own.
	var cross, local []time.Duration
	for round := range 4 {
		cell := []string{"A02", "A03", "A04", "A01"}[round]
		for i := 1; i <= n; i++ {
			for _, target := range []struct {
				id  string
				out *[]time.Duration
			}{{fmt.Sprintf("PB-%05d", i), &cross}, {fmt.Sprintf("PA-%05d", i), &local}} {
				if round == 3 && target.id == "PB-00001" {
					continue // its A01 is open already
				}
				start := time.Now()
				c, err := apiA.OpenCell(ctx, target.id, cell, "", 10*time.Second)
				require.NoError(t, err)
				require.Equal(t, "succeeded", c.State, "%s %s: %+v", target.id, cell, c)
				*target.out = append(*target.out, time.Since(start))
			}
		}
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, int(p*float64(len(d))))]
	}
	t.Logf("FIGURE cluster_command through=A to_other_node n=%d p50=%v p90=%v max=%v; to_own_node n=%d p50=%v p90=%v max=%v",
		len(cross), pct(cross, .5), pct(cross, .9), pct(cross, 1), len(local), pct(local, .5), pct(local, .9), pct(local, 1))

	// kill -9 of B: A drops B's lockers once B's heartbeat is stale.
	killed := time.Now()
	b.kill9()
	hubtest.Eventually(t, 30*time.Second, "A shows B's lockers offline", func() bool { return !online(apiA, "PB-00002") })
	t.Logf("FIGURE cluster_node_gone presence_offline_after=%v", time.Since(killed).Round(100*time.Millisecond))
	require.True(t, online(apiA, "PA-00002"), "A's own lockers stay online")
	waiting, err := apiA.SendCommand(ctx, "PB-00002", apiclient.NewCommand{Method: "cell.open",
		Params: json.RawMessage(`{"cell":"A01"}`), ValidFor: "3m"}, 0)
	require.NoError(t, err)
	require.Equal(t, "pending", waiting.State)

	// B again (same ports, data dir, name): its lockers come back and the
	// waiting command is delivered by it.
	restarted := time.Now()
	b.start(t)
	var done apiclient.Command
	hubtest.Eventually(t, 90*time.Second, "the waiting command ends", func() bool {
		done, err = apiA.Command(ctx, waiting.ID, 10*time.Second)
		return err == nil && done.Final()
	})
	require.Equal(t, "succeeded", done.State, "%+v", done)
	t.Logf("FIGURE cluster_node_back waiting_command_succeeded_after=%v", time.Since(restarted).Round(100*time.Millisecond))
	hubtest.Eventually(t, 30*time.Second, "A shows B's lockers online again", func() bool { return online(apiA, "PB-00005") })
}
