package synth

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
)

// clock is the fixed instant the tests generate at.
var clock = time.Date(2024, 10, 9, 13, 49, 31, 658518000, time.UTC)

func newTestGenerator(seed uint64) *Generator {
	g := New(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
	g.Now = func() time.Time { return clock }
	return g
}

// unknownType is a type the docs do not list; it must still be generated.
const unknownType = "lease_transaction.something_new"

func TestTypesAreTheKnownTypes(t *testing.T) {
	got := Types()
	if len(got) != 16 {
		t.Fatalf("Types() has %d types, want 16", len(got))
	}
	sorted := slices.Clone(got)
	sort.Strings(sorted)
	if want := funnel.KnownTypes(); !slices.Equal(sorted, want) {
		t.Errorf("Types() = %v, want the types of funnel.KnownTypes() %v", sorted, want)
	}
	got[0] = "mutated"
	if Types()[0] == "mutated" {
		t.Error("Types() returned the package's own slice")
	}
}

func TestNaturalFormat(t *testing.T) {
	tests := []struct {
		eventType string
		want      funnel.Format
	}{
		{funnel.TypeUnitReserved, funnel.FormatV3},
		{funnel.TypeUnitReleased, funnel.FormatClassic},
		{funnel.TypeStatusUpdated, funnel.FormatClassic},
		{funnel.TypeTermsUpdated, funnel.FormatClassic},
		{funnel.TypeLeaseTransactionUpdated, funnel.FormatClassic},
		{funnel.TypeFeesUpdated, funnel.FormatClassic},
		{funnel.TypeRentableItemSelected, funnel.FormatClassic},
		{funnel.TypeRentableItemDeselected, funnel.FormatClassic},
		{funnel.TypeResidentMoveIn, funnel.FormatClassic},
		{funnel.TypeResidentMoveInCanceled, funnel.FormatClassic},
		{funnel.TypeQuoteCreated, funnel.FormatClassic},
		{funnel.TypeMoveIn, funnel.FormatV3},
		{funnel.TypeMoveInCanceled, funnel.FormatV3},
		{funnel.TypeRenterCreated, funnel.FormatPartnerV2},
		{funnel.TypeRenterStatusChange, funnel.FormatPartnerV2},
		{funnel.TypeAppointmentUpdated, funnel.FormatPartnerV2},
		{"renter.deleted", funnel.FormatPartnerV2},
		{unknownType, funnel.FormatClassic},
	}
	for _, tt := range tests {
		if got := NaturalFormat(tt.eventType); got != tt.want {
			t.Errorf("NaturalFormat(%q) = %s, want %s", tt.eventType, got, tt.want)
		}
	}
}

var (
	v3TimestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)
	lowerUUIDRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
)

// TestEventParsesAndDecodes is the contract with the receiver and the
// reconcilers: every type in every format parses as that format and type,
// and its data passes the type's validation.
func TestEventParsesAndDecodes(t *testing.T) {
	g := newTestGenerator(1)
	for _, eventType := range append(Types(), unknownType) {
		for _, format := range append([]funnel.Format{""}, Formats()...) {
			want := format
			if want == "" {
				want = NaturalFormat(eventType)
			}
			t.Run(eventType+"/"+string(want), func(t *testing.T) {
				// Several bodies each: the optional parts vary between draws.
				for range 20 {
					body, err := g.Event(eventType, format)
					if err != nil {
						t.Fatalf("Event: %v", err)
					}
					checkEvent(t, body, eventType, want)
				}
			})
		}
	}
}

func checkEvent(t *testing.T, body []byte, eventType string, format funnel.Format) {
	t.Helper()
	env, err := funnel.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, body)
	}
	if env.Format != format || env.Type != eventType {
		t.Fatalf("parsed as %s %q, want %s %q", env.Format, env.Type, format, eventType)
	}
	h := funnel.Lookup(eventType)
	if d := h.Decode(env.Data); len(d.Issues) != 0 {
		t.Fatalf("Decode: %v\n%s", d.Issues, env.Data)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	switch format {
	case funnel.FormatClassic:
		if env.OccurredAt == nil || !env.OccurredAt.Equal(clock.Truncate(time.Second)) {
			t.Errorf("event_timestamp = %v, want %v", env.OccurredAt, clock.Truncate(time.Second))
		}
		if _, ok := top["idempotency_key"]; !ok {
			t.Error("classic envelope has no idempotency_key")
		}
	case funnel.FormatV3:
		var ts string
		_ = json.Unmarshal(top["timestamp"], &ts)
		if !v3TimestampRE.MatchString(ts) {
			t.Errorf("timestamp %q is not ISO with microseconds and +00:00", ts)
		}
		if env.OccurredAt == nil || !env.OccurredAt.Equal(clock) {
			t.Errorf("timestamp = %v, want %v", env.OccurredAt, clock)
		}
		if !lowerUUIDRE.MatchString(env.ID) {
			t.Errorf("id %q is not a lower-case v4 UUID", env.ID)
		}
	case funnel.FormatPartnerV2:
		if len(top) != 2 {
			t.Errorf("partner envelope has keys %v, want event and data only", keys(top))
		}
	}
}

// TestEventFieldsAsDocumented compares the data of each type that has a
// documented example (api/funnel/testdata) key for key with that example,
// nested objects included.
func TestEventFieldsAsDocumented(t *testing.T) {
	examples := map[string]string{
		funnel.TypeStatusUpdated:      "classic-lease_transaction.status_updated.json",
		funnel.TypeUnitReserved:       "v3-lease_transaction.unit_reserved.json",
		funnel.TypeMoveIn:             "v3-lease.move_in.json",
		funnel.TypeMoveInCanceled:     "v3-lease.move_in_canceled.json",
		funnel.TypeRenterCreated:      "partner-renter.created.json",
		funnel.TypeRenterStatusChange: "partner-renter.status-change.json",
		funnel.TypeAppointmentUpdated: "partner-appointment.updated.json",
	}
	g := newTestGenerator(2)
	for eventType, file := range examples {
		t.Run(eventType, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			example, err := funnel.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				body, err := g.Event(eventType, example.Format)
				if err != nil {
					t.Fatal(err)
				}
				env, err := funnel.Parse(body)
				if err != nil {
					t.Fatal(err)
				}
				if err := sameShape("data", decodeAny(t, example.Data), decodeAny(t, env.Data)); err != "" {
					t.Fatalf("%s\n%s", err, env.Data)
				}
			}
		})
	}
}

func decodeAny(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// sameShape checks that got has exactly the object keys of want, at every
// level (array elements against the example's first element); a null
// stands for any value, as nullable fields may be either.
func sameShape(path string, want, got any) string {
	if want == nil || got == nil {
		return ""
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path + ": not an object"
		}
		if wk, gk := keys(w), keys(g); !slices.Equal(wk, gk) {
			return path + ": keys " + strconv.Quote(strings.Join(gk, ",")) + ", documented " + strconv.Quote(strings.Join(wk, ","))
		}
		for k := range w {
			if err := sameShape(path+"."+k, w[k], g[k]); err != "" {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return path + ": not an array"
		}
		if len(w) > 0 {
			for i := range g {
				if err := sameShape(path+"["+strconv.Itoa(i)+"]", w[0], g[i]); err != "" {
					return err
				}
			}
		}
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestEventFreshIdentity: two calls never name the same FunnelEvent, also
// for Partner v2, whose name is a hash of the body.
func TestEventFreshIdentity(t *testing.T) {
	g := newTestGenerator(3)
	for _, eventType := range append(Types(), unknownType) {
		for _, format := range Formats() {
			t.Run(eventType+"/"+string(format), func(t *testing.T) {
				names := map[string]bool{}
				for range 50 {
					body, err := g.Event(eventType, format)
					if err != nil {
						t.Fatal(err)
					}
					name, err := funnel.EventName("funnel", body, time.Now())
					if err != nil {
						t.Fatal(err)
					}
					if names[name] {
						t.Fatalf("object name %s generated twice", name)
					}
					names[name] = true
				}
			})
		}
	}
}

func TestEventDeterministic(t *testing.T) {
	run := func(seed uint64) [][]byte {
		g := newTestGenerator(seed)
		var out [][]byte
		for _, eventType := range append(Types(), unknownType) {
			for _, format := range Formats() {
				body, err := g.Event(eventType, format)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, body)
			}
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("same seed, different body %d:\n%s\n%s", i, a[i], b[i])
		}
	}
	same := 0
	for i := range a {
		if bytes.Equal(a[i], c[i]) {
			same++
		}
	}
	if same == len(a) {
		t.Error("seeds 42 and 43 gave identical output")
	}
}

// TestClassicIDsBeyondFloat64: some Classic ids are above 2^53, where a
// float64 would round them, and they parse as their exact digits.
func TestClassicIDsBeyondFloat64(t *testing.T) {
	g := newTestGenerator(4)
	large := 0
	for range 200 {
		body, err := g.Event(funnel.TypeStatusUpdated, funnel.FormatClassic)
		if err != nil {
			t.Fatal(err)
		}
		env, err := funnel.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		id, err := strconv.ParseUint(env.ID, 10, 64)
		if err != nil {
			t.Fatalf("id %s: %v", env.ID, err)
		}
		if id > 1<<53 {
			large++
		}
	}
	if large == 0 {
		t.Error("no Classic id above 2^53 in 200 events")
	}
}

func TestEventErrors(t *testing.T) {
	g := newTestGenerator(5)
	if _, err := g.Event(funnel.TypeStatusUpdated, "Legacy"); err == nil {
		t.Error("unknown format: no error")
	}
	if _, err := g.Event("", funnel.FormatClassic); err == nil {
		t.Error("empty type: no error")
	}
}

func TestEventUsesWallClockByDefault(t *testing.T) {
	g := New(rand.New(rand.NewPCG(6, 6)))
	before := time.Now().Add(-time.Second)
	body, err := g.Event(funnel.TypeMoveIn, "")
	if err != nil {
		t.Fatal(err)
	}
	env, err := funnel.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if env.OccurredAt == nil || env.OccurredAt.Before(before) || env.OccurredAt.After(time.Now().Add(time.Second)) {
		t.Errorf("timestamp %v is not now", env.OccurredAt)
	}
}
