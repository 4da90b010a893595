package receiver

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// gaugeOf reads one series of a silence gauge; ok is false when the series does not exist.
func gaugeOf(t *testing.T, name, label string) (float64, bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "receiver") == label {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestSilenceGauges(t *testing.T) {
	created := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return created.Add(time.Duration(s) * time.Second) }
	const rcv = "silence-test/funnel"
	type want struct {
		request, accepted float64
		exist             bool
	}
	steps := []struct {
		name string
		do   func(*silence)
		want want
	}{
		{"an answer for a receiver not in the cache leaves no series",
			func(s *silence) { s.observe(rcv, http.StatusOK, at(5)) }, want{}},
		{"a new receiver starts at its creation time",
			func(s *silence) { s.add(rcv, created) }, want{1_700_000_000, 1_700_000_000, true}},
		{"a refused request is a request, not an accepted event",
			func(s *silence) { s.observe(rcv, http.StatusUnauthorized, at(10)) }, want{1_700_000_010, 1_700_000_000, true}},
		{"an acknowledged event moves both",
			func(s *silence) { s.observe(rcv, http.StatusOK, at(20)) }, want{1_700_000_020, 1_700_000_020, true}},
		{"the cache seeing the receiver again does not move them back",
			func(s *silence) { s.add(rcv, created) }, want{1_700_000_020, 1_700_000_020, true}},
		{"unknown paths are not attributed to any receiver",
			func(s *silence) { s.observe("", http.StatusNotFound, at(30)) }, want{1_700_000_020, 1_700_000_020, true}},
		{"a deleted receiver loses its series",
			func(s *silence) { s.remove(rcv) }, want{}},
		{"a request still in flight when its receiver went does not bring them back",
			func(s *silence) { s.observe(rcv, http.StatusOK, at(40)) }, want{}},
	}
	s := newSilence()
	for _, step := range steps {
		step.do(s)
		req, okReq := gaugeOf(t, "funnel_webhook_last_request_timestamp_seconds", rcv)
		acc, okAcc := gaugeOf(t, "funnel_webhook_last_accepted_timestamp_seconds", rcv)
		if okReq != step.want.exist || okAcc != step.want.exist {
			t.Fatalf("%s: series exist = %v/%v, want %v", step.name, okReq, okAcc, step.want.exist)
		}
		if req != step.want.request || acc != step.want.accepted {
			t.Errorf("%s: last request %v, last accepted %v; want %v, %v", step.name, req, acc, step.want.request, step.want.accepted)
		}
	}
}
