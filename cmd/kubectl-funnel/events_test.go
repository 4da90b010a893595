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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
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

// inPhase sets status.phase and status.summary.
func inPhase(p funnelv1.EventPhase, summary string) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.Status.Phase, ev.Status.Summary = p, summary }
}

func withDuplicates(n int64) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.Status.Duplicates = n }
}

// selectableFields are the CRD's selectableFields and their values. An
// event without the field (no status.phase yet) has no value: as on the API
// server, no "=" selector matches it.
var selectableFields = map[string]func(*funnelv1.FunnelEvent) string{
	funnelv1.FieldPhase:    func(ev *funnelv1.FunnelEvent) string { return string(ev.Status.Phase) },
	funnelv1.FieldType:     func(ev *funnelv1.FunnelEvent) string { return ev.Spec.Type },
	funnelv1.FieldReceiver: func(ev *funnelv1.FunnelEvent) string { return ev.Spec.Receiver },
}

// eventClient is a fake cluster holding objs, with FunnelEvent's status
// subresource and selectable fields as the CRD has them (the fake evaluates
// field selectors through indexes, in List only: its Watch ignores every
// selector); funcs intercept its calls.
func eventClient(funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	b := fake.NewClientBuilder().WithScheme(newScheme()).
		WithStatusSubresource(&funnelv1.FunnelEvent{}).
		WithObjects(objs...).
		WithInterceptorFuncs(funcs)
	for field, value := range selectableFields {
		b = b.WithIndex(&funnelv1.FunnelEvent{}, field, func(o client.Object) []string {
			if ev, ok := o.(*funnelv1.FunnelEvent); ok && value(ev) != "" {
				return []string{value(ev)}
			}
			return nil
		})
	}
	return b.Build()
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
		phase funnelv1.EventPhase
		want  funnelv1.EventPhase
	}{
		{"no status yet", "", funnelv1.PhasePending},
		{"processing", funnelv1.PhaseProcessing, funnelv1.PhaseProcessing},
		{"finished", funnelv1.PhaseFailed, funnelv1.PhaseFailed},
	}
	for _, tt := range tests {
		// A label named like the old done label means nothing any more.
		ev := event("e", inPhase(tt.phase, ""), func(ev *funnelv1.FunnelEvent) { ev.Labels = map[string]string{"funnel.leasing.dev/done": "Succeeded"} })
		if got := eventPhase(ev); got != tt.want {
			t.Errorf("%s: phase %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestEventFilterSelector(t *testing.T) {
	tests := []struct {
		filter eventFilter
		want   string
	}{
		{eventFilter{}, ""},
		{eventFilter{receiver: "funnel"}, "spec.receiver=funnel"},
		{eventFilter{eventType: "lease.move_in"}, "spec.type=lease.move_in"},
		{eventFilter{receiver: "funnel", eventType: "lease.move_in"}, "spec.receiver=funnel,spec.type=lease.move_in"},
		// Values are escaped, and parse back to themselves.
		{eventFilter{eventType: `a,b=c\d`}, `spec.type=a\,b\=c\\d`},
	}
	for _, tt := range tests {
		sel := tt.filter.selector()
		if tt.want == "" {
			if sel != nil {
				t.Errorf("%+v: selector %q, want none", tt.filter, sel)
			}
			continue
		}
		if sel == nil || sel.String() != tt.want {
			t.Errorf("%+v: selector %v, want %q", tt.filter, sel, tt.want)
			continue
		}
		parsed, err := fields.ParseSelector(sel.String())
		if err != nil {
			t.Errorf("%+v: %v", tt.filter, err)
			continue
		}
		for _, req := range parsed.Requirements() {
			if want := map[string]string{funnelv1.FieldReceiver: tt.filter.receiver, funnelv1.FieldType: tt.filter.eventType}[req.Field]; req.Value != want {
				t.Errorf("%+v: %s parses back as %q, want %q", tt.filter, req.Field, req.Value, want)
			}
		}
	}
}

func TestEventFilterIsExactAboutTheType(t *testing.T) {
	// "a b" and "a_b" share the label value a_b; the field selector tells
	// them apart.
	c := eventClient(interceptor.Funcs{},
		event("x", ofType("a b")), event("y", ofType("a_b")), event("z", ofType("a b"), fromReceiver("other")))
	sel := eventSelector{fields: eventFilter{receiver: "funnel", eventType: "a b"}.selector()}
	var got []string
	if _, err := listEvents(context.Background(), c, eventScope{namespace: ns}, sel, func(page []funnelv1.FunnelEvent) error {
		for _, ev := range page {
			got = append(got, ev.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"x"}) {
		t.Errorf("listed %v, want only x", got)
	}
}

func TestParseSelectors(t *testing.T) {
	sel, err := parseSelectors("app=a,tier in (b)", "status.phase=Failed,spec.type!=x")
	if err != nil {
		t.Fatal(err)
	}
	if sel.labels.String() != "app=a,tier in (b)" || sel.fields.String() != "spec.type!=x,status.phase=Failed" {
		t.Errorf("labels %q, fields %q", sel.labels, sel.fields)
	}
	if sel, err := parseSelectors("", ""); err != nil || sel.labels != nil || sel.fields != nil {
		t.Errorf("empty flags: %+v, %v; want no selectors", sel, err)
	}
	if _, err := parseSelectors("", "status.phase"); err == nil || !strings.Contains(err.Error(), `--field-selector "status.phase"`) {
		t.Errorf("error %v, want one about --field-selector", err)
	}
}

func TestListErrorExplainsUnsupportedFields(t *testing.T) {
	// What an API server answers for a field the CRD does not declare
	// selectable, or when it predates selectable fields.
	c := eventClient(interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
		return apierrors.NewBadRequest("field label not supported: spec.format")
	}})
	code, out, errOut := cliWith(t, c, "stats", "--field-selector", "spec.format=V3")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot select FunnelEvents by this field. They can be selected by status.phase, spec.type and spec.receiver, on Kubernetes 1.31 or later") ||
		!strings.Contains(errOut, "field label not supported: spec.format") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
