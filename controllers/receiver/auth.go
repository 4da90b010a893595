package receiver

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// tokenMatches reports whether the header carries the expected token, as
// "Bearer <t>", "Token <t>" or the bare token. Surrounding whitespace in the Secret is
// ignored (a token file saved with a trailing newline must still work).
func tokenMatches(header string, want []byte) bool {
	want = bytes.TrimSpace(want)
	got := strings.TrimSpace(header)
	if scheme, rest, ok := strings.Cut(got, " "); ok &&
		(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Token")) {
		got = strings.TrimSpace(rest)
	}
	return got != "" && sameSecret([]byte(got), want)
}

// sameSecret compares a guess with a secret (a token, a MAC) in a time that varies with
// nothing but the guess's own length: both are hashed, and the fixed-size hashes compared
// in constant time. An attacker timing answers learns neither how much of a guess is right
// nor how long the secret is.
func sameSecret(guess, secret []byte) bool {
	g, s := sha256.Sum256(guess), sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(g[:], s[:]) == 1
}

// signatureMatches checks an HMAC of the raw body. The header may carry the MAC as hex or
// base64 (standard or URL alphabet, padded or not), optionally prefixed with
// "<algorithm>=" as GitHub-style senders do.
func signatureMatches(header string, body, key []byte, algo funnelv1.HMACAlgorithm) bool {
	sig := strings.TrimSpace(header)
	if prefix, rest, ok := strings.Cut(sig, "="); ok && strings.EqualFold(prefix, string(algo)) {
		sig = rest
	}
	if sig == "" {
		return false
	}
	mac := funnel.MAC(string(algo), key, body)
	for _, decode := range []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString,
		base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString,
		base64.RawURLEncoding.DecodeString,
	} {
		if got, err := decode(sig); err == nil && sameSecret(got, mac) {
			return true
		}
	}
	return false
}

// clientAddr is the address allowedCIDRs are checked against: the direct peer, or, when
// the peer is a trusted proxy, the right-most X-Forwarded-For entry that is not itself a
// trusted proxy. A client cannot forge its address through a proxy we do not trust.
func clientAddr(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	peer = peer.Unmap()
	if !contains(trusted, peer) {
		return peer, true
	}
	hops := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return netip.Addr{}, false // a garbled hop after trusted ones: refuse rather than guess
			}
			addr = a.Unmap()
			if !contains(trusted, addr) {
				return addr, true
			}
		}
	}
	return addr, true
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
