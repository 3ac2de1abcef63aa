//go:build faults

package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netfaultsNet is a network namespace for simulated lockers, joined to the
// test's namespace by two veth pairs:
//
//   - dev: the lockers' traffic to the hub (MQTT, device HTTPS, enrolment).
//     The hub listens on HubIP, the lockers' end is SimIP. This is the link a
//     test cuts.
//   - ctl: the test's calls to lockersim's control API (CtlSimIP). Never cut,
//     so the test can act at the lockers while they are cut off.
//
// A cut is a blackhole, as when a router or a cable between lockers and hub
// fails: both ends get a permanent neighbour entry with a MAC address nobody
// has, so every frame is dropped by the receiving veth (not for its address),
// silently, with no error for either side. TCP retransmits into the void and
// connections die by their keepalive, dials time out. (netem and tc
// classifiers are not in this kernel; iptables is not installed.)
type netfaultsNet struct {
	t                   testing.TB
	NS                  string
	HubIP, SimIP        string
	CtlHostIP, CtlSimIP string
	devHost, devSim     string
}

// netfaultsNetns makes the namespace and both links; t.Cleanup deletes the
// namespace, which removes both veth pairs, even when the test fails. It skips
// the test when it cannot (not root, no ip(8)).
func netfaultsNetns(t testing.TB) *netfaultsNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) (iproute2) is not installed")
	}
	id := os.Getpid() % 100000
	n := &netfaultsNet{
		t:         t,
		NS:        fmt.Sprintf("lhnf-%d", id),
		HubIP:     "10.213.0.1",
		SimIP:     "10.213.0.2",
		CtlHostIP: "10.213.0.5",
		CtlSimIP:  "10.213.0.6",
		devHost:   fmt.Sprintf("lhnf%dd0", id),
		devSim:    fmt.Sprintf("lhnf%dd1", id),
	}
	ctlHost, ctlSim := fmt.Sprintf("lhnf%dc0", id), fmt.Sprintf("lhnf%dc1", id)
	// Left over from a run that was killed: start afresh.
	_ = exec.Command("ip", "netns", "del", n.NS).Run()
	_ = exec.Command("ip", "link", "del", n.devHost).Run()
	_ = exec.Command("ip", "link", "del", ctlHost).Run()
	n.ip("netns", "add", n.NS)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.NS).CombinedOutput(); err != nil {
			t.Errorf("netfaults: delete namespace %s: %v %s", n.NS, err, out)
		}
		// The host ends go with their peers; make sure.
		_ = exec.Command("ip", "link", "del", n.devHost).Run()
		_ = exec.Command("ip", "link", "del", ctlHost).Run()
	})
	for _, l := range []struct{ host, sim, hostIP, simIP string }{
		{n.devHost, n.devSim, n.HubIP, n.SimIP},
		{ctlHost, ctlSim, n.CtlHostIP, n.CtlSimIP},
	} {
		n.ip("link", "add", l.host, "type", "veth", "peer", "name", l.sim, "netns", n.NS)
		n.ip("addr", "add", l.hostIP+"/30", "dev", l.host)
		n.ip("link", "set", l.host, "up")
		n.ip("-n", n.NS, "addr", "add", l.simIP+"/30", "dev", l.sim)
		n.ip("-n", n.NS, "link", "set", l.sim, "up")
	}
	n.ip("-n", n.NS, "link", "set", "lo", "up")
	return n
}

func (n *netfaultsNet) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("netfaults: ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// Cut blackholes the dev link in both directions.
func (n *netfaultsNet) Cut() {
	n.t.Helper()
	n.ip("neigh", "replace", n.SimIP, "lladdr", "02:00:00:00:0d:01", "dev", n.devHost, "nud", "permanent")
	n.ip("-n", n.NS, "neigh", "replace", n.HubIP, "lladdr", "02:00:00:00:0d:02", "dev", n.devSim, "nud", "permanent")
}

// Restore ends a cut: the neighbour entries go and ARP finds the real ones.
func (n *netfaultsNet) Restore() {
	n.t.Helper()
	n.ip("neigh", "del", n.SimIP, "dev", n.devHost)
	n.ip("-n", n.NS, "neigh", "del", n.HubIP, "dev", n.devSim)
}

// Command runs name in the namespace (ip netns exec replaces itself with it,
// so the process's pid is the command's).
func (n *netfaultsNet) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}
