package app_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/lockersim"
)

// clusterFleet starts n simulated lockers connected to h (enrolled through
// h's API) and waits until h holds their connections.
func clusterFleet(t *testing.T, h *hubtest.Hub, prefix string, n int) *lockersim.Sim {
	t.Helper()
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = h.MQTTAddr, h.DeviceURL, h.HTTPURL, h.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = n, 4, prefix
	cfg.Ramp, cfg.StatusEvery = 0, 0
	cfg.DoorClose = 0 // doors stay open: the twins can be compared
	cfg.Telemetry = 500 * time.Millisecond
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(ctx))
	t.Cleanup(func() { stop(); sim.Stop() })
	for i := 1; i <= n; i++ {
		id := lockersim.LockerID(prefix, i, n)
		hubtest.Eventually(t, 30*time.Second, id+" connected", func() bool { return h.App.Broker.Online(id) })
	}
	return sim
}

type twinDoc struct {
	Version  int64 `json:"version"`
	Reported struct {
		Cells map[string]struct {
			Door string `json:"door"`
		} `json:"cells"`
	} `json:"reported"`
	Connectivity struct {
		Online bool `json:"online"`
	} `json:"connectivity"`
	Telemetry *struct {
		TS time.Time `json:"ts"`
	} `json:"telemetry"`
}

func getTwin(t *testing.T, h *hubtest.Hub, id string) twinDoc {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.HTTPURL+"/api/v1/lockers/"+id+"/twin", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var tw twinDoc
	require.NoError(t, json.NewDecoder(res.Body).Decode(&tw))
	return tw
}

// TestClusterCommandThroughOtherNode: two hub nodes (two apps in this
// process, one database, the same CA), lockers split between them. A
// cell.open created through node A for a locker connected to node B is sent
// by B, confirmed by the door sensor, and A's ?wait answer and API show it
// succeeded; A's presence and twin of B's lockers follow B; a command made
// on A while its locker was offline everywhere is delivered when the locker
// comes back at B; a locker whose certificates are revoked, or that is
// disabled, on A is kicked from B and refused there.
func TestClusterCommandThroughOtherNode(t *testing.T) {
	a := hubtest.Start(t, hubtest.Node("a"))
	b := hubtest.Join(t, a, hubtest.Node("b"))
	clusterFleet(t, a, "NA-", 2)
	simB := clusterFleet(t, b, "NB-", 2)
	ctx := context.Background()
	onB := "NB-00001"

	// Presence and registry on A of a locker registered and connected on B.
	hubtest.Eventually(t, 10*time.Second, "A sees B's locker online", func() bool {
		l, err := a.Admin.Locker(ctx, onB)
		return err == nil && l.Online
	})
	require.False(t, a.App.Broker.Online(onB), "the locker is connected to B only")

	// A command through A to B's locker.
	start := time.Now()
	cmd, err := a.Admin.OpenCell(ctx, onB, "A02", "", 10*time.Second)
	require.NoError(t, err)
	t.Logf("cell.open A→B: %s in %v", cmd.State, time.Since(start))
	require.Equal(t, "succeeded", cmd.State, "%+v", cmd)
	require.NotNil(t, cmd.ConfirmedAt, "the door sensor confirmed it")
	require.Equal(t, 1, cmd.Attempts)
	for _, h := range []*hubtest.Hub{a, b} {
		got, err := h.Admin.Command(ctx, cmd.ID, 0)
		require.NoError(t, err)
		require.Equal(t, "succeeded", got.State)
	}
	require.Equal(t, 1.0, b.Metric("lockerhub_fleet_cluster_commands_adopted_total"))
	require.Equal(t, 1.0, a.Metric("lockerhub_fleet_cluster_commands_settled_total"))
	require.Equal(t, 0.0, a.Metric("lockerhub_fleet_command_sends_total"), "A sent nothing itself")

	// A's twin of the locker follows B's.
	hubtest.Eventually(t, 5*time.Second, "A's twin shows the door open", func() bool {
		ta, tb := getTwin(t, a, onB), getTwin(t, b, onB)
		return ta.Version == tb.Version && ta.Reported.Cells["A02"].Door == "open" && ta.Connectivity.Online
	})

	// A's twin shows B's latest telemetry sample, and keeps up with it.
	hubtest.Eventually(t, 10*time.Second, "B has a sample", func() bool { return getTwin(t, b, onB).Telemetry != nil })
	first := getTwin(t, b, onB).Telemetry
	hubtest.Eventually(t, 5*time.Second, "A shows a sample of B's locker newer than B had a moment ago", func() bool {
		tw := getTwin(t, a, onB)
		return tw.Telemetry != nil && tw.Telemetry.TS.After(first.TS)
	})

	// Local and cross-node commands, timed (?wait until the door confirmed).
	var local, cross []time.Duration
	for i := range 10 {
		cell := []string{"A03", "A04"}[i%2]
		start := time.Now()
		c, err := a.Admin.OpenCell(ctx, "NA-00001", cell, "", 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, "succeeded", c.State)
		local = append(local, time.Since(start))
		start = time.Now()
		c, err = a.Admin.OpenCell(ctx, onB, cell, "", 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, "succeeded", c.State)
		cross = append(cross, time.Since(start))
	}
	slices.Sort(local)
	slices.Sort(cross)
	t.Logf("cell.open through A, ?wait answer: to A's locker median %v max %v; to B's locker median %v max %v",
		local[5], local[9], cross[5], cross[9])

	// Offline everywhere when created on A: delivered once it is back at B.
	l2 := simB.Locker("NB-00002")
	l2.GoOffline(time.Hour)
	hubtest.Eventually(t, 10*time.Second, "A sees NB-00002 offline", func() bool {
		l, err := a.Admin.Locker(ctx, "NB-00002")
		return err == nil && !l.Online
	})
	pending, err := a.Admin.OpenCell(ctx, "NB-00002", "A01", "", 0)
	require.NoError(t, err)
	require.Equal(t, "pending", pending.State)
	l2.ComeOnline()
	done, err := a.Admin.Command(ctx, pending.ID, 15*time.Second)
	require.NoError(t, err)
	require.Equal(t, "succeeded", done.State, "%+v", done)

	// Certificates revoked through A: B closes the connection and refuses
	// the locker's reconnects (its TLS check reads the revoked serials).
	_, err = a.Admin.RevokeCertificates(ctx, "NB-00002")
	require.NoError(t, err)
	hubtest.Eventually(t, 5*time.Second, "B kicked the revoked locker", func() bool { return !b.App.Broker.Online("NB-00002") })
	require.Never(t, func() bool { return b.App.Broker.Online("NB-00002") }, 3*time.Second, 100*time.Millisecond, "B refuses the revoked certificate")

	// Disabled through A: kicked from B at once, refused there.
	_, err = a.Admin.UpdateLocker(ctx, onB, map[string]any{"enabled": false})
	require.NoError(t, err)
	hubtest.Eventually(t, 5*time.Second, "B kicked the disabled locker", func() bool { return !b.App.Broker.Online(onB) })
	hubtest.Eventually(t, 5*time.Second, "B refuses commands to the disabled locker", func() bool {
		_, err := b.Admin.OpenCell(ctx, onB, "A01", "", 0)
		return err != nil && strings.Contains(err.Error(), "disabled")
	})
}

// balancer is the test's TCP load balancer in front of the nodes' MQTT
// listeners: new connections go to its target; move closes every connection
// and sends new ones elsewhere; hold drops what the hub sends to the lockers
// (a connection that silently loses the hub's messages).
type balancer struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	hold   bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newBalancer(t *testing.T, target string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	lb := &balancer{ln: ln, target: target, conns: map[net.Conn]bool{}}
	lb.wg.Add(1)
	go func() {
		defer lb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			lb.mu.Lock()
			target := lb.target
			lb.mu.Unlock()
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			lb.mu.Lock()
			lb.conns[c], lb.conns[up] = true, true
			lb.mu.Unlock()
			lb.wg.Add(2)
			go func() { defer lb.wg.Done(); lb.pipe(up, c, false) }()
			go func() { defer lb.wg.Done(); lb.pipe(c, up, true) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); lb.move(""); lb.wg.Wait() })
	return lb
}

func (lb *balancer) pipe(dst, src net.Conn, toLocker bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			lb.mu.Lock()
			drop := toLocker && lb.hold
			lb.mu.Unlock()
			if !drop {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (lb *balancer) setHold(on bool) {
	lb.mu.Lock()
	lb.hold = on
	lb.mu.Unlock()
}

// move closes every connection; new ones go to target.
func (lb *balancer) move(target string) {
	lb.mu.Lock()
	lb.target, lb.hold = target, false
	for c := range lb.conns {
		c.Close()
	}
	lb.conns = map[net.Conn]bool{}
	lb.mu.Unlock()
}

// TestClusterCommandFollowsALockerThatMoves: a locker behind a load
// balancer is connected to node A when A sends it a cell.open, which is
// lost on the way; the locker reconnects through the balancer to node B.
// A leaves the command to B (its sweep sees B holding the locker), B adopts
// and sends it, the door opens, and A's ?wait answers succeeded within
// seconds (not at the end of the command's validity).
func TestClusterCommandFollowsALockerThatMoves(t *testing.T) {
	a := hubtest.Start(t, hubtest.Node("a"))
	b := hubtest.Join(t, a, hubtest.Node("b"))
	lb := newBalancer(t, a.MQTTAddr)
	cfg := lockersim.DefaultConfig()
	cfg.Hub, cfg.API, cfg.Admin, cfg.AdminToken = lb.ln.Addr().String(), a.DeviceURL, a.HTTPURL, a.AdminToken
	cfg.VarDir, cfg.DataDir = t.TempDir(), t.TempDir()
	cfg.Lockers, cfg.Cells, cfg.Prefix = 1, 4, "MV-"
	cfg.Ramp, cfg.StatusEvery, cfg.DoorClose = 0, 0, 0
	sim, err := lockersim.NewSim(cfg, nil)
	require.NoError(t, err)
	simCtx, stop := context.WithCancel(context.Background())
	require.NoError(t, sim.Start(simCtx))
	t.Cleanup(func() { stop(); sim.Stop() })
	id := "MV-00001"
	hubtest.Eventually(t, 30*time.Second, id+" connected to A", func() bool { return a.App.Broker.Online(id) })

	lb.setHold(true)
	type result struct {
		cmd apiclient.Command
		err error
		at  time.Time
	}
	ch := make(chan result, 1)
	go func() {
		c, err := a.Admin.OpenCell(context.Background(), id, "A01", "", 25*time.Second)
		ch <- result{c, err, time.Now()}
	}()
	hubtest.Eventually(t, 5*time.Second, "A sent the command (lost on the way)", func() bool {
		return a.Metric("lockerhub_fleet_command_sends_total") >= 1
	})
	moved := time.Now()
	lb.move(b.MQTTAddr)
	var r result
	select {
	case r = <-ch:
	case <-time.After(40 * time.Second):
		t.Fatal("no answer from A")
	}
	require.NoError(t, r.err)
	require.Equal(t, "succeeded", r.cmd.State, "%+v", r.cmd)
	require.NotNil(t, r.cmd.ConfirmedAt)
	require.Less(t, r.at.Sub(moved), 15*time.Second, "answered once B delivered it, not at the end of its validity")
	require.GreaterOrEqual(t, b.Metric("lockerhub_fleet_cluster_commands_adopted_total"), 1.0)
	t.Logf("moved to B; A's ?wait answered %s %v after the move, after %d sends", r.cmd.State, r.at.Sub(moved).Round(time.Millisecond), r.cmd.Attempts)
}
