package delivery

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

func TestAddressPolicy(t *testing.T) {
	apiServer := map[netip.Addr]string{
		netip.MustParseAddr("10.96.0.1"):  refusedAPIServer,
		netip.MustParseAddr("10.244.1.7"): refusedOwn,
	}
	loopbackOne := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		addr  string
		allow []netip.Prefix
		want  string // the reason, "" when allowed
	}{
		{"127.0.0.1", nil, refusedLoopback},
		{"127.8.9.10", nil, refusedLoopback},
		{"::1", nil, refusedLoopback},
		{"::ffff:127.0.0.1", nil, refusedLoopback},
		{"169.254.169.254", nil, refusedMetadata},
		{"fd00:ec2::254", nil, refusedMetadata},
		{"100.100.100.200", nil, refusedMetadata},
		{"169.254.10.1", nil, refusedLinkLocal},
		{"fe80::1", nil, refusedLinkLocal},
		{"0.0.0.0", nil, refusedUnspecified},
		{"0.1.2.3", nil, refusedUnspecified},
		{"::", nil, refusedUnspecified},
		{"224.0.0.1", nil, refusedMulticast},
		{"ff02::1", nil, refusedMulticast},
		{"ff05::2", nil, refusedMulticast},
		{"10.96.0.1", nil, refusedAPIServer},
		{"::ffff:10.96.0.1", nil, refusedAPIServer},
		{"10.244.1.7", nil, refusedOwn},
		{"64:ff9b::a9fe:a9fe", nil, refusedMetadata}, // NAT64 of 169.254.169.254
		{"64:ff9b::7f00:1", nil, refusedLoopback},
		// Ordinary in-cluster and public addresses are what deliveries are for.
		{"10.244.2.9", nil, ""},
		{"10.96.12.34", nil, ""},
		{"192.168.1.10", nil, ""},
		{"203.0.113.5", nil, ""},
		{"2001:db8::5", nil, ""},
		{"64:ff9b::cb00:7105", nil, ""},
		// An allowed range opens what it covers, and only that.
		{"127.0.0.1", loopbackOne, ""},
		{"::ffff:127.0.0.1", loopbackOne, ""},
		{"127.0.0.2", loopbackOne, refusedLoopback},
		{"::1", loopbackOne, refusedLoopback},
		{"10.96.0.1", []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}, ""},
	} {
		p := NewAddressPolicy(tc.allow, apiServer)
		err := p.Check(netip.MustParseAddr(tc.addr))
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

func TestOperatorAddresses(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	got, err := OperatorAddresses(context.Background(), "https://192.0.2.10:6443")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.96.0.1", "192.0.2.10"} {
		if got[netip.MustParseAddr(a)] != refusedAPIServer {
			t.Errorf("%s: %q, want the API server", a, got[netip.MustParseAddr(a)])
		}
	}
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range ifaces {
		ip, _ := netip.AddrFromSlice(a.(*net.IPNet).IP)
		ip = ip.Unmap()
		want := refusedOwn
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			want = "" // refused as such, with that reason
		}
		if got[ip] != want {
			t.Errorf("interface address %s: %q, want %q", ip, got[ip], want)
		}
	}

	// A host name is resolved now: make run's API server is https://localhost:port.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	got, err = OperatorAddresses(context.Background(), "https://localhost:6443")
	if err != nil {
		t.Fatal(err)
	}
	if got[netip.MustParseAddr("127.0.0.1")] != refusedAPIServer {
		t.Errorf("localhost: %v", got)
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
