package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// exampleEvent turns a documented example payload into the FunnelEvent the receiver stores.
func exampleEvent(t testing.TB, file string) *funnelv1.FunnelEvent {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "api", "funnel", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	env, err := funnel.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	ev := &funnelv1.FunnelEvent{}
	ev.Namespace, ev.Name = "leasing", funnel.Naming{Receiver: "funnel"}.Identify(env, time.Now()).Name
	ev.Labels = funnel.SubjectLabels(env.Type, env.Data)
	ev.Spec = funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.EventFormat(env.Format), EventID: env.ID, Type: env.Type,
		IdempotencyKey: env.IdempotencyKey, ReceivedAt: metav1.NewMicroTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)),
		Data: runtime.RawExtension{Raw: env.Data}}
	if env.OccurredAt != nil {
		t := metav1.NewMicroTime(*env.OccurredAt)
		ev.Spec.OccurredAt = &t
	}
	return ev
}

var examples = []string{
	"classic-lease_transaction.status_updated.json",
	"v3-lease_transaction.unit_reserved.json",
	"v3-lease.move_in.json",
	"v3-lease.move_in_canceled.json",
	"partner-renter.created.json",
	"partner-renter.status-change.json",
	"partner-appointment.updated.json",
}

func TestTypeMatches(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		typ      string
		want     bool
	}{
		{[]string{"*"}, "anything.at_all", true},
		{[]string{"lease_transaction.*"}, "lease_transaction.status_updated", true},
		{[]string{"lease_transaction.*"}, "lease.move_in", false},
		{[]string{"lease.*"}, "lease_transaction.status_updated", false},
		{[]string{"lease.*"}, "lease.move_in_canceled", true},
		{[]string{"lease.move_in"}, "lease.move_in", true},
		{[]string{"lease.move_in"}, "lease.move_in_canceled", false},
		{[]string{"quote.created", "renter.*"}, "renter.status-change", true},
		{[]string{"quote.created", "renter.*"}, "appointment.updated", false},
		{nil, "quote.created", false},
		{[]string{"lease.move_in"}, "Lease.Move_In", true},
		{[]string{"Renter.*"}, "renter.created", true},
		{[]string{"renter.*"}, "RENTER.CREATED", true},
	} {
		if got := TypeMatches(tc.patterns, tc.typ); got != tc.want {
			t.Errorf("TypeMatches(%v, %q) = %v, want %v", tc.patterns, tc.typ, got, tc.want)
		}
	}
}

// TestFiltersOverExamples evaluates realistic filters over every documented example.
func TestFiltersOverExamples(t *testing.T) {
	filters := map[string]string{
		"approved":   `event.type == 'lease_transaction.status_updated' && event.data.current_status == 'Approved'`,
		"community":  `has(event.data.community_id) && event.data.community_id == 43522`,
		"v3":         `event.format == 'V3'`,
		"rent":       `has(event.data.charges) && event.data.charges.exists(c, c.pms_identifier == 'rent' && c.amount >= 250000)`,
		"recent":     `has(event.occurredAt) && event.occurredAt > timestamp('2024-01-01T00:00:00Z')`,
		"label":      `'funnel.leasing.dev/renter-id' in event.labels && event.labels['funnel.leasing.dev/renter-id'] == '456678'`,
		"people":     `has(event.data.people) && event.data.people.size() == 2 && event.data.people[0].email.endsWith('@example.com')`,
		"tour":       `event.type.startsWith('appointment.') && event.data.status in ['completed', 'no-show']`,
		"partner":    `!has(event.occurredAt) && event.id == ''`,
		"string-ext": `event.type.split('.')[0] == 'lease'`,
	}
	want := map[string][]string{
		"approved":   {"classic-lease_transaction.status_updated.json"},
		"community":  {"classic-lease_transaction.status_updated.json"},
		"v3":         {"v3-lease_transaction.unit_reserved.json", "v3-lease.move_in.json", "v3-lease.move_in_canceled.json"},
		"rent":       {"v3-lease.move_in.json"},
		"recent":     {"v3-lease_transaction.unit_reserved.json"},
		"label":      {"partner-renter.created.json", "partner-renter.status-change.json"},
		"people":     {"partner-renter.created.json"},
		"tour":       {"partner-appointment.updated.json"},
		"partner":    {"partner-renter.created.json", "partner-renter.status-change.json", "partner-appointment.updated.json"},
		"string-ext": {"v3-lease.move_in.json", "v3-lease.move_in_canceled.json"},
	}
	for name, expr := range filters {
		f, err := CompileFilter(expr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for _, file := range examples {
			in, err := EventInput(exampleEvent(t, file))
			if err != nil {
				t.Fatal(err)
			}
			ok, err := f.Match(context.Background(), in)
			if err != nil {
				t.Fatalf("%s on %s: %v", name, file, err)
			}
			if ok {
				got = append(got, file)
			}
		}
		if strings.Join(got, ",") != strings.Join(want[name], ",") {
			t.Errorf("%s matched %v, want %v", name, got, want[name])
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for expr, want := range map[string]string{
		`event.data.current_status ==`: "Syntax error",
		`1 + 'x' == 2`:                 "no matching overload",
		`event.type + 1`:               "must evaluate to a bool",
		`'not a bool'`:                 "must evaluate to a bool",
		`undeclared == 1`:              "undeclared reference",
		`event.type.frobnicate()`:      "undeclared reference",
	} {
		if _, err := CompileFilter(expr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CompileFilter(%q) = %v, want an error containing %q", expr, err, want)
		}
	}
	// A missing field is a runtime error, reported rather than silently false.
	f, err := CompileFilter(`event.data.no_such_field == 1`)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := EventInput(exampleEvent(t, examples[0]))
	if _, err := f.Match(context.Background(), in); err == nil || !strings.Contains(err.Error(), "no_such_field") {
		t.Errorf("missing field: err = %v", err)
	}
	// The cost limit or the time limit, whichever comes first, stops runaway expressions.
	f, err = CompileFilter(`[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(g, a+b+c+d+e+g > 0))))))`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.Match(context.Background(), in); err == nil ||
		!(strings.Contains(err.Error(), "cost limit") || strings.Contains(err.Error(), "interrupted")) {
		t.Errorf("runaway filter: err = %v, want a cost or time limit error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("runaway filter ran for %s", d)
	}
}

func TestEventInputKeepsIntegersExact(t *testing.T) {
	ev := exampleEvent(t, examples[0])
	ev.Spec.Data.Raw = []byte(`{"big": 9007199254740993, "huge": 18446744073709551615, "frac": 1.5, "neg": -3}`)
	in, err := EventInput(ev)
	if err != nil {
		t.Fatal(err)
	}
	data := in["data"].(map[string]any)
	if data["big"] != int64(9007199254740993) || data["huge"] != uint64(18446744073709551615) || data["frac"] != 1.5 || data["neg"] != int64(-3) {
		t.Errorf("data = %#v", data)
	}
	f, _ := CompileFilter(`event.data.big == 9007199254740993`)
	if ok, err := f.Match(context.Background(), in); !ok || err != nil {
		t.Errorf("exact comparison above 2^53: %v, %v", ok, err)
	}
}

func TestBackoff(t *testing.T) {
	exp := policyOf(funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(time.Second), MaxBackoff: funnelv1.NewDuration(10 * time.Second)})
	lin := exp
	lin.backoff = funnelv1.BackoffLinear
	for _, tc := range []struct {
		p       policy
		attempt int32
		want    time.Duration
	}{
		{exp, 1, time.Second}, {exp, 2, 2 * time.Second}, {exp, 3, 4 * time.Second}, {exp, 4, 8 * time.Second},
		{exp, 5, 10 * time.Second}, {exp, 100, 10 * time.Second},
		{lin, 1, time.Second}, {lin, 3, 3 * time.Second}, {lin, 11, 10 * time.Second},
	} {
		if got := tc.p.wait(tc.attempt); got != tc.want {
			t.Errorf("%s wait(%d) = %s, want %s", tc.p.backoff, tc.attempt, got, tc.want)
		}
	}
	def := policyOf(funnelv1.DeliveryPolicy{})
	if def.retries != 5 || def.delay != time.Second || def.maxBackoff != 5*time.Minute || def.backoff != funnelv1.BackoffExponential {
		t.Errorf("defaults = %+v", def)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"30":                            30 * time.Second,
		"0":                             0,
		"Thu, 01 Jan 2026 12:01:00 GMT": time.Minute,
		"Thu, 01 Jan 2026 11:00:00 GMT": 0,
	} {
		got, ok := retryAfter(h, now)
		if !ok || got != want {
			t.Errorf("retryAfter(%q) = %s, %v; want %s", h, got, ok, want)
		}
	}
	for _, h := range []string{"", "soon", "-5"} {
		if _, ok := retryAfter(h, now); ok {
			t.Errorf("retryAfter(%q) accepted", h)
		}
	}
}

// TestOriginalBody rebuilds each example in its own format: parsed again, it is the same event.
func TestOriginalBody(t *testing.T) {
	for _, file := range examples {
		ev := exampleEvent(t, file)
		body, err := originalBody(ev)
		if err != nil {
			t.Fatal(err)
		}
		env, err := funnel.Parse(body)
		if err != nil {
			t.Fatalf("%s: rebuilt body does not parse: %v\n%s", file, err, body)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, ev.Spec.Data.Raw); err != nil {
			t.Fatal(err)
		}
		if string(env.Format) != string(ev.Spec.Format) || env.ID != ev.Spec.EventID || env.Type != ev.Spec.Type ||
			string(env.Data) != compact.String() {
			t.Errorf("%s: rebuilt %s", file, body)
		}
		if (env.OccurredAt == nil) != (ev.Spec.OccurredAt == nil) ||
			(env.OccurredAt != nil && !env.OccurredAt.Equal(ev.Spec.OccurredAt.Time)) {
			t.Errorf("%s: occurredAt %v, want %v", file, env.OccurredAt, ev.Spec.OccurredAt)
		}
	}
}

func TestEnvelopeBody(t *testing.T) {
	ev := exampleEvent(t, examples[0])
	body, err := eventBody(ev, "Application 74824: Submitted → Approved", funnelv1.BodyEnvelope)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got["name"] != ev.Name || !strings.HasPrefix(ev.Name, "evt-8932127-") || got["id"] != "8932127" || got["type"] != "lease_transaction.status_updated" ||
		got["format"] != "Classic" || got["occurredAt"] != "2023-03-29T04:27:08Z" || got["summary"] != "Application 74824: Submitted → Approved" {
		t.Errorf("envelope = %s", body)
	}
	if !strings.Contains(string(body), `"data":{"lease_transaction_id":74824`) {
		t.Errorf("data not verbatim: %s", body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	ev := exampleEvent(t, examples[0])
	if got := IdempotencyKey(ev, "pms"); got != "leasing/"+ev.Name+"/pms" {
		t.Errorf("first delivery: %q", got)
	}
	ev.Status.ObservedReplay, ev.Status.Replays = "again", 2
	if got := IdempotencyKey(ev, "pms"); got != "leasing/"+ev.Name+"/pms/replay-2" {
		t.Errorf("second replay: %q", got)
	}
}

func TestJobName(t *testing.T) {
	ev := exampleEvent(t, "v3-lease.move_in.json")
	a, b := JobName(ev, "pms", false, 1), JobName(ev, "pms", false, 1)
	if a != b || len(a) > 63 {
		t.Errorf("JobName not stable or too long: %q %q", a, b)
	}
	if JobName(ev, "other", false, 1) == a || JobName(ev, "pms", true, 1) == a {
		t.Error("subscription and dead letter must give other names")
	}
	ev.Status.ObservedReplay, ev.Status.Replays = "r1", 1
	r1 := JobName(ev, "pms", false, 1)
	if r1 == a {
		t.Error("a replay must give another name, so the Job runs again")
	}
	ev.Status.ObservedReplay, ev.Status.Replays = "", 2
	if n := JobName(ev, "pms", false, 1); n == a || n == r1 {
		t.Error("a replay back to a former annotation value must give another name")
	}
	// The names Jobs had before replays were counted: a Job running across the upgrade is
	// adopted, not run a second time (an event named before names carried a hash).
	ev.Name = "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d5"
	ev.Status.ObservedReplay, ev.Status.Replays = "", 0
	if n := JobName(ev, "pms", false, 1); n != "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d5-db075ac5c2" {
		t.Errorf("JobName before any replay = %q, changed since the previous release", n)
	}
	ev.Status.ObservedReplay = "r1"
	if n := JobName(ev, "pms", false, 1); n != "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d5-4a0ce36a3b" {
		t.Errorf("JobName of an event replayed before replays were counted = %q, changed since the previous release", n)
	}
	if n := JobName(ev, "pms", false, 2); n == JobName(ev, "pms", false, 1) || n == JobName(ev, "pms", false, 3) {
		t.Error("each attempt must have its own Job, so a retry runs again")
	}
	ev.Name = "evt-p-" + strings.Repeat("a", 32)
	if n := JobName(ev, strings.Repeat("s", 253), false, 1); len(n) > 63 {
		t.Errorf("long names: %q", n)
	}
}

// FuzzFilter: compiling and evaluating any filter over any data never panics, and an
// evaluation stays within its limits.
func FuzzFilter(f *testing.F) {
	f.Add(`event.data.current_status == 'Approved'`, `{"current_status":"Approved"}`)
	f.Add(`has(event.data.charges) && event.data.charges.exists(c, c.amount > 100)`, `{"charges":[{"amount":250000}]}`)
	f.Add(`event.type.startsWith('lease') && event.labels.size() > 0`, `{}`)
	f.Add(`event.data.a.b.c == 1`, `{"a":{"b":{"c":1}}}`)
	f.Add(`int(event.data.n) / 0 == 1`, `{"n":18446744073709551615}`)
	f.Add(`event.occurredAt < now`, `{"x":1e400}`)
	f.Fuzz(func(t *testing.T, expr, data string) {
		filter, err := CompileFilter(expr)
		if err != nil {
			return
		}
		ev := &funnelv1.FunnelEvent{}
		ev.Name, ev.Spec.Type, ev.Spec.Format = "evt-1", "lease.move_in", funnelv1.FormatV3
		ev.Labels = map[string]string{"funnel.leasing.dev/receiver": "funnel"}
		ev.Spec.Data.Raw = []byte(data)
		in, err := EventInput(ev)
		if err != nil {
			return
		}
		start := time.Now()
		_, _ = filter.Match(context.Background(), in)
		// The slack absorbs a loaded machine under -race (one string operation is not
		// interruptible); a runaway evaluation would run for minutes or exhaust memory.
		if d := time.Since(start); d > FilterTimeout+5*time.Second {
			t.Fatalf("evaluation of %q ran for %s", expr, d)
		}
	})
}
