package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

const (
	typeStatusUpdated = "lease_transaction.status_updated"
	typeRenterCreated = "renter.created"
)

// event is a FunnelEvent as the receiver creates it: receiver "funnel",
// type lease_transaction.status_updated, created a minute ago, in namespace
// ns; mutate changes it.
func event(name string, mutate ...func(*funnelv1.FunnelEvent)) *funnelv1.FunnelEvent {
	ev := &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Minute)),
			Annotations:       map[string]string{funnelv1.AnnotationDigest: "sha256:0123"},
		},
		Spec: funnelv1.FunnelEventSpec{
			Receiver: "funnel", Format: funnelv1.FormatClassic, EventID: "1", Type: typeStatusUpdated,
			ReceivedAt: metav1.NewMicroTime(time.Now().Add(-time.Minute)),
			Data:       runtime.RawExtension{Raw: []byte(`{"lease_transaction_id":74824}`)},
		},
	}
	for _, m := range mutate {
		m(ev)
	}
	ev.Labels = mergeLabels(map[string]string{
		funnelv1.LabelReceiver:                    funnel.LabelValue(ev.Spec.Receiver),
		funnelv1.LabelEventType:                   funnel.LabelValue(ev.Spec.Type),
		funnelv1.LabelFormat:                      string(ev.Spec.Format),
		"funnel.leasing.dev/lease-transaction-id": "74824",
	}, ev.Labels)
	return ev
}

func mergeLabels(base, over map[string]string) map[string]string {
	for k, v := range over {
		base[k] = v
	}
	return base
}

func inNamespace(n string) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.Namespace = n }
}

func ofType(t string) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.Spec.Type = t }
}

func fromReceiver(r string) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.Spec.Receiver = r }
}

func createdAgo(d time.Duration) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.CreationTimestamp = metav1.NewTime(time.Now().Add(-d)) }
}

// inPhase sets status.phase; finished phases also get the done label, as
// the operator does.
func inPhase(p funnelv1.EventPhase, summary string) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) {
		ev.Status.Phase, ev.Status.Summary = p, summary
		if p.Finished() {
			ev.Labels = mergeLabels(map[string]string{}, ev.Labels)
			ev.Labels[funnelv1.LabelDone] = string(p)
		}
	}
}

func withDuplicates(n int64) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.Status.Duplicates = n }
}

// eventClient is a fake cluster holding objs, with FunnelEvent's status
// subresource as the CRD has it; funcs intercept its calls.
func eventClient(funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(newScheme()).
		WithStatusSubresource(&funnelv1.FunnelEvent{}).
		WithObjects(objs...).
		WithInterceptorFuncs(funcs).
		Build()
}

// cliWith runs the whole command line against c and returns the exit
// code, stdout and stderr.
func cliWith(t *testing.T, c client.WithWatch, args ...string) (int, string, string) {
	t.Helper()
	return runWith(t, c, "", args...)
}

// runWith runs the command line against c with stdin, and nothing of the user's
// kubeconfig.
func runWith(t *testing.T, c client.WithWatch, stdin string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	kube := newKubeOptions()
	kube.newClient = func() (client.WithWatch, error) { return c, nil }
	var out, errOut bytes.Buffer
	code := run(context.Background(), kube, args, genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// pager makes the fake client's List page as the API server does (the fake
// ignores Limit and Continue): Limit items at a time, in key order, the
// continue token being the last key returned. It records the options of
// every call.
type pager struct {
	mu    sync.Mutex
	calls []client.ListOptions
}

func (p *pager) list(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
	var o client.ListOptions
	o.ApplyOptions(opts)
	p.mu.Lock()
	p.calls = append(p.calls, o)
	p.mu.Unlock()
	if err := c.List(ctx, list, opts...); err != nil {
		return err
	}
	all, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	key := func(o runtime.Object) string {
		m, _ := meta.Accessor(o)
		return m.GetNamespace() + "/" + m.GetName()
	}
	slices.SortFunc(all, func(a, b runtime.Object) int { return strings.Compare(key(a), key(b)) })
	items := slices.DeleteFunc(all, func(obj runtime.Object) bool { return key(obj) <= o.Continue })
	next := ""
	if o.Limit > 0 && int64(len(items)) > o.Limit {
		items = items[:o.Limit]
		next = key(items[len(items)-1])
	}
	if err := meta.SetList(list, items); err != nil {
		return err
	}
	lm, _ := meta.ListAccessor(list)
	lm.SetContinue(next)
	lm.SetResourceVersion("42")
	return nil
}

func TestEventPhase(t *testing.T) {
	tests := []struct {
		name  string
		label string
		phase funnelv1.EventPhase
		want  funnelv1.EventPhase
	}{
		{"no status yet", "", "", funnelv1.PhasePending},
		{"status only", "", funnelv1.PhaseProcessing, funnelv1.PhaseProcessing},
		{"done label wins", "Failed", funnelv1.PhaseProcessing, funnelv1.PhaseFailed},
		{"done label on a status not written yet", "Succeeded", "", funnelv1.PhaseSucceeded},
		{"a done label that is no final phase is ignored", "yes", funnelv1.PhaseSucceeded, funnelv1.PhaseSucceeded},
	}
	for _, tt := range tests {
		ev := event("e", func(ev *funnelv1.FunnelEvent) {
			ev.Status.Phase = tt.phase
			if tt.label != "" {
				ev.Labels = map[string]string{funnelv1.LabelDone: tt.label}
			}
		})
		if got := eventPhase(ev); got != tt.want {
			t.Errorf("%s: phase %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestEventFilterIsExactAboutTheType(t *testing.T) {
	// "a b" and "a_b" share the label value a_b: the label selects both,
	// the filter only the one asked for.
	f := eventFilter{receiver: "funnel", eventType: "a b"}
	if !f.matches(event("x", ofType("a b"))) {
		t.Error(`"a b" does not match --type "a b"`)
	}
	if f.matches(event("y", ofType("a_b"))) {
		t.Error(`"a_b" matches --type "a b"`)
	}
	if f.matches(event("z", ofType("a b"), fromReceiver("other"))) {
		t.Error("another receiver's event matches --receiver funnel")
	}
}
