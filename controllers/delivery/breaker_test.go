package delivery

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// TestBreaker walks one subscription's circuit breaker through its states on a fixed
// clock: closed while failures are fewer than the threshold, open after, one probe at a
// time with a doubling interval, closed by an answer.
func TestBreaker(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sub := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{UID: "s1", Namespace: "leasing", Name: "pms"},
		Spec: funnelv1.FunnelSubscriptionSpec{Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://pms"}},
			Delivery: funnelv1.DeliveryPolicy{MaxBackoff: funnelv1.NewDuration(25 * time.Second),
				CircuitBreaker: &funnelv1.CircuitBreaker{ConsecutiveFailures: ptr.To[int32](3), ProbeInterval: funnelv1.NewDuration(10 * time.Second)}}}}
	var b breakers
	admit := func(who string, want bool, wantWait time.Duration) {
		t.Helper()
		if ok, wait := b.admit(sub, who, now); ok != want || wait != wantWait {
			t.Fatalf("admit %s at %s: %v, wait %v; want %v, %v", who, now.Format(time.TimeOnly), ok, wait, want, wantWait)
		}
	}
	record := func(who string, failed bool, wantOpen bool) {
		t.Helper()
		if c := b.record(sub, who, failed, "HTTP 503 Service Unavailable", now); c.open != wantOpen {
			t.Fatalf("record %s failed=%v: open %v, want %v", who, failed, c.open, wantOpen)
		}
	}

	for _, who := range []string{"a/0/1", "b/0/1"} {
		admit(who, true, 0)
		record(who, true, false)
	}
	record("c/0/1", false, false) // an answer resets the count
	for _, who := range []string{"a/0/2", "b/0/2"} {
		record(who, true, false)
	}
	record("c/0/2", true, true)

	admit("d/0/1", false, 10*time.Second) // everybody waits for the probe
	now = now.Add(10 * time.Second)
	admit("d/0/1", true, 0)               // the first one due probes
	admit("d/0/1", true, 0)               // and keeps its turn while under way
	admit("e/0/1", false, 10*time.Second) // nobody else meanwhile
	record("a/0/3", true, true)           // an attempt from before the opening
	record("d/0/1", true, true)           // the probe failed: the next in twice the interval
	admit("e/0/1", false, 20*time.Second)
	now = now.Add(20 * time.Second)
	admit("e/0/1", true, 0)
	record("e/0/1", true, true)
	admit("d/0/2", false, 25*time.Second) // doubled, up to maxBackoff
	now = now.Add(25 * time.Second)
	admit("d/0/2", true, 0)
	record("d/0/2", false, false)
	admit("e/0/2", true, 0)

	t.Run("a new leader starts from the status", func(t *testing.T) {
		var fresh breakers
		s := sub.DeepCopy()
		s.Status.Circuit = &funnelv1.CircuitStatus{Since: metav1.NewTime(now), ConsecutiveFailures: 3, NextProbeTime: metaTime(now.Add(5 * time.Second))}
		if ok, wait := fresh.admit(s, "x/0/1", now); ok || wait != 5*time.Second {
			t.Errorf("admit: %v, %v", ok, wait)
		}
	})
	t.Run("off, and never for Jobs", func(t *testing.T) {
		off := sub.DeepCopy()
		off.UID, off.Spec.Delivery.CircuitBreaker.ConsecutiveFailures = "off", ptr.To[int32](0)
		job := sub.DeepCopy()
		job.UID, job.Spec.Action = "job", funnelv1.Action{Job: &funnelv1.JobAction{}}
		var fresh breakers
		for _, s := range []*funnelv1.FunnelSubscription{off, job} {
			for i := range 10 {
				if c := fresh.record(s, "a", true, "x", now); c.open {
					t.Fatalf("%s: open after failure %d", s.UID, i)
				}
			}
		}
	})
}
