package main

import (
	"fmt"
	"net/netip"
	"strings"
)

// parsePrefixes reads "10.0.0.1, 192.168.0.0/16, ::1" into *out (replacing
// it): the trusted reverse proxies of --trusted-proxies.
func parsePrefixes(s string, out *[]netip.Prefix) error {
	var ps []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return fmt.Errorf("%q is not an IP address or CIDR", f)
			}
			ps = append(ps, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return fmt.Errorf("%q is not an IP address or CIDR", f)
		}
		a = a.Unmap()
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	*out = ps
	return nil
}
