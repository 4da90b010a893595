package statuspatch_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// benchEvent is a stored FunnelEvent as an event controller reads it: a synthetic body,
// one delivery waiting for its second attempt.
func benchEvent(b *testing.B) *funnelv1.FunnelEvent {
	b.Helper()
	body, err := synth.New(rand.New(rand.NewPCG(1, 2))).Event("lease_transaction.updated", "")
	if err != nil {
		b.Fatal(err)
	}
	t := metav1.NewTime(time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC))
	ev := &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ev", ResourceVersion: "42", Generation: 1,
			Labels: map[string]string{funnelv1.LabelEventType: "lease_transaction.updated"}},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.EventFormat("Classic"), Type: "lease_transaction.updated",
			ReceivedAt: metav1.NewMicroTime(t.Time), Data: runtime.RawExtension{Raw: body}},
		Status: funnelv1.FunnelEventStatus{Phase: funnelv1.PhaseProcessing, Attempts: 1,
			Deliveries: []funnelv1.DeliveryStatus{{Subscription: "crm", AttemptStatus: funnelv1.AttemptStatus{
				Phase: funnelv1.DeliveryPhase("Retrying"), Attempts: 1, LastAttemptTime: &t, NextAttemptTime: &t, LastError: "503 Service Unavailable", ResponseCode: 503}}},
			Conditions: []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, Reason: funnelv1.ReasonProcessing, Message: "1 delivery pending", LastTransitionTime: t}}},
	}
	return ev
}

// patchOnly is a client whose status patches compute their body, as the API client
// does, and go no further: what is measured is the helper, not a server.
func patchOnly(b *testing.B) client.Client {
	b.Helper()
	scheme := testenv.Scheme()
	return fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		SubResourcePatch: func(_ context.Context, _ client.Client, _ string, obj client.Object, p client.Patch, _ ...client.SubResourcePatchOption) error {
			_, err := p.Data(obj)
			return err
		}}).Build()
}

// BenchmarkPatch is the event controllers' write (with the lock) after a pass that
// changed a delivery, and after one that changed nothing.
func BenchmarkPatch(b *testing.B) {
	ctx := context.Background()
	c := patchOnly(b)
	stored := benchEvent(b)
	for _, changed := range []bool{true, false} {
		name := "unchanged"
		if changed {
			name = "changed"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ev := stored.DeepCopy()
				base := ev.DeepCopy()
				if changed {
					ev.Status.Deliveries[0].Phase = funnelv1.DeliveryPhase("Succeeded")
					ev.Status.Deliveries[0].Attempts = 2
				}
				if wrote, err := statuspatch.Patch(ctx, c, base, ev, client.MergeFromWithOptimisticLock{}); err != nil || wrote != changed {
					b.Fatalf("wrote %v, %v; want %v", wrote, err, changed)
				}
			}
		})
	}
}
