package receiver

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

func TestTokenMatches(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"s3cret", true},
		{"Bearer s3cret", true},
		{"bearer s3cret", true},
		{"Token s3cret", true},
		{"  Bearer   s3cret  ", true},
		{"Basic s3cret", false},
		{"Bearer s3cret2", false},
		{"Bearer s3cre", false},
		{"Bearer", false},
		{"", false},
		{"s3cret s3cret", false},
	} {
		for _, stored := range []string{"s3cret", "s3cret\n", " s3cret "} {
			if got := tokenMatches(tc.header, []byte(stored)); got != tc.want {
				t.Errorf("tokenMatches(%q) with Secret %q = %v, want %v", tc.header, stored, got, tc.want)
			}
		}
	}
}

func TestSignatureMatches(t *testing.T) {
	body := []byte(`{"event":"renter.created","data":{}}`)
	mac := funnel.MAC(funnel.HMACSHA256, []byte("key"), body)
	for _, tc := range []struct {
		name, header string
		algo         funnelv1.HMACAlgorithm
		want         bool
	}{
		{"hex", hexOf(mac), funnelv1.HMACSHA256, true},
		{"prefixed hex", "sha256=" + hexOf(mac), funnelv1.HMACSHA256, true},
		{"upper-case prefix", "SHA256=" + hexOf(mac), funnelv1.HMACSHA256, true},
		{"base64", b64(mac), funnelv1.HMACSHA256, true},
		{"prefix of the other algorithm", "sha512=" + hexOf(mac), funnelv1.HMACSHA256, false},
		{"truncated", hexOf(mac)[:32], funnelv1.HMACSHA256, false},
		{"sha256 MAC for sha512", hexOf(mac), funnelv1.HMACSHA512, false},
		{"empty", "", funnelv1.HMACSHA256, false},
		{"garbage", "sha256=zz", funnelv1.HMACSHA256, false},
	} {
		if got := signatureMatches(tc.header, body, []byte("key"), tc.algo); got != tc.want {
			t.Errorf("%s: signatureMatches(%q) = %v, want %v", tc.name, tc.header, got, tc.want)
		}
	}
}

// TestSignatureKnownVectors checks against RFC 4231 test case 2, so the MAC is the
// standard one senders compute, not merely self-consistent.
func TestSignatureKnownVectors(t *testing.T) {
	body, key := []byte("what do ya want for nothing?"), []byte("Jefe")
	for algo, mac := range map[funnelv1.HMACAlgorithm]string{
		funnelv1.HMACSHA256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		funnelv1.HMACSHA512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
	} {
		if !signatureMatches(string(algo)+"="+mac, body, key, algo) {
			t.Errorf("%s: RFC 4231 test vector not accepted", algo)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
		ok           bool
	}{
		{"direct peer", "192.0.2.1:5000", nil, nil, "192.0.2.1", true},
		{"header ignored without trusted proxies", "192.0.2.1:5000", []string{"198.51.100.7"}, nil, "192.0.2.1", true},
		{"header ignored from an untrusted peer", "192.0.2.1:5000", []string{"198.51.100.7"}, trusted, "192.0.2.1", true},
		{"trusted proxy: right-most hop", "10.0.0.2:5000", []string{"203.0.113.9, 198.51.100.7"}, trusted, "198.51.100.7", true},
		{"trusted hops skipped across headers", "10.0.0.2:5000", []string{"198.51.100.7", "10.1.1.1"}, trusted, "198.51.100.7", true},
		{"only trusted hops: the left-most", "10.0.0.2:5000", []string{"10.9.9.9"}, trusted, "10.9.9.9", true},
		{"trusted proxy without header", "10.0.0.2:5000", nil, trusted, "10.0.0.2", true},
		{"garbled hop is refused", "10.0.0.2:5000", []string{"not-an-ip"}, trusted, "", false},
		{"IPv4-mapped IPv6 peer", "[::ffff:192.0.2.1]:5000", nil, nil, "192.0.2.1", true},
		{"IPv6 peer", "[2001:db8::1]:5000", nil, nil, "2001:db8::1", true},
		{"unparsable peer", "somewhere", nil, nil, "", false},
	} {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, ok := clientAddr(r, tc.trusted)
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("%s: clientAddr = %v, %v; want %s, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"":                                  true,
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON":                  true,
		"application/vnd.funnel+json":       true,
		"text/plain":                        false,
		"application/x-www-form-urlencoded": false,
		"application/jsonx":                 false,
		"garbage;;":                         false,
	} {
		if got := isJSON(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
func b64(b []byte) string   { return base64.StdEncoding.EncodeToString(b) }

// TestTokenCheckTimeLeaksNothing times wrong tokens against a long one: a guess right but
// for its last byte, one wrong from its first byte, and one a byte longer. A comparison
// that returns at the first differing byte, or at once on a length mismatch, makes them
// differ by far more than the bound; hashing both sides first makes them cost the same.
// The fastest of many rounds is compared, which the rest of the machine cannot slow down.
func TestTokenCheckTimeLeaksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	secret := bytes.Repeat([]byte("k"), 1<<20)
	guesses := map[string]string{
		"right but the last byte": string(secret[:len(secret)-1]) + "x",
		"wrong from the first":    "x" + string(secret[1:]),
		"one byte longer":         string(secret) + "k",
	}
	fastest := map[string]time.Duration{}
	for range 40 {
		for name, guess := range guesses { // map order interleaves the guesses
			start := time.Now()
			if tokenMatches(guess, secret) {
				t.Fatalf("%s: accepted", name)
			}
			if d := time.Since(start); fastest[name] == 0 || d < fastest[name] {
				fastest[name] = d
			}
		}
	}
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for _, d := range fastest {
		lo, hi = min(lo, d), max(hi, d)
	}
	t.Logf("fastest check per guess: %v", fastest)
	if float64(hi) > 1.5*float64(lo) {
		t.Errorf("checking wrong guesses takes %v to %v: the time says how much of a guess is right", lo, hi)
	}
}
