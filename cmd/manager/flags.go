package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/controllers"
)

// parseEventConcurrency parses "family=n,family=n" (the --event-concurrency flag).
func parseEventConcurrency(s string) (map[funnel.Family]int, error) {
	out := map[funnel.Family]int{}
	for _, part := range splitList(s) {
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want family=workers", part)
		}
		f := funnel.Family(strings.TrimSpace(name))
		if _, known := controllers.DefaultEventConcurrency[f]; !known {
			return nil, fmt.Errorf("%q: unknown family %q (one of lease_transaction, lease, quote, prospect, unknown)", part, f)
		}
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("%q: workers must be a number from 1 to 1000", part)
		}
		out[f] = n
	}
	return out, nil
}

// parseCIDRs parses a comma-separated list of CIDR prefixes or single addresses (the
// --delivery-allow-cidrs flag). IPv4-mapped IPv6 forms become IPv4, as the addresses
// deliveries dial are compared in that form.
func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range splitList(s) {
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q: not an address or CIDR prefix", item)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		pre, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q: not an address or CIDR prefix", item)
		}
		if pre.Addr().Is4In6() {
			pre = netip.PrefixFrom(pre.Addr().Unmap(), max(pre.Bits()-96, 0))
		}
		out = append(out, pre.Masked())
	}
	return out, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(list string) []string {
	var out []string
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
