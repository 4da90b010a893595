package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// patchLog records the patches sent, then lets them through, and then runs
// operator (if any) as the operator would react.
type patchLog struct {
	mu       sync.Mutex
	patches  []sentPatch
	operator func(ctx context.Context, c client.Client, ev *funnelv1.FunnelEvent) error
}

type sentPatch struct {
	key  types.NamespacedName
	typ  types.PatchType
	data map[string]any
}

func (l *patchLog) patch(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	var decoded map[string]any
	if err := json.Unmarshal(data, &decoded); err != nil {
		return err
	}
	l.mu.Lock()
	l.patches = append(l.patches, sentPatch{key: client.ObjectKeyFromObject(obj), typ: patch.Type(), data: decoded})
	l.mu.Unlock()
	if err := c.Patch(ctx, obj, patch, opts...); err != nil {
		return err
	}
	if ev, ok := obj.(*funnelv1.FunnelEvent); ok && l.operator != nil {
		return l.operator(ctx, c, ev.DeepCopy())
	}
	return nil
}

func (l *patchLog) keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	for _, p := range l.patches {
		keys = append(keys, p.key.String())
	}
	return keys
}

// processes is an operator that finishes every replay at once in phase p.
func processes(p funnelv1.EventPhase, readyMessage string) func(context.Context, client.Client, *funnelv1.FunnelEvent) error {
	return func(ctx context.Context, c client.Client, ev *funnelv1.FunnelEvent) error {
		ev.Status = funnelv1.FunnelEventStatus{
			Phase: p, Summary: "Application 74824: Submitted → Approved",
			ObservedReplay: ev.Annotations[funnelv1.AnnotationReplay],
			Conditions: []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "DeliveryFailed",
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

func TestReplayPatchesAnnotationAndDoneLabelOnly(t *testing.T) {
	log := &patchLog{}
	failed := event("evt-1", inPhase(funnelv1.PhaseFailed, "Application 74824: Submitted → Approved"))
	other := event("evt-2", inPhase(funnelv1.PhaseSucceeded, ""))
	c := eventClient(interceptor.Funcs{Patch: log.patch}, failed, other)
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
	if _, ok := got.Labels[funnelv1.LabelDone]; ok {
		t.Errorf("the done label is still there: %v", got.Labels)
	}
	wantLabels := map[string]string{}
	for k, v := range failed.Labels {
		if k != funnelv1.LabelDone {
			wantLabels[k] = v
		}
	}
	if !reflect.DeepEqual(got.Labels, wantLabels) {
		t.Errorf("labels %v, want the others kept: %v", got.Labels, wantLabels)
	}
	if got.Annotations[funnelv1.AnnotationDigest] != "sha256:0123" {
		t.Errorf("other annotations lost: %v", got.Annotations)
	}
	if got.Status.Phase != funnelv1.PhaseFailed {
		t.Errorf("status.phase %s: the CLI must leave status to the operator", got.Status.Phase)
	}

	// One merge patch, of exactly the annotation and the label.
	if len(log.patches) != 1 {
		t.Fatalf("%d patches, want 1", len(log.patches))
	}
	p := log.patches[0]
	want := map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{funnelv1.AnnotationReplay: value},
		"labels":      map[string]any{funnelv1.LabelDone: nil},
	}}
	if p.typ != types.MergePatchType || !reflect.DeepEqual(p.data, want) {
		t.Errorf("patch %s %v\nwant  %s %v", p.typ, p.data, types.MergePatchType, want)
	}

	untouched := getEvent(t, c, ns, "evt-2")
	if _, ok := untouched.Annotations[funnelv1.AnnotationReplay]; ok || untouched.Labels[funnelv1.LabelDone] != "Succeeded" {
		t.Errorf("evt-2 was changed: %v %v", untouched.Labels, untouched.Annotations)
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
	}{
		{
			name:        "one namespace",
			args:        []string{"replay", "-l", "funnel.leasing.dev/done=Failed", "-n", ns},
			wantOut:     "funnelevent/a replay requested (was Failed)\nfunnelevent/b replay requested (was Failed)\n",
			wantPatched: []string{"default/a", "default/b"},
		},
		{
			name: "all namespaces",
			args: []string{"replay", "--selector", "funnel.leasing.dev/done=Failed", "-A"},
			wantOut: "funnelevent/a -n default replay requested (was Failed)\nfunnelevent/b -n default replay requested (was Failed)\n" +
				"funnelevent/d -n other replay requested (was Failed)\n",
			wantPatched: []string{"default/a", "default/b", "other/d"},
		},
		{
			name:        "set-based selector",
			args:        []string{"replay", "-l", "funnel.leasing.dev/event-type in (renter.created),funnel.leasing.dev/done"},
			wantOut:     "funnelevent/b replay requested (was Failed)\n",
			wantPatched: []string{"default/b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, pages := &patchLog{}, &pager{}
			c := eventClient(interceptor.Funcs{Patch: log.patch, List: pages.list}, objs()...)
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
			for _, call := range pages.calls {
				if call.Limit != pageSize {
					t.Errorf("listed with limit %d, want %d", call.Limit, pageSize)
				}
			}
			if _, ok := getEvent(t, c, ns, "c").Annotations[funnelv1.AnnotationReplay]; ok {
				t.Error("the Succeeded event was replayed")
			}
		})
	}
}

func TestReplaySelectorPagesThroughEveryEvent(t *testing.T) {
	var objs []client.Object
	for i := range 1001 {
		objs = append(objs, event(fmt.Sprintf("evt-%04d", i), inPhase(funnelv1.PhaseFailed, "")))
	}
	// Patches are only counted: the fake client's are slow, and their
	// content is tested above.
	patched := map[string]bool{}
	pages := &pager{}
	c := eventClient(interceptor.Funcs{List: pages.list, Patch: func(_ context.Context, _ client.WithWatch, obj client.Object, _ client.Patch, _ ...client.PatchOption) error {
		patched[obj.GetName()] = true
		return nil
	}}, objs...)
	code, out, errOut := cliWith(t, c, "replay", "-l", funnelv1.LabelDone+"=Failed")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if n := strings.Count(out, "replay requested"); n != 1001 || len(patched) != 1001 {
		t.Errorf("%d lines and %d events patched, want 1001", n, len(patched))
	}
	if len(pages.calls) != 3 || pages.calls[1].Continue != "default/evt-0499" || pages.calls[2].Continue != "default/evt-0999" {
		t.Errorf("list calls %+v, want 3 pages of %d", pages.calls, pageSize)
	}
}

func TestReplayMissingNameFailsOnlyThatName(t *testing.T) {
	log := &patchLog{}
	c := eventClient(interceptor.Funcs{Patch: log.patch},
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
}

func TestReplayDryRunChangesNothing(t *testing.T) {
	for _, args := range [][]string{
		{"replay", "--dry-run", "a", "b"},
		{"replay", "--dry-run", "-l", funnelv1.LabelReceiver + "=funnel"},
	} {
		log := &patchLog{}
		c := eventClient(interceptor.Funcs{Patch: log.patch},
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
		if got := getEvent(t, c, ns, "a"); got.Labels[funnelv1.LabelDone] != "Failed" || got.Annotations[funnelv1.AnnotationReplay] != "" {
			t.Errorf("%v: event a changed: %v %v", args, got.Labels, got.Annotations)
		}
	}
}

func TestReplayNoMatchIsNotAnError(t *testing.T) {
	c := eventClient(interceptor.Funcs{}, event("a", inPhase(funnelv1.PhaseSucceeded, "")))
	code, out, errOut := cliWith(t, c, "replay", "-l", funnelv1.LabelDone+"=Failed")
	if code != 0 || out != "" || errOut != "No FunnelEvents match \"funnel.leasing.dev/done=Failed\" in namespace default.\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
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
			c := eventClient(interceptor.Funcs{Patch: log.patch}, event("a", inPhase(funnelv1.PhaseFailed, "old"), func(ev *funnelv1.FunnelEvent) {
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
		})
	}
}

func TestReplayUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"replay"}, "name the events to replay, or select them with -l/--selector"},
		{[]string{"replay", "a", "-l", "x=y"}, "NAME arguments and --selector cannot be combined"},
		{[]string{"replay", "a", "-A"}, "-A/--all-namespaces needs --selector"},
		{[]string{"replay", "a", "--timeout", "5s"}, "--timeout applies to --wait only"},
		{[]string{"replay", "a", "--wait", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"replay", "a", "--wait", "--dry-run"}, "--wait and --dry-run cannot be combined"},
		{[]string{"replay", "-l", "a in (b"}, `--selector "a in (b"`},
	}
	for _, tt := range tests {
		code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{}), tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q (stdout %q)", tt.args, code, errOut, tt.wantErr, out)
		}
	}
}
