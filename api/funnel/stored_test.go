package funnel

import (
	"bytes"
	"encoding/json"
	"testing"

	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// apiServerRoundTrip does to a custom resource's JSON what the API server does when it
// stores it: decode as apimachinery does (integers within 64 bits as int64, other numbers
// as float64) and encode again with encoding/json.
func apiServerRoundTrip(t testing.TB, raw []byte) []byte {
	t.Helper()
	var v any
	if err := utiljson.Unmarshal(raw, &v); err != nil {
		t.Fatalf("the API server would refuse %s: %v", raw, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %v: %v", v, err)
	}
	return out
}

func storedJSON(t testing.TB, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteStoredJSON(&b, raw); err != nil {
		t.Fatalf("WriteStoredJSON(%s): %v", raw, err)
	}
	return b.String()
}

func TestWriteStoredJSONSurvivesTheAPIServer(t *testing.T) {
	for _, raw := range []string{
		`{"a":1,"b":-0,"c":-0.0,"d":1.0,"e":2.5e5,"f":1.50e+2,"g":0.1,"h":1e-7}`,
		`{"int64":9223372036854775807,"min":-9223372036854775808,"past":9223372036854775808,"u64":18446744073709551615}`,
		`{"big":123456789012345678901234567890,"huge":1e300,"tiny":5e-324,"float53":9007199254740993.0,"exact":9007199254740993}`,
		`{"e20":1e20,"e21":1e21,"n":-1.5e21,"frac":-12.75}`,
		`{"s":"\u00e9\/<&>\u2028","k\u0065y":[null,true,false,{"z":1,"a":2}],"dup":1,"dup":2}`,
		`{"nested":{"b":[1.0,2,3e0],"a":{"x":"\ud83d\ude00","y":"\ud800"}}}`,
	} {
		before := storedJSON(t, []byte(raw))
		stored := apiServerRoundTrip(t, []byte(raw))
		if after := storedJSON(t, stored); after != before {
			t.Errorf("%s:\n before %s\n stored %s\n after  %s", raw, before, stored, after)
		}
		if again := storedJSON(t, apiServerRoundTrip(t, stored)); again != before {
			t.Errorf("%s: stored twice gives %s, want %s", raw, again, before)
		}
	}
}

func TestWriteStoredJSONTellsValuesApart(t *testing.T) {
	same := [][2]string{
		{`{"a":250000}`, `{ "a" : 2.5e5 }`},
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{`{"a":"\u0041"}`, `{"a":"A"}`},
		{`{"a":18446744073709551615}`, `{"a":18446744073709551616}`}, // rounded alike: what is still lost
	}
	for _, p := range same {
		if x, y := storedJSON(t, []byte(p[0])), storedJSON(t, []byte(p[1])); x != y {
			t.Errorf("%s and %s differ: %s vs %s", p[0], p[1], x, y)
		}
	}
	different := [][2]string{
		{`{"a":1}`, `{"a":"1"}`},
		{`{"a":1}`, `{"a":1.5}`},
		{`{"a":9007199254740993}`, `{"a":9007199254740992}`},
		{`{"a":[1,2]}`, `{"a":[2,1]}`},
		{`{"a":null}`, `{}`},
	}
	for _, p := range different {
		if x, y := storedJSON(t, []byte(p[0])), storedJSON(t, []byte(p[1])); x == y {
			t.Errorf("%s and %s give the same %s", p[0], p[1], x)
		}
	}
	for _, bad := range []string{`{"a":`, "{\"a\":\"\xff\"}", ``} {
		if err := WriteStoredJSON(new(bytes.Buffer), []byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzWriteStoredJSON(f *testing.F) {
	for _, s := range []string{`{"a":1.0e2,"b":[1,-0,0.5]}`, `{"u":18446744073709551615,"s":"\u00e9"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var before bytes.Buffer
		if WriteStoredJSON(&before, raw) != nil || jsonKind(raw) != "object" {
			return
		}
		var v any
		if utiljson.Unmarshal(raw, &v) != nil {
			return // the API server refuses it too (a number out of float64's range)
		}
		stored := apiServerRoundTrip(t, raw)
		if after := storedJSON(t, stored); after != before.String() {
			t.Fatalf("%s: %s before the API server, %s after (stored %s)", raw, before.String(), after, stored)
		}
	})
}
