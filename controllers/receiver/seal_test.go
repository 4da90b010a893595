package receiver

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

func testSealer(t *testing.T, since time.Time) Sealer {
	t.Helper()
	r, err := NewSealer([]byte(strings.Repeat("k", MinSealKeyBytes)), since)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sealedEvent(now time.Time) *funnelv1.FunnelEvent {
	occurred := metav1.NewMicroTime(now.Add(-time.Hour))
	return &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "evt-1006-0123456789"},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, EventID: "1006", Type: "lease.move_in",
			IdempotencyKey: "k", OccurredAt: &occurred, ReceivedAt: metav1.NewMicroTime(now),
			Data: runtime.RawExtension{Raw: []byte(`{"amount": 2.5e5, "big": 18446744073709551615, "n": 1}`)}},
	}
}

func TestSealerTellTheReceiversEventsFromOthers(t *testing.T) {
	now := time.Date(2026, 11, 30, 4, 0, 0, 123456789, time.UTC)
	r := testSealer(t, time.Time{})
	sealed := func() *funnelv1.FunnelEvent {
		ev := sealedEvent(now)
		if err := r.Seal(ev); err != nil {
			t.Fatal(err)
		}
		// As the API server keeps it: micro times, its own JSON of data, a creation time.
		ev.Spec.ReceivedAt = metav1.NewMicroTime(now.Truncate(time.Microsecond))
		ev.Spec.Data.Raw = []byte(`{"amount":250000,"big":18446744073709552000,"n":1}`)
		ev.CreationTimestamp = metav1.NewTime(now.Add(time.Second).Truncate(time.Second))
		return ev
	}
	if err := r.Check(sealed()); err != nil {
		t.Fatalf("the receiver's event, as stored: %v", err)
	}
	for what, c := range map[string]struct {
		change func(*funnelv1.FunnelEvent)
		why    string
	}{
		"no seal":           {func(ev *funnelv1.FunnelEvent) { delete(ev.Annotations, funnelv1.AnnotationSeal) }, "no seal"},
		"garbled seal":      {func(ev *funnelv1.FunnelEvent) { ev.Annotations[funnelv1.AnnotationSeal] = "v1.!!" }, "malformed"},
		"another version":   {func(ev *funnelv1.FunnelEvent) { ev.Annotations[funnelv1.AnnotationSeal] = "v0" }, "malformed"},
		"another name":      {func(ev *funnelv1.FunnelEvent) { ev.Name = "evt-1007-0123456789" }, "does not match"},
		"another namespace": {func(ev *funnelv1.FunnelEvent) { ev.Namespace = "other" }, "does not match"},
		"another receiver":  {func(ev *funnelv1.FunnelEvent) { ev.Spec.Receiver = "other" }, "does not match"},
		"another type":      {func(ev *funnelv1.FunnelEvent) { ev.Spec.Type = "lease.move_out" }, "does not match"},
		"another id":        {func(ev *funnelv1.FunnelEvent) { ev.Spec.EventID = "1007" }, "does not match"},
		"another key":       {func(ev *funnelv1.FunnelEvent) { ev.Spec.IdempotencyKey = "" }, "does not match"},
		"another format":    {func(ev *funnelv1.FunnelEvent) { ev.Spec.Format = funnelv1.FormatClassic }, "does not match"},
		"no occurredAt":     {func(ev *funnelv1.FunnelEvent) { ev.Spec.OccurredAt = nil }, "does not match"},
		"other data": {func(ev *funnelv1.FunnelEvent) {
			ev.Spec.Data.Raw = []byte(`{"amount":250001,"big":18446744073709552000,"n":1}`)
		}, "does not match"},
		"data not JSON": {func(ev *funnelv1.FunnelEvent) { ev.Spec.Data.Raw = []byte(`{`) }, "cannot be read"},
		"received long before it was created": {func(ev *funnelv1.FunnelEvent) {
			ev.CreationTimestamp = metav1.NewTime(now.Add(MaxSealSkew + time.Minute))
		}, "a copy of an event received before"},
		"received after it was created": {func(ev *funnelv1.FunnelEvent) {
			ev.CreationTimestamp = metav1.NewTime(now.Add(-MaxSealSkew - time.Minute))
		}, "a copy of an event received before"},
	} {
		ev := sealed()
		c.change(ev)
		if err := r.Check(ev); err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: Check says %v, want %q", what, err, c.why)
		}
	}

	other, err := NewSealer([]byte(strings.Repeat("x", MinSealKeyBytes)), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Check(sealed()); err == nil {
		t.Error("another key accepts the seal")
	}
	if err := (Sealer{}).Check(sealed()); err == nil {
		t.Error("no key accepts the seal")
	}
	if _, err := NewSealer(make([]byte, MinSealKeyBytes-1), time.Time{}); err == nil {
		t.Error("a short key is accepted")
	}
}

func TestSealerAcceptEventsOlderThanTheKey(t *testing.T) {
	keyMade := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	r := testSealer(t, keyMade)
	ev := sealedEvent(keyMade.Add(-time.Hour))
	ev.CreationTimestamp = metav1.NewTime(keyMade.Add(-time.Hour))
	if err := r.Check(ev); err != nil {
		t.Errorf("an event stored before the key existed (an upgrade): %v", err)
	}
	ev.CreationTimestamp = metav1.NewTime(keyMade)
	if err := r.Check(ev); err == nil {
		t.Error("an event created with the key in place needs a seal")
	}
}

func TestLoadSealerMakesOneKeyAndGivesUpgradesAGrace(t *testing.T) {
	ctx := context.Background()
	ref := types.NamespacedName{Namespace: "funnel-system", Name: DefaultSealKeySecret}
	now := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	for what, c := range map[string]struct {
		objects []client.Object
		grace   bool
	}{
		"a new installation":        {},
		"an upgrade, events stored": {objects: []client.Object{sealedEvent(now)}, grace: true},
	} {
		cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(c.objects...).Build()
		first, err := LoadSealer(ctx, cl, cl, ref, now)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var s corev1.Secret
		if err := cl.Get(ctx, ref, &s); err != nil {
			t.Fatalf("%s: the key's Secret: %v", what, err)
		}
		if len(s.Data[SealKeyField]) != MinSealKeyBytes || s.Immutable == nil || !*s.Immutable {
			t.Errorf("%s: Secret %+v", what, s)
		}
		// Another replica, or a restart, gets the same key.
		again, err := LoadSealer(ctx, cl, cl, ref, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ev := sealedEvent(now)
		if err := first.Seal(ev); err != nil {
			t.Fatal(err)
		}
		if err := again.Check(ev); err != nil {
			t.Errorf("%s: the key read again does not check the first one's seal: %v", what, err)
		}
		// An event without a seal, created within the hour after the key was made.
		unsealed := sealedEvent(now)
		unsealed.CreationTimestamp = metav1.NewTime(now.Add(30 * time.Minute))
		if err := again.Check(unsealed); (err == nil) != c.grace {
			t.Errorf("%s: an unsealed event 30 minutes after the key was made: %v, want trusted %v", what, err, c.grace)
		}
	}
}

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := funnelv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}
