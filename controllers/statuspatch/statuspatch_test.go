package statuspatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

func ready(status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: funnelv1.ConditionReady, Status: status, Reason: reason, Message: reason}
}

// setup stores a receiver with Ready=True and returns a client counting status patches.
func setup(t *testing.T, failFirst error) (client.Client, *int, *funnelv1.FunnelReceiver) {
	t.Helper()
	scheme := testenv.Scheme()
	rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "funnel"}}
	meta.SetStatusCondition(&rcv.Status.Conditions, ready(metav1.ConditionTrue, funnelv1.ReasonAccepting))
	patches := 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(rcv).WithStatusSubresource(rcv).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			patches++
			if patches == 1 && failFirst != nil {
				return failFirst
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}}).Build()
	got := &funnelv1.FunnelReceiver{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(rcv), got); err != nil {
		t.Fatal(err)
	}
	return c, &patches, got
}

func stored(t *testing.T, c client.Client, obj client.Object) *funnelv1.FunnelReceiver {
	t.Helper()
	got := &funnelv1.FunnelReceiver{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		condition metav1.Condition
		wantWrite bool
	}{
		{"unchanged: no write", ready(metav1.ConditionTrue, funnelv1.ReasonAccepting), false},
		{"changed: one write", ready(metav1.ConditionFalse, funnelv1.ReasonSuspended), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, patches, rcv := setup(t, nil)
			wrote, err := statuspatch.Apply(ctx, c, rcv, func(r *funnelv1.FunnelReceiver) {
				meta.SetStatusCondition(&r.Status.Conditions, tt.condition)
			})
			if err != nil {
				t.Fatal(err)
			}
			wantPatches := 0
			if tt.wantWrite {
				wantPatches = 1
			}
			if wrote != tt.wantWrite || *patches != wantPatches {
				t.Fatalf("wrote %v with %d patches, want %v with %d", wrote, *patches, tt.wantWrite, wantPatches)
			}
			if got := meta.FindStatusCondition(stored(t, c, rcv).Status.Conditions, funnelv1.ConditionReady); got.Reason != tt.condition.Reason {
				t.Fatalf("stored reason %s, want %s", got.Reason, tt.condition.Reason)
			}
		})
	}
}

func TestApplyWithOptimisticLockRefusesAStaleObject(t *testing.T) {
	ctx := context.Background()
	c, _, rcv := setup(t, nil)
	stale := rcv.DeepCopy()
	if _, err := statuspatch.Apply(ctx, c, rcv, func(r *funnelv1.FunnelReceiver) { r.Status.WebhookPath = "/webhooks/ns/funnel" }); err != nil {
		t.Fatal(err)
	}
	_, err := statuspatch.Apply(ctx, c, stale, func(r *funnelv1.FunnelReceiver) {
		meta.SetStatusCondition(&r.Status.Conditions, ready(metav1.ConditionFalse, funnelv1.ReasonSuspended))
	}, client.MergeFromWithOptimisticLock{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("stale write: got %v, want a conflict", err)
	}
}

func TestApplyLatest(t *testing.T) {
	ctx := context.Background()
	conflict := apierrors.NewConflict(schema.GroupResource{Group: funnelv1.GroupVersion.Group, Resource: "funnelreceivers"}, "funnel", errors.New("changed"))
	c, patches, rcv := setup(t, conflict)
	// Another writer adds a condition after rcv was read: it is kept.
	other := rcv.DeepCopy()
	meta.SetStatusCondition(&other.Status.Conditions, metav1.Condition{Type: funnelv1.ConditionMaxEventsReached,
		Status: metav1.ConditionFalse, Reason: funnelv1.ReasonWithinMaxEvents, Message: "by age"})
	if err := c.Status().Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	calls := 0
	wrote, err := statuspatch.ApplyLatest(ctx, c, rcv, func(r *funnelv1.FunnelReceiver) error {
		calls++
		meta.SetStatusCondition(&r.Status.Conditions, ready(metav1.ConditionFalse, funnelv1.ReasonSuspended))
		return nil
	})
	if err != nil || !wrote {
		t.Fatalf("ApplyLatest: wrote %v, %v", wrote, err)
	}
	if calls != 2 || *patches != 2 {
		t.Fatalf("%d changes and %d patches, want 2 of each (one conflict, then success)", calls, *patches)
	}
	got := stored(t, c, rcv).Status.Conditions
	if meta.FindStatusCondition(got, funnelv1.ConditionMaxEventsReached) == nil ||
		meta.FindStatusCondition(got, funnelv1.ConditionReady).Reason != funnelv1.ReasonSuspended {
		t.Fatalf("stored conditions %+v: want the other writer's and the new Ready", got)
	}

	stop := errors.New("gone")
	if _, err := statuspatch.ApplyLatest(ctx, c, rcv, func(*funnelv1.FunnelReceiver) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("change's error: got %v", err)
	}
}

// TestPatchSendsOnlyStatusAndTheLock checks the body the API server gets: what changed in
// status and, with the lock, the resourceVersion the caller read, whatever else changed
// in obj since (the event controllers change obj before they decide what to record).
func TestPatchSendsOnlyStatusAndTheLock(t *testing.T) {
	ctx := context.Background()
	for _, lock := range []bool{false, true} {
		t.Run(fmt.Sprintf("lock=%v", lock), func(t *testing.T) {
			c, _, rcv := setup(t, nil)
			var sent []byte
			spy := interceptor.NewClient(c.(client.WithWatch), interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				var err error
				if sent, err = p.Data(obj); err != nil {
					return err
				}
				return c.SubResource(sub).Patch(ctx, obj, p, opts...)
			}})
			base := rcv.DeepCopy()
			rcv.Status.WebhookPath = "/webhooks/ns/funnel"
			var opts []client.MergeFromOption
			want := `{"status":{"webhookPath":"/webhooks/ns/funnel"}}`
			if lock {
				opts = append(opts, client.MergeFromWithOptimisticLock{})
				want = fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"status":{"webhookPath":"/webhooks/ns/funnel"}}`, base.ResourceVersion)
			}
			wrote, err := statuspatch.Patch(ctx, spy, base, rcv, opts...)
			if err != nil || !wrote {
				t.Fatalf("Patch: wrote %v, %v", wrote, err)
			}
			if string(sent) != want {
				t.Fatalf("sent %s, want %s", sent, want)
			}
			if got := stored(t, c, rcv).Status.WebhookPath; got != "/webhooks/ns/funnel" {
				t.Fatalf("stored webhookPath %q", got)
			}
		})
	}
}

// TestPatchSkipsWhatTheServerWouldNotSee: times are stored to the second, so a
// difference below that is no change and no write.
func TestPatchSkipsWhatTheServerWouldNotSee(t *testing.T) {
	c, patches, rcv := setup(t, nil)
	base := rcv.DeepCopy()
	rcv.Status.Conditions[0].LastTransitionTime.Time = rcv.Status.Conditions[0].LastTransitionTime.Add(time.Millisecond)
	wrote, err := statuspatch.Patch(context.Background(), c, base, rcv, client.MergeFromWithOptimisticLock{})
	if err != nil || wrote || *patches != 0 {
		t.Fatalf("wrote %v with %d patches (%v), want no write", wrote, *patches, err)
	}
}
