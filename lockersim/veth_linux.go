package lockersim

import (
	"net"

	"golang.org/x/sys/unix"
)

// onVeth reports whether ip is on the subnet of a veth interface of this
// network namespace (or is that interface's own address). A veth's other end
// is always in a network namespace of the same kernel, so such a target is
// still this machine: fault tests put the lockers in a namespace of their own
// to cut their link to the hub (faults/netfaults_netns_test.go).
func onVeth(ip net.IP) bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok || !n.Contains(ip) {
				continue
			}
			if isVeth(ifc.Name) {
				return true
			}
		}
	}
	return false
}

func isVeth(name string) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	return err == nil && unix.ByteSliceToString(info.Driver[:]) == "veth"
}
