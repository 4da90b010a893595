package delivery

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

func TestAddressPolicy(t *testing.T) {
	// A pod 10.244.1.7 whose metrics and receiver listen on 8082 and 8080, reaching the API
	// server through its Service 10.96.0.1:443.
	protected := &Protected{Own: []netip.Addr{netip.MustParseAddr("10.244.1.7")},
		APIServer: []netip.AddrPort{netip.MustParseAddrPort("10.96.0.1:443")}, Ports: []uint16{8080, 8082}}
	loopbackOne := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	everything := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	services := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
	pods := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	for _, tc := range []struct {
		addr  string // address:port
		allow []netip.Prefix
		want  string // the reason, "" when allowed
	}{
		{"127.0.0.1:80", nil, refusedLoopback},
		{"127.8.9.10:80", nil, refusedLoopback},
		{"[::1]:80", nil, refusedLoopback},
		{"[::ffff:127.0.0.1]:80", nil, refusedLoopback},
		{"169.254.169.254:80", nil, refusedMetadata},
		{"[fd00:ec2::254]:80", nil, refusedMetadata},
		{"100.100.100.200:80", nil, refusedMetadata},
		{"169.254.10.1:80", nil, refusedLinkLocal},
		{"[fe80::1]:80", nil, refusedLinkLocal},
		{"0.0.0.0:80", nil, refusedUnspecified},
		{"0.1.2.3:80", nil, refusedUnspecified},
		{"[::]:80", nil, refusedUnspecified},
		{"224.0.0.1:80", nil, refusedMulticast},
		{"[ff02::1]:80", nil, refusedMulticast},
		{"[ff05::2]:80", nil, refusedMulticast},
		{"10.96.0.1:443", nil, refusedAPIServer},
		{"10.96.0.1:80", nil, refusedAPIServer},
		{"[::ffff:10.96.0.1]:443", nil, refusedAPIServer},
		{"10.244.1.7:9000", nil, refusedOwn},
		{"10.244.1.7:8080", nil, refusedOwnPort},
		{"127.0.0.1:8082", nil, refusedOwnPort},
		{"[64:ff9b::a9fe:a9fe]:80", nil, refusedMetadata}, // NAT64 of 169.254.169.254
		{"[64:ff9b::7f00:1]:80", nil, refusedLoopback},
		// Ordinary in-cluster and public addresses are what deliveries are for, on any
		// port, the operator's port numbers included.
		{"10.244.2.9:8080", nil, ""},
		{"10.96.12.34:443", nil, ""},
		{"192.168.1.10:80", nil, ""},
		{"203.0.113.5:443", nil, ""},
		{"[2001:db8::5]:443", nil, ""},
		{"[64:ff9b::cb00:7105]:443", nil, ""},
		// An allowed range opens what it covers, and only that.
		{"127.0.0.1:80", loopbackOne, ""},
		{"[::ffff:127.0.0.1]:80", loopbackOne, ""},
		{"127.0.0.2:80", loopbackOne, refusedLoopback},
		{"[::1]:80", loopbackOne, refusedLoopback},
		{"10.96.0.1:80", services, ""},
		{"10.244.1.7:9000", pods, ""}, // a sidecar of the pod
		// ... but never the API server's port, nor the operator's own ports on any address
		// of its host, however wide the range.
		{"10.96.0.1:443", services, refusedAPIServer},
		{"10.96.0.1:443", everything, refusedAPIServer},
		{"[::ffff:10.96.0.1]:443", everything, refusedAPIServer},
		{"[64:ff9b::a60:1]:443", everything, refusedAPIServer}, // NAT64 of 10.96.0.1
		{"10.244.1.7:8080", pods, refusedOwnPort},
		{"127.0.0.1:8080", loopbackOne, refusedOwnPort},
		{"127.0.0.5:8082", loopback, refusedOwnPort},
		{"[::1]:8082", loopback, refusedOwnPort},
		{"0.0.0.0:8082", everything, refusedOwnPort},
		{"[::]:8080", everything, refusedOwnPort},
		{"[64:ff9b::7f00:1]:8080", everything, refusedOwnPort},
		{"10.244.2.9:8080", everything, ""}, // another pod's 8080
	} {
		p := NewAddressPolicy(tc.allow, protected)
		err := p.Check(netip.MustParseAddrPort(tc.addr))
		got := ""
		if err != nil {
			refused, ok := err.(*AddressNotAllowedError)
			if !ok {
				t.Fatalf("%s: error %T %v", tc.addr, err, err)
			}
			got = refused.Reason
		}
		if got != tc.want {
			t.Errorf("Check(%s) with allow %v = %q, want %q", tc.addr, tc.allow, got, tc.want)
		}
	}
}

// TestAddressPolicyLocalAPIServer: an API server on the operator's host (make run's) may
// listen on every address of it, so its port is refused on all of them, allowed or not.
func TestAddressPolicyLocalAPIServer(t *testing.T) {
	p := NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		&Protected{APIServer: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")}})
	for addr, want := range map[string]string{
		"127.0.0.1:6443": refusedAPIServer,
		"127.0.0.2:6443": refusedAPIServer,
		"[::1]:6443":     refusedAPIServer,
		"127.0.0.1:9000": "", // the console sink of make run
	} {
		got := ""
		if err := p.Check(netip.MustParseAddrPort(addr)); err != nil {
			got = err.(*AddressNotAllowedError).Reason
		}
		if got != want {
			t.Errorf("Check(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestOperatorEndpoints(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	got, err := OperatorEndpoints(context.Background(), "https://192.0.2.10:6443", []string{":8082", "127.0.0.1:8081", "0", "", "[::]:0", ":8080"})
	if err != nil {
		t.Fatal(err)
	}
	wantServers := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:6443"), netip.MustParseAddrPort("10.96.0.1:443")}
	if !slices.Equal(got.APIServer, wantServers) {
		t.Errorf("APIServer = %v, want %v", got.APIServer, wantServers)
	}
	if want := []uint16{8082, 8081, 8080}; !slices.Equal(got.Ports, want) {
		t.Errorf("Ports = %v, want %v (disabled listeners and port 0 name none)", got.Ports, want)
	}
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range ifaces {
		ip, _ := netip.AddrFromSlice(a.(*net.IPNet).IP)
		ip = ip.Unmap()
		// Loopback and link-local addresses are refused as such, with that reason.
		if want := !ip.IsLoopback() && !ip.IsLinkLocalUnicast(); slices.Contains(got.Own, ip) != want {
			t.Errorf("interface address %s: in Own %v, want %v", ip, !want, want)
		}
	}

	// A host name is resolved now: make run's API server is https://localhost:port. A URL
	// without a port has its scheme's.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for host, want := range map[string]string{"https://localhost:6443": "127.0.0.1:6443", "https://127.0.0.1": "127.0.0.1:443", "http://127.0.0.1": "127.0.0.1:80"} {
		got, err = OperatorEndpoints(context.Background(), host, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(got.APIServer, netip.MustParseAddrPort(want)) {
			t.Errorf("%s: APIServer = %v, want %s among them", host, got.APIServer, want)
		}
	}
	if _, err := OperatorEndpoints(context.Background(), "", []string{"8080"}); err == nil {
		t.Error("a listen address without a port: no error")
	}
}

// TestHTTPClientRefusesAtConnect: the check runs on the address dialled, so neither a
// literal address nor a name that resolves to it gets through, and the target never
// sees a request.
func TestHTTPClientRefusesAtConnect(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	port := target.URL[strings.LastIndex(target.URL, ":"):]

	refusing := NewHTTPClient(NewAddressPolicy(nil, nil))
	for _, url := range []string{target.URL, "http://localhost" + port, "http://[::ffff:127.0.0.1]" + port} {
		a := send(t, refusing, url)
		if a.succeeded || a.retryable || a.err != "address not allowed: loopback" || a.code != 0 {
			t.Errorf("%s: %+v, want refused for good as loopback", url, a)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the target got %d requests", hits.Load())
	}

	allowing := NewHTTPClient(NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil))
	if a := send(t, allowing, target.URL); !a.succeeded || a.code != 200 {
		t.Errorf("allowed: %+v", a)
	}
	if hits.Load() != 1 {
		t.Errorf("the target got %d requests, want 1", hits.Load())
	}

	// The same target as one of the operator's own listeners: loopback allowed or not.
	ap := netip.MustParseAddrPort(target.Listener.Addr().String())
	own := NewHTTPClient(NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, &Protected{Ports: []uint16{ap.Port()}}))
	for _, url := range []string{target.URL, "http://localhost" + port} {
		if a := send(t, own, url); a.succeeded || a.retryable || a.err != "address not allowed: the operator's own port" {
			t.Errorf("%s as the operator's own port: %+v", url, a)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("the target got %d requests, want still 1", hits.Load())
	}
}

// TestHTTPClientIgnoresProxyEnvironment: a proxy would connect on the operator's behalf,
// past the address check.
func TestHTTPClientIgnoresProxyEnvironment(t *testing.T) {
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { proxied.Add(1) }))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	// The proxy itself is reachable: only ignoring it keeps the request from going out.
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	a := send(t, NewHTTPClient(NewAddressPolicy(loopback, nil)), "http://169.254.169.254/latest/meta-data/")
	if a.err != "address not allowed: cloud metadata" || proxied.Load() != 0 {
		t.Errorf("%+v, %d requests through the proxy", a, proxied.Load())
	}
}

func send(t *testing.T, hc *http.Client, url string) attempt {
	t.Helper()
	req, err := newRequest(context.Background(), nil, "ns", &funnelv1.HTTPAction{URL: url}, []byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return req.do(context.Background(), hc, time.Now())
}
