package funnel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exampleFiles are the payloads from Funnel's docs, copied into testdata.
var exampleFiles = []string{
	"classic-lease_transaction.status_updated.json",
	"partner-appointment.updated.json",
	"partner-renter.created.json",
	"partner-renter.status-change.json",
	"v3-lease.move_in.json",
	"v3-lease.move_in_canceled.json",
	"v3-lease_transaction.unit_reserved.json",
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("reading testdata: %v", err)
	}
	return b
}

func mustParse(tb testing.TB, body []byte) *Envelope {
	tb.Helper()
	env, err := Parse(body)
	if err != nil {
		tb.Fatalf("Parse(%s): %v", body, err)
	}
	return env
}

// dataOfExample cuts the data object out of an example by hand: in every
// example it is the last member, after `"data": ` or `"event_data": `, and
// ends at the closing brace before the envelope's own.
func dataOfExample(tb testing.TB, body []byte) []byte {
	tb.Helper()
	key := []byte(`"data": `)
	if bytes.Contains(body, []byte(`"event_data": `)) {
		key = []byte(`"event_data": `)
	}
	start := bytes.Index(body, key) + len(key)
	end := bytes.LastIndexByte(bytes.TrimRight(body, " \n"), '}')
	end = bytes.LastIndexByte(body[:end], '}')
	if start < len(key) || end < start {
		tb.Fatalf("cannot find data in %s", body)
	}
	return body[start : end+1]
}

func sha256Hex32(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:32]
}

// isDNSSubdomain checks the Kubernetes object name rule, written
// independently of the code under test.
func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
			if !alnum && (c != '-' || i == 0 || i == len(label)-1) {
				return false
			}
		}
	}
	return true
}
