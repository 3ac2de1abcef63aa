package lockersim

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckLoopbackAcceptsAVethPeer: an address across a veth link (a network
// namespace of this machine) is a target; an address on no veth is not.
func TestCheckLoopbackAcceptsAVethPeer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) is not installed")
	}
	ns, host := fmt.Sprintf("lhvt-%d", os.Getpid()%100000), fmt.Sprintf("lhvt%d", os.Getpid()%100000)
	ip := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", host, "type", "veth", "peer", "name", host+"p", "netns", ns)
	ip("addr", "add", "10.214.0.1/30", "dev", host)
	ip("link", "set", host, "up")

	require.NoError(t, CheckLoopback("10.214.0.2:8883"), "the namespace's end of the veth")
	require.NoError(t, CheckLoopback("https://10.214.0.1:8443"), "our own end")
	require.Error(t, CheckLoopback("10.214.0.9:8883"), "outside the veth's subnet")
	require.Error(t, CheckLoopback("10.0.0.1:8883"))
}
