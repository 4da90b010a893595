package delivery

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// TestJobSlotsAdmit: a subscription's active Jobs, from the cache plus the ones admitted
// and not cached yet, bound its next Job; its own Job, ended Jobs and other
// subscriptions' Jobs do not hold it back.
func TestJobSlotsAdmit(t *testing.T) {
	sub := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "move-in"}}
	job := func(name, subscription string, ended batchv1.JobConditionType) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{LabelSubscription: subscription}}}
		if ended != "" {
			j.Status.Conditions = []batchv1.JobCondition{{Type: ended, Status: corev1.ConditionTrue}}
		}
		return j
	}
	now := time.Now()
	tests := []struct {
		name     string
		cached   []client.Object
		admitted map[string]time.Time // admitted earlier by this process
		limit    int
		want     bool
	}{
		{name: "none active", limit: 1, want: true},
		{name: "one active at limit 1", cached: []client.Object{job("a", "move-in", "")}, limit: 1, want: false},
		{name: "one active at limit 2", cached: []client.Object{job("a", "move-in", "")}, limit: 2, want: true},
		{name: "its own Job goes on", cached: []client.Object{job("a", "move-in", ""), job("next", "move-in", "")}, limit: 1, want: true},
		{name: "ended Jobs do not count", cached: []client.Object{job("a", "move-in", batchv1.JobComplete), job("b", "move-in", batchv1.JobFailed)}, limit: 1, want: true},
		{name: "another subscription's Jobs do not count", cached: []client.Object{job("a", "other", "")}, limit: 1, want: true},
		{name: "admitted, not cached yet", admitted: map[string]time.Time{"a": now}, limit: 1, want: false},
		{name: "admitted, now cached and ended", cached: []client.Object{job("a", "move-in", batchv1.JobComplete)}, admitted: map[string]time.Time{"a": now}, limit: 1, want: true},
		{name: "admitted long ago, never created", admitted: map[string]time.Time{"a": now.Add(-2 * reservationKeep)}, limit: 1, want: true},
	}
	scheme := testenv.Scheme()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tt.cached...).Build()
			var s jobSlots
			if tt.admitted != nil {
				s.admitted = map[string]map[string]time.Time{"ns/move-in": tt.admitted}
			}
			got, err := s.admit(context.Background(), c, sub, "next", tt.limit, now)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("admit = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestJobSlotsReserve: an admitted Job holds its slot for the next one until released.
func TestJobSlotsReserve(t *testing.T) {
	sub := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "move-in"}}
	scheme := testenv.Scheme()
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	var s jobSlots
	now := time.Now()
	for _, step := range []struct {
		job  string
		want bool
	}{{"a", true}, {"a", true}, {"b", false}} {
		if got, err := s.admit(context.Background(), c, sub, step.job, 1, now); err != nil || got != step.want {
			t.Fatalf("admit %s = %v, %v; want %v", step.job, got, err, step.want)
		}
	}
	s.release(sub, "a")
	if got, _ := s.admit(context.Background(), c, sub, "b", 1, now); !got {
		t.Error("b was held back after a was released")
	}
}
