package funnel

import (
	"strings"
	"testing"
)

// TestSignatureKnownVectors checks against RFC 4231 test case 2: the MAC is the standard
// one, so signatures made here verify anywhere, not merely against our own receiver.
func TestSignatureKnownVectors(t *testing.T) {
	body, key := []byte("what do ya want for nothing?"), []byte("Jefe")
	const (
		sha256Hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
		sha512Hex = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
	)
	for _, tc := range []struct{ algorithm, want string }{
		{HMACSHA256, "sha256=" + sha256Hex},
		{HMACSHA512, "sha512=" + sha512Hex},
		{"", "sha256=" + sha256Hex},    // the receiver's default
		{"md5", "sha256=" + sha256Hex}, // never a weaker hash
	} {
		if got := Signature(tc.algorithm, key, body); got != tc.want {
			t.Errorf("Signature(%q) = %s, want %s", tc.algorithm, got, tc.want)
		}
	}
	if a, b := Signature(HMACSHA256, key, body), Signature(HMACSHA256, key, append([]byte(nil), strings.ToUpper(string(body))...)); a == b {
		t.Error("two bodies, one signature")
	}
}
