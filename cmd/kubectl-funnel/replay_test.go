package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// patchLog records the patches sent, of the object and of its
// subresources, then lets them through, and then runs operator (if any) as
// the operator would react to each.
type patchLog struct {
	mu      sync.Mutex
	patches []sentPatch
	// failStatus, if set, fails the status patch of the event it names.
	failStatus func(name string) error
	operator   func(ctx context.Context, c client.Client, ev *funnelv1.FunnelEvent) error
}

type sentPatch struct {
	key types.NamespacedName
	// subresource is "" for the object itself.
	subresource string
	typ         types.PatchType
	raw         string
	data        map[string]any
}

func (l *patchLog) funcs() interceptor.Funcs {
	return interceptor.Funcs{Patch: l.patch, SubResourcePatch: l.subResourcePatch}
}

func (l *patchLog) record(obj client.Object, subresource string, patch client.Patch) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	var decoded map[string]any
	if err := json.Unmarshal(data, &decoded); err != nil {
		return err
	}
	l.mu.Lock()
	l.patches = append(l.patches, sentPatch{key: client.ObjectKeyFromObject(obj), subresource: subresource, typ: patch.Type(), raw: string(data), data: decoded})
	l.mu.Unlock()
	return nil
}

func (l *patchLog) patch(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if err := l.record(obj, "", patch); err != nil {
		return err
	}
	if err := c.Patch(ctx, obj, patch, opts...); err != nil {
		return err
	}
	return l.react(ctx, c, obj)
}

func (l *patchLog) subResourcePatch(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if err := l.record(obj, sub, patch); err != nil {
		return err
	}
	if l.failStatus != nil && sub == "status" {
		if err := l.failStatus(obj.GetName()); err != nil {
			return err
		}
	}
	if err := c.SubResource(sub).Patch(ctx, obj, patch, opts...); err != nil {
		return err
	}
	return l.react(ctx, c, obj)
}

// react runs the operator on the event as it now is, if the operator's
// cache holds it (its phase is not final) and its replay value is new.
func (l *patchLog) react(ctx context.Context, c client.Client, obj client.Object) error {
	ev, ok := obj.(*funnelv1.FunnelEvent)
	if !ok || l.operator == nil || ev.Status.Phase.Finished() || ev.Status.ObservedReplay == ev.Annotations[funnelv1.AnnotationReplay] {
		return nil
	}
	return l.operator(ctx, c, ev.DeepCopy())
}

// keys lists the events patched, once per patch of the object itself.
func (l *patchLog) keys() []string {
	return l.keysOf("")
}

// keysOf lists the events patched, once per patch of subresource.
func (l *patchLog) keysOf(subresource string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	for _, p := range l.patches {
		if p.subresource == subresource {
			keys = append(keys, p.key.String())
		}
	}
	return keys
}

// processes is an operator that finishes every replay at once in phase p.
func processes(p funnelv1.EventPhase, readyMessage string) func(context.Context, client.Client, *funnelv1.FunnelEvent) error {
	return func(ctx context.Context, c client.Client, ev *funnelv1.FunnelEvent) error {
		ev.Status = funnelv1.FunnelEventStatus{
			Phase: p, Summary: "Application 74824: Submitted → Approved",
			ObservedReplay: ev.Annotations[funnelv1.AnnotationReplay],
			Conditions: []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, Reason: funnelv1.ReasonDeliveryFailed,
				Message: readyMessage, LastTransitionTime: metav1.Now()}},
		}
		return c.Status().Update(ctx, ev)
	}
}

func getEvent(t *testing.T, c client.Client, namespace, name string) *funnelv1.FunnelEvent {
	t.Helper()
	var ev funnelv1.FunnelEvent
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

func TestReplayPatchesAnnotationThenPhase(t *testing.T) {
	log := &patchLog{}
	failed := event("evt-1", inPhase(funnelv1.PhaseFailed, "Application 74824: Submitted → Approved"), func(ev *funnelv1.FunnelEvent) {
		ev.Labels = map[string]string{"team": "leasing"}
		ev.Annotations["note"] = "keep me"
		ev.Status.ObservedReplay = "2024-10-09T13:49:31Z"
		ev.Status.Duplicates = 3
	})
	other := event("evt-2", inPhase(funnelv1.PhaseSucceeded, ""))
	c := eventClient(log.funcs(), failed, other)
	stored := getEvent(t, c, ns, "evt-1") // as the API server holds it (times to the microsecond)
	before := time.Now().UTC()

	code, out, errOut := cliWith(t, c, "replay", "evt-1", "-n", ns)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if want := "funnelevent/evt-1 replay requested (was Failed)\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}

	got := getEvent(t, c, ns, "evt-1")
	value := got.Annotations[funnelv1.AnnotationReplay]
	if at, err := time.Parse(time.RFC3339Nano, value); err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("replay annotation %q: want the time of the request (%v)", value, err)
	}
	if !reflect.DeepEqual(got.Labels, failed.Labels) {
		t.Errorf("labels %v, want them untouched: %v", got.Labels, failed.Labels)
	}
	wantAnnotations := map[string]string{funnelv1.AnnotationReplay: value}
	for k, v := range failed.Annotations {
		wantAnnotations[k] = v
	}
	if !reflect.DeepEqual(got.Annotations, wantAnnotations) {
		t.Errorf("annotations %v, want %v", got.Annotations, wantAnnotations)
	}
	if !reflect.DeepEqual(got.Spec, stored.Spec) {
		t.Errorf("spec changed: %+v", got.Spec)
	}
	// The CLI sets the phase; the rest of the status is the operator's.
	wantStatus := stored.Status
	wantStatus.Phase = funnelv1.PhasePending
	if !reflect.DeepEqual(got.Status, wantStatus) {
		t.Errorf("status %+v, want %+v", got.Status, wantStatus)
	}

	// Two merge patches, in order: the annotation of the object, then the
	// phase of its status subresource.
	want := []sentPatch{
		{key: client.ObjectKeyFromObject(failed), typ: types.MergePatchType,
			data: map[string]any{"metadata": map[string]any{"annotations": map[string]any{funnelv1.AnnotationReplay: value}}}},
		{key: client.ObjectKeyFromObject(failed), subresource: "status", typ: types.MergePatchType, raw: `{"status":{"phase":"Pending"}}`,
			data: map[string]any{"status": map[string]any{"phase": "Pending"}}},
	}
	if len(log.patches) != len(want) {
		t.Fatalf("%d patches %+v, want 2", len(log.patches), log.patches)
	}
	for i, p := range log.patches {
		w := want[i]
		if w.raw == "" {
			w.raw = p.raw
		}
		if !reflect.DeepEqual(p, w) {
			t.Errorf("patch %d: %+v\nwant     %+v", i, p, w)
		}
	}

	untouched := getEvent(t, c, ns, "evt-2")
	if _, ok := untouched.Annotations[funnelv1.AnnotationReplay]; ok || untouched.Status.Phase != funnelv1.PhaseSucceeded {
		t.Errorf("evt-2 was changed: %v %+v", untouched.Annotations, untouched.Status)
	}
}

func TestReplayFailedStatusPatchIsReported(t *testing.T) {
	log := &patchLog{
		operator: processes(funnelv1.PhaseSucceeded, ""),
		failStatus: func(name string) error {
			if name == "b" {
				return apierrors.NewForbidden(schema.GroupResource{Group: funnelv1.GroupVersion.Group, Resource: "funnelevents"}, name,
					errors.New(`User "dev" cannot patch resource "funnelevents/status" in API group "funnel.leasing.dev" in the namespace "default"`))
			}
			return nil
		},
	}
	c := eventClient(log.funcs(),
		event("a", inPhase(funnelv1.PhaseFailed, "")), event("b", inPhase(funnelv1.PhaseFailed, "")), event("c", inPhase(funnelv1.PhaseIgnored, "")))
	code, out, errOut := cliWith(t, c, "replay", "a", "b", "c", "--wait", "--timeout", "5s")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	// b is not waited for: its phase could not be reset.
	wantOut := "funnelevent/a replay requested (was Failed)\nfunnelevent/c replay requested (was Ignored)\n" +
		"funnelevent/a replayed: Succeeded (Application 74824: Submitted → Approved)\n" +
		"funnelevent/c replayed: Succeeded (Application 74824: Submitted → Approved)\n"
	if out != wantOut {
		t.Errorf("output\n%s\nwant\n%s", out, wantOut)
	}
	wantErr := "error: replaying funnelevent/b: the replay annotation is set, but setting status.phase to Pending failed (the operator replays the event once its watch sees the annotation; --wait does not follow it): " +
		`funnelevents.funnel.leasing.dev "b" is forbidden: User "dev" cannot patch resource "funnelevents/status" in API group "funnel.leasing.dev" in the namespace "default"` + "\n" +
		"error: 1 of 3 events could not be replayed\n"
	if errOut != wantErr {
		t.Errorf("stderr\n%s\nwant\n%s", errOut, wantErr)
	}
	if got := log.keys(); !reflect.DeepEqual(got, []string{"default/a", "default/b", "default/c"}) {
		t.Errorf("object patches %v", got)
	}
	if got := log.keysOf("status"); !reflect.DeepEqual(got, []string{"default/a", "default/b", "default/c"}) {
		t.Errorf("status patches %v", got)
	}
	if b := getEvent(t, c, ns, "b"); b.Status.Phase != funnelv1.PhaseFailed || b.Status.ObservedReplay != "" {
		t.Errorf("b: status %+v, want it untouched (the fake client has no operator watching annotations)", b.Status)
	}
}

func TestReplayFailedAnnotationPatchSendsNoStatusPatch(t *testing.T) {
	log := &patchLog{}
	funcs := log.funcs()
	funcs.Patch = func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
		_ = log.record(obj, "", patch)
		return apierrors.NewConflict(schema.GroupResource{Group: funnelv1.GroupVersion.Group, Resource: "funnelevents"}, obj.GetName(), errors.New("try again"))
	}
	c := eventClient(funcs, event("a", inPhase(funnelv1.PhaseFailed, "")))
	code, out, errOut := cliWith(t, c, "replay", "a")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "error: replaying funnelevent/a: Operation cannot be fulfilled") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := log.keysOf("status"); len(got) != 0 {
		t.Errorf("status patched %v after the annotation patch failed", got)
	}
}

func TestReplaySelector(t *testing.T) {
	objs := func() []client.Object {
		return []client.Object{
			event("a", inPhase(funnelv1.PhaseFailed, "")),
			event("b", inPhase(funnelv1.PhaseFailed, ""), ofType(typeRenterCreated)),
			event("c", inPhase(funnelv1.PhaseSucceeded, "")),
			event("d", inPhase(funnelv1.PhaseFailed, ""), inNamespace("other")),
		}
	}
	tests := []struct {
		name        string
		args        []string
		wantOut     string
		wantPatched []string
		// wantLabels and wantFields are the selectors the API server gets.
		wantLabels, wantFields string
	}{
		{
			name:        "field selector, one namespace",
			args:        []string{"replay", "--field-selector", "status.phase=Failed", "-n", ns},
			wantOut:     "funnelevent/a replay requested (was Failed)\nfunnelevent/b replay requested (was Failed)\n",
			wantPatched: []string{"default/a", "default/b"},
			wantFields:  "status.phase=Failed",
		},
		{
			name: "field selector, all namespaces",
			args: []string{"replay", "--field-selector", "status.phase=Failed", "-A"},
			wantOut: "funnelevent/a -n default replay requested (was Failed)\nfunnelevent/b -n default replay requested (was Failed)\n" +
				"funnelevent/d -n other replay requested (was Failed)\n",
			wantPatched: []string{"default/a", "default/b", "other/d"},
			wantFields:  "status.phase=Failed",
		},
		{
			name:        "two fields",
			args:        []string{"replay", "--field-selector", "status.phase=Failed,spec.type=renter.created"},
			wantOut:     "funnelevent/b replay requested (was Failed)\n",
			wantPatched: []string{"default/b"},
			wantFields:  "spec.type=renter.created,status.phase=Failed", // as parsed: sorted
		},
		{
			name:        "set-based label selector",
			args:        []string{"replay", "-l", "funnel.leasing.dev/event-type in (renter.created),funnel.leasing.dev/lease-transaction-id"},
			wantOut:     "funnelevent/b replay requested (was Failed)\n",
			wantPatched: []string{"default/b"},
			wantLabels:  "funnel.leasing.dev/event-type in (renter.created),funnel.leasing.dev/lease-transaction-id",
		},
		{
			name:        "labels and fields",
			args:        []string{"replay", "--selector", funnelv1.LabelEventType + "=lease_transaction.status_updated", "--field-selector", "status.phase==Failed", "-A"},
			wantOut:     "funnelevent/a -n default replay requested (was Failed)\nfunnelevent/d -n other replay requested (was Failed)\n",
			wantPatched: []string{"default/a", "other/d"},
			wantLabels:  funnelv1.LabelEventType + "=lease_transaction.status_updated",
			wantFields:  "status.phase=Failed", // as parsed
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, pages := &patchLog{}, &pager{}
			funcs := log.funcs()
			funcs.List = pages.list
			c := eventClient(funcs, objs()...)
			code, out, errOut := cliWith(t, c, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("output\n%s\nwant\n%s", out, tt.wantOut)
			}
			if got := log.keys(); !reflect.DeepEqual(got, tt.wantPatched) {
				t.Errorf("patched %v, want %v", got, tt.wantPatched)
			}
			if got := log.keysOf("status"); !reflect.DeepEqual(got, tt.wantPatched) {
				t.Errorf("status patched %v, want %v", got, tt.wantPatched)
			}
			for _, call := range pages.calls {
				if call.Limit != pageSize {
					t.Errorf("listed with limit %d, want %d", call.Limit, pageSize)
				}
				if got := selectorString(call.LabelSelector); got != tt.wantLabels {
					t.Errorf("label selector %q, want %q", got, tt.wantLabels)
				}
				if got := selectorString(call.FieldSelector); got != tt.wantFields {
					t.Errorf("field selector %q, want %q", got, tt.wantFields)
				}
			}
			if _, ok := getEvent(t, c, ns, "c").Annotations[funnelv1.AnnotationReplay]; ok {
				t.Error("the Succeeded event was replayed")
			}
		})
	}
}

// selectorString is sel as sent, "" for none.
func selectorString(sel fmt.Stringer) string {
	if sel == nil {
		return ""
	}
	return sel.String()
}

func TestReplaySelectorPagesThroughEveryEvent(t *testing.T) {
	var objs []client.Object
	for i := range 1001 {
		objs = append(objs, event(fmt.Sprintf("evt-%04d", i), inPhase(funnelv1.PhaseFailed, "")))
	}
	// Patches are only counted: the fake client's are slow, and their
	// content is tested above.
	var mu sync.Mutex
	patched, statusPatched := map[string]bool{}, map[string]bool{}
	pages := &pager{}
	c := eventClient(interceptor.Funcs{
		List: pages.list,
		Patch: func(_ context.Context, _ client.WithWatch, obj client.Object, _ client.Patch, _ ...client.PatchOption) error {
			mu.Lock()
			defer mu.Unlock()
			patched[obj.GetName()] = true
			return nil
		},
		SubResourcePatch: func(_ context.Context, _ client.Client, _ string, obj client.Object, _ client.Patch, _ ...client.SubResourcePatchOption) error {
			mu.Lock()
			defer mu.Unlock()
			statusPatched[obj.GetName()] = true
			return nil
		},
	}, objs...)
	code, out, errOut := cliWith(t, c, "replay", "--field-selector", funnelv1.FieldPhase+"=Failed")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if n := strings.Count(out, "replay requested"); n != 1001 || len(patched) != 1001 || len(statusPatched) != 1001 {
		t.Errorf("%d lines, %d events and %d statuses patched, want 1001", n, len(patched), len(statusPatched))
	}
	if len(pages.calls) != 3 || pages.calls[1].Continue != "default/evt-0499" || pages.calls[2].Continue != "default/evt-0999" {
		t.Errorf("list calls %+v, want 3 pages of %d", pages.calls, pageSize)
	}
}

func TestReplayMissingNameFailsOnlyThatName(t *testing.T) {
	log := &patchLog{}
	c := eventClient(log.funcs(),
		event("a", inPhase(funnelv1.PhaseFailed, "")), event("b", inPhase(funnelv1.PhaseIgnored, "")))
	code, out, errOut := cliWith(t, c, "replay", "a", "missing", "b", "a")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := "funnelevent/a replay requested (was Failed)\nfunnelevent/b replay requested (was Ignored)\n"; out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
	wantErr := "error: funnelevent/missing not found in namespace default\nerror: 1 of 3 events could not be replayed\n"
	if errOut != wantErr {
		t.Errorf("stderr\n%s\nwant\n%s", errOut, wantErr)
	}
	if got := log.keys(); !reflect.DeepEqual(got, []string{"default/a", "default/b"}) {
		t.Errorf("patched %v, want a and b once each", got)
	}
	if got := log.keysOf("status"); !reflect.DeepEqual(got, []string{"default/a", "default/b"}) {
		t.Errorf("status patched %v, want a and b once each", got)
	}
}

func TestReplayDryRunChangesNothing(t *testing.T) {
	for _, args := range [][]string{
		{"replay", "--dry-run", "a", "b"},
		{"replay", "--dry-run", "-l", funnelv1.LabelReceiver + "=funnel"},
		{"replay", "--dry-run", "--field-selector", funnelv1.FieldReceiver + "=funnel"},
	} {
		log := &patchLog{}
		c := eventClient(log.funcs(),
			event("a", inPhase(funnelv1.PhaseFailed, "")), event("b", inPhase(funnelv1.PhaseProcessing, "")))
		code, out, errOut := cliWith(t, c, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		if want := "funnelevent/a would be replayed (now Failed)\nfunnelevent/b would be replayed (now Processing)\n"; out != want {
			t.Errorf("%v: output\n%s\nwant\n%s", args, out, want)
		}
		if len(log.patches) != 0 {
			t.Errorf("%v: %d patches sent", args, len(log.patches))
		}
		if got := getEvent(t, c, ns, "a"); got.Status.Phase != funnelv1.PhaseFailed || got.Annotations[funnelv1.AnnotationReplay] != "" {
			t.Errorf("%v: event a changed: %v %+v", args, got.Annotations, got.Status)
		}
	}
}

func TestReplayNoMatchIsNotAnError(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"replay", "--field-selector", funnelv1.FieldPhase + "=Failed"}, `No FunnelEvents match "status.phase=Failed" in namespace default.` + "\n"},
		{[]string{"replay", "-l", "team=leasing"}, `No FunnelEvents match "team=leasing" in namespace default.` + "\n"},
		{[]string{"replay", "-A", "-l", "team=leasing", "--field-selector", funnelv1.FieldPhase + "=Succeeded"},
			`No FunnelEvents match "team=leasing" and "status.phase=Succeeded" in any namespace.` + "\n"},
	}
	for _, tt := range tests {
		c := eventClient(interceptor.Funcs{}, event("a", inPhase(funnelv1.PhaseSucceeded, "")))
		code, out, errOut := cliWith(t, c, tt.args...)
		if code != 0 || out != "" || errOut != tt.wantErr {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tt.args, code, out, errOut, tt.wantErr)
		}
	}
}

func TestReplayWait(t *testing.T) {
	tests := []struct {
		name     string
		operator func(context.Context, client.Client, *funnelv1.FunnelEvent) error
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{
			name:     "succeeds",
			operator: processes(funnelv1.PhaseSucceeded, ""),
			wantOut:  "funnelevent/a replayed: Succeeded (Application 74824: Submitted → Approved)\n",
		},
		{
			name:     "fails again",
			operator: processes(funnelv1.PhaseFailed, "Delivery failed for 1 of 1 subscriptions: crm"),
			wantCode: 1,
			wantOut:  "funnelevent/a replayed: Failed (Application 74824: Submitted → Approved): Delivery failed for 1 of 1 subscriptions: crm\n",
			wantErr:  "error: 1 of 1 replayed events ended Failed\n",
		},
		{
			// The event still shows the outcome of an earlier replay: that
			// is not this replay's.
			name:     "no operator",
			args:     []string{"--timeout", "300ms"},
			wantCode: 1,
			wantErr:  "error: timed out after 300ms waiting for 1 of 1 replayed events, from funnelevent/a on",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &patchLog{operator: tt.operator}
			c := eventClient(log.funcs(), event("a", inPhase(funnelv1.PhaseFailed, "old"), func(ev *funnelv1.FunnelEvent) {
				ev.Status.ObservedReplay = "2024-10-09T13:49:31Z"
			}))
			code, out, errOut := cliWith(t, c, append([]string{"replay", "a", "--wait"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.wantCode, out, errOut)
			}
			if want := "funnelevent/a replay requested (was Failed)\n" + tt.wantOut; out != want {
				t.Errorf("output\n%s\nwant\n%s", out, want)
			}
			if !strings.HasPrefix(errOut, tt.wantErr) || (tt.wantErr == "" && errOut != "") {
				t.Errorf("stderr %q, want %q", errOut, tt.wantErr)
			}
			if got := log.keysOf("status"); len(got) != 1 {
				t.Errorf("status patched %v, want a once", got)
			}
		})
	}
}

func TestReplayUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"replay"}, "name the events to replay, or select them with -l/--selector or --field-selector"},
		{[]string{"replay", "a", "-l", "x=y"}, "NAME arguments cannot be combined with --selector or --field-selector"},
		{[]string{"replay", "a", "--field-selector", "status.phase=Failed"}, "NAME arguments cannot be combined with --selector or --field-selector"},
		{[]string{"replay", "a", "-A"}, "-A/--all-namespaces needs --selector or --field-selector"},
		{[]string{"replay", "a", "--timeout", "5s"}, "--timeout applies to --wait only"},
		{[]string{"replay", "a", "--wait", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"replay", "a", "--wait", "--dry-run"}, "--wait and --dry-run cannot be combined"},
		{[]string{"replay", "-l", "a in (b"}, `--selector "a in (b"`},
		{[]string{"replay", "--field-selector", "status.phase"}, `--field-selector "status.phase"`},
	}
	for _, tt := range tests {
		code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{}), tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q (stdout %q)", tt.args, code, errOut, tt.wantErr, out)
		}
	}
}
