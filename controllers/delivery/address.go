package delivery

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// Why an address is refused. These are the fixed reasons status, Events and dead letters
// carry ("address not allowed: loopback").
const (
	refusedLoopback    = "loopback"
	refusedLinkLocal   = "link-local"
	refusedMetadata    = "cloud metadata"
	refusedUnspecified = "unspecified"
	refusedMulticast   = "multicast"
	refusedOwn         = "the operator's own address"
	refusedAPIServer   = "the Kubernetes API server"
)

// metadataAddrs are cloud instance-metadata endpoints outside the link-local ranges
// (169.254.169.254 is link-local, but named here so the reason says what it is): AWS's
// IPv6 endpoint and Alibaba Cloud's.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// nat64 is the well-known NAT64 prefix: an IPv6-only cluster reaches IPv4 addresses
// through it, so the IPv4 address inside is checked too.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// AddressNotAllowedError is a connection the AddressPolicy refused.
type AddressNotAllowedError struct {
	// Reason is one of the fixed reasons above.
	Reason string
}

func (e *AddressNotAllowedError) Error() string { return "address not allowed: " + e.Reason }

// AddressPolicy decides which addresses HTTP deliveries may connect to. It is applied
// to the address actually dialled, after DNS, so a name that resolves (or rebinds) to a
// refused address is refused too. Refused unless an allowed prefix covers them:
// loopback, link-local (cloud metadata included), unspecified and multicast addresses,
// the operator's own addresses and the API server's.
type AddressPolicy struct {
	allow []netip.Prefix
	// denied are specific addresses refused with a reason (the pod's, the API server's).
	denied map[netip.Addr]string
}

// NewAddressPolicy refuses what AddressPolicy says, and the given addresses with their
// reasons, except in the allowed prefixes.
func NewAddressPolicy(allow []netip.Prefix, denied map[netip.Addr]string) *AddressPolicy {
	p := &AddressPolicy{allow: allow, denied: map[netip.Addr]string{}}
	for a, reason := range denied {
		p.denied[a.Unmap()] = reason
	}
	return p
}

// Check returns an *AddressNotAllowedError when deliveries may not connect to ip.
func (p *AddressPolicy) Check(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, pre := range p.allow {
		if pre.Contains(ip) {
			return nil
		}
	}
	if reason := p.refused(ip); reason != "" {
		return &AddressNotAllowedError{Reason: reason}
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return p.Check(netip.AddrFrom4([4]byte(b[12:])))
	}
	return nil
}

func (p *AddressPolicy) refused(ip netip.Addr) string {
	if reason, ok := p.denied[ip]; ok {
		return reason
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return refusedMetadata
		}
	}
	switch {
	case ip.IsLoopback():
		return refusedLoopback
	case ip.IsLinkLocalUnicast():
		return refusedLinkLocal
	// 0.0.0.0/8 ("this network"): Linux connects 0.0.0.0 to the local host.
	case ip.IsUnspecified() || (ip.Is4() && ip.As4()[0] == 0):
		return refusedUnspecified
	case ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast():
		return refusedMulticast
	}
	return ""
}

// control is a net.Dialer Control function: it runs for every address a connection is
// attempted to, once the name is resolved.
func (p *AddressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialling %q: %w", address, err)
	}
	return p.Check(ap.Addr())
}

// OperatorAddresses are the addresses deliveries must not reach even though they are
// ordinary unicast addresses: the pod's own (its other ports — metrics, probes, pprof,
// sidecars — are not for tenants) and the API server's, both the host of the operator's
// rest config (resolved now) and, in a cluster, the kubernetes Service's ClusterIP.
func OperatorAddresses(ctx context.Context, apiServerHost string) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the pod's addresses: %w", err)
	}
	for _, a := range ifaces {
		if n, ok := a.(*net.IPNet); ok {
			// Loopback and link-local addresses are refused as such already.
			if ip, ok := netip.AddrFromSlice(n.IP); ok && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				out[ip.Unmap()] = refusedOwn
			}
		}
	}
	hosts := []string{}
	if apiServerHost != "" {
		h := apiServerHost
		if u, err := url.Parse(apiServerHost); err == nil && u.Host != "" {
			h = u.Hostname()
		}
		hosts = append(hosts, h)
	}
	if h := strings.TrimSpace(os.Getenv("KUBERNETES_SERVICE_HOST")); h != "" {
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			out[ip.Unmap()] = refusedAPIServer
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		if err != nil {
			return nil, fmt.Errorf("resolving the API server's host %q: %w", h, err)
		}
		for _, ip := range ips {
			out[ip.Unmap()] = refusedAPIServer
		}
	}
	return out, nil
}
