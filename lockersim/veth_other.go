//go:build !linux

package lockersim

import "net"

// onVeth: veth interfaces are Linux's; elsewhere only loopback targets.
func onVeth(net.IP) bool { return false }
