package delivery

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
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
	refusedOwnPort     = "the operator's own port"
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
// the operator's own addresses and the API server's. Refused even inside an allowed
// prefix: the API server's address and port, and the operator's own listening ports on
// any address of its host, so that opening loopback for a sidecar (or a range for
// in-cluster targets) does not open the API server or the operator's metrics, probes
// and receiver.
type AddressPolicy struct {
	allow []netip.Prefix
	// denied are specific addresses refused with a reason (the pod's, the API server's)
	// unless allowed.
	denied map[netip.Addr]string
	// own are the pod's addresses: with loopback and unspecified ones, where its
	// listeners answer.
	own map[netip.Addr]bool
	// endpoints are refused whatever is allowed: the API server's address and port.
	endpoints map[netip.AddrPort]string
	// localPorts are refused on every address of this host whatever is allowed: the
	// operator's listening ports, and the API server's when it listens on this host.
	localPorts map[uint16]string
}

// Protected is what the operator protects from its own deliveries (OperatorEndpoints).
type Protected struct {
	// Own are the pod's addresses, loopback and link-local ones aside (refused as such):
	// refused unless an allowed prefix covers them.
	Own []netip.Addr
	// APIServer are the API server's addresses and ports: the address is refused unless
	// an allowed prefix covers it, the address and port always.
	APIServer []netip.AddrPort
	// Ports are the operator's listening ports: refused always, on its own, loopback and
	// unspecified addresses.
	Ports []uint16
}

// NewAddressPolicy refuses what AddressPolicy says, protecting what protected names
// (nil: nothing of the operator's), except in the allowed prefixes.
func NewAddressPolicy(allow []netip.Prefix, protected *Protected) *AddressPolicy {
	p := &AddressPolicy{allow: allow, denied: map[netip.Addr]string{}, own: map[netip.Addr]bool{},
		endpoints: map[netip.AddrPort]string{}, localPorts: map[uint16]string{}}
	if protected == nil {
		return p
	}
	for _, a := range protected.Own {
		p.denied[a.Unmap()] = refusedOwn
		p.own[a.Unmap()] = true
	}
	for _, port := range protected.Ports {
		p.localPorts[port] = refusedOwnPort
	}
	for _, ap := range protected.APIServer {
		a := ap.Addr().Unmap()
		p.denied[a] = refusedAPIServer
		if p.local(a) {
			// A local API server may listen on every address of the host (make run's).
			p.localPorts[ap.Port()] = refusedAPIServer
		} else {
			p.endpoints[netip.AddrPortFrom(a, ap.Port())] = refusedAPIServer
		}
	}
	return p
}

// Check returns an *AddressNotAllowedError when deliveries may not connect to ap.
func (p *AddressPolicy) Check(ap netip.AddrPort) error {
	ip := ap.Addr().Unmap()
	if reason := p.always(ip, ap.Port()); reason != "" {
		return &AddressNotAllowedError{Reason: reason}
	}
	for _, pre := range p.allow {
		if pre.Contains(ip) {
			return nil
		}
	}
	if reason := p.refused(ip); reason != "" {
		return &AddressNotAllowedError{Reason: reason}
	}
	if v4, ok := fromNAT64(ip); ok {
		return p.Check(netip.AddrPortFrom(v4, ap.Port()))
	}
	return nil
}

// always is why ip:port is refused whatever is allowed, or "".
func (p *AddressPolicy) always(ip netip.Addr, port uint16) string {
	if reason, ok := p.endpoints[netip.AddrPortFrom(ip, port)]; ok {
		return reason
	}
	if reason, ok := p.localPorts[port]; ok && p.local(ip) {
		return reason
	}
	if v4, ok := fromNAT64(ip); ok {
		return p.always(v4, port)
	}
	return ""
}

// local reports whether a connection to ip reaches this host: where the operator's
// listeners (bound to all addresses, or to one of these) answer.
func (p *AddressPolicy) local(ip netip.Addr) bool {
	return ip.IsLoopback() || unspecified(ip) || p.own[ip]
}

// unspecified covers 0.0.0.0/8 ("this network": Linux connects 0.0.0.0 to the local
// host) and ::.
func unspecified(ip netip.Addr) bool {
	return ip.IsUnspecified() || (ip.Is4() && ip.As4()[0] == 0)
}

// fromNAT64 is the IPv4 address inside a NAT64 address.
func fromNAT64(ip netip.Addr) (netip.Addr, bool) {
	if !nat64.Contains(ip) {
		return netip.Addr{}, false
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
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
	case unspecified(ip):
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
	return p.Check(ap)
}

// OperatorEndpoints is what deliveries must not reach although it is made of ordinary
// unicast addresses: the pod's own addresses (its other ports — sidecars — are not for
// tenants either, unless allowed), the API server's address and port, both the host of
// the operator's rest config (resolved now) and, in a cluster, the kubernetes Service's
// ClusterIP, and the ports of the operator's own listeners (listen: host:port bind
// addresses; "", "0" and port 0 name none).
func OperatorEndpoints(ctx context.Context, apiServerHost string, listen []string) (*Protected, error) {
	out := &Protected{}
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the pod's addresses: %w", err)
	}
	for _, a := range ifaces {
		if n, ok := a.(*net.IPNet); ok {
			// Loopback and link-local addresses are refused as such already.
			if ip, ok := netip.AddrFromSlice(n.IP); ok && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				out.Own = append(out.Own, ip.Unmap())
			}
		}
	}
	for _, l := range listen {
		if l == "" || l == "0" {
			continue
		}
		_, port, err := net.SplitHostPort(l)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", l, err)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: port %q: %w", l, port, err)
		}
		if n != 0 {
			out.Ports = append(out.Ports, uint16(n))
		}
	}
	type hostPort struct{ host, port string }
	var servers []hostPort
	if apiServerHost != "" {
		hp := hostPort{host: apiServerHost, port: "443"}
		if u, err := url.Parse(apiServerHost); err == nil && u.Host != "" {
			hp.host, hp.port = u.Hostname(), u.Port()
			if hp.port == "" {
				hp.port = map[string]string{"http": "80"}[u.Scheme]
			}
			if hp.port == "" {
				hp.port = "443"
			}
		}
		servers = append(servers, hp)
	}
	if h := strings.TrimSpace(os.Getenv("KUBERNETES_SERVICE_HOST")); h != "" {
		servers = append(servers, hostPort{host: h, port: cmp.Or(strings.TrimSpace(os.Getenv("KUBERNETES_SERVICE_PORT")), "443")})
	}
	for _, s := range servers {
		port, err := strconv.ParseUint(s.port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("the API server's port %q: %w", s.port, err)
		}
		ips := []netip.Addr{}
		if ip, err := netip.ParseAddr(strings.Trim(s.host, "[]")); err == nil {
			ips = append(ips, ip)
		} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", s.host); err != nil {
			return nil, fmt.Errorf("resolving the API server's host %q: %w", s.host, err)
		}
		for _, ip := range ips {
			out.APIServer = append(out.APIServer, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		}
	}
	return out, nil
}
