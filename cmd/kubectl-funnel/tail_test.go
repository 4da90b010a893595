package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// tailNow is the fixed clock of the tailer tests.
var tailNow = time.Date(2024, 10, 9, 13, 0, 0, 0, time.UTC)

func testTailer(filter eventFilter) (*tailer, *strings.Builder) {
	var out strings.Builder
	t := newTailer(&out, filter, tailNow.Add(-10*time.Minute))
	t.now, t.loc = func() time.Time { return tailNow }, time.UTC
	return t, &out
}

// createdAt sets the creation time relative to tailNow.
func createdAt(ago time.Duration) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.CreationTimestamp = metav1.NewTime(tailNow.Add(-ago)) }
}

func withRV(rv string) func(*funnelv1.FunnelEvent) {
	return func(ev *funnelv1.FunnelEvent) { ev.ResourceVersion = rv }
}

// columns reads tail's output with each run of spaces made one, so tests
// read like the lines and do not count padding.
func columns(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l != "" {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	return lines
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTailListPrintsTheWindowOldestFirst(t *testing.T) {
	tl, out := testTailer(eventFilter{})
	c := eventClient(interceptor.Funcs{},
		event("recent", createdAt(2*time.Minute), inPhase(funnelv1.PhaseSucceeded, "Application 74824: Submitted → Approved")),
		event("earlier", createdAt(5*time.Minute), ofType(typeRenterCreated)),
		event("too-old", createdAt(20*time.Minute), inPhase(funnelv1.PhaseFailed, "")),
	)
	if _, err := tl.list(context.Background(), c, eventScope{namespace: ns}); err != nil {
		t.Fatal(err)
	}
	equalLines(t, columns(out.String()), []string{
		"2024-10-09 12:55:00 default/earlier renter.created Pending",
		"2024-10-09 12:58:00 default/recent lease_transaction.status_updated Succeeded Application 74824: Submitted → Approved",
	})
	if len(tl.seen) != 2 {
		t.Errorf("remembers %d events, want the 2 of the window", len(tl.seen))
	}
}

func TestTailWatchEvents(t *testing.T) {
	// The API server applies the filter to the watch: every event comes.
	tl, out := testTailer(eventFilter{receiver: "funnel"})
	events := make(chan watch.Event, 20)
	send := func(typ watch.EventType, ev *funnelv1.FunnelEvent) { events <- watch.Event{Type: typ, Object: ev} }

	send(watch.Added, event("new", withRV("10")))
	send(watch.Modified, event("new", withRV("11"), func(ev *funnelv1.FunnelEvent) { ev.Annotations["x"] = "y" })) // no phase change
	send(watch.Modified, event("new", withRV("12"), inPhase(funnelv1.PhaseProcessing, "Application 74824: Submitted → Approved")))
	send(watch.Modified, event("new", withRV("14"), inPhase(funnelv1.PhaseSucceeded, "Application 74824: Submitted → Approved")))
	// An old event, unseen: its replay annotation, then its phase.
	send(watch.Modified, event("replayed", withRV("15"), createdAt(48*time.Hour), inPhase(funnelv1.PhaseFailed, "Lease 1"), func(ev *funnelv1.FunnelEvent) {
		ev.Annotations[funnelv1.AnnotationReplay] = "2024-10-09T13:00:00Z"
	}))
	send(watch.Modified, event("replayed", withRV("16"), createdAt(48*time.Hour), inPhase(funnelv1.PhasePending, "Lease 1"), func(ev *funnelv1.FunnelEvent) {
		ev.Annotations[funnelv1.AnnotationReplay] = "2024-10-09T13:00:00Z"
	}))
	send(watch.Deleted, event("new", withRV("17"), inPhase(funnelv1.PhaseSucceeded, "")))
	events <- watch.Event{Type: watch.Bookmark, Object: &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "20"}}}
	close(events)

	rv, err := tl.consume(context.Background(), events, "9")
	if err != nil || rv != "20" {
		t.Errorf("consume = %q, %v; want the bookmark's 20", rv, err)
	}
	equalLines(t, columns(out.String()), []string{
		"2024-10-09 13:00:00 default/new lease_transaction.status_updated Pending",
		"2024-10-09 13:00:00 default/new lease_transaction.status_updated Pending → Processing Application 74824: Submitted → Approved",
		"2024-10-09 13:00:00 default/new lease_transaction.status_updated Processing → Succeeded Application 74824: Submitted → Approved",
		"2024-10-09 13:00:00 default/replayed lease_transaction.status_updated Failed Lease 1",
		"2024-10-09 13:00:00 default/replayed lease_transaction.status_updated Failed → Pending Lease 1",
	})
	if _, ok := tl.seen[client.ObjectKey{Namespace: ns, Name: "new"}]; ok || len(tl.seen) != 1 {
		t.Errorf("remembers %v, want only the live event replayed", tl.seen)
	}
}

func TestTailColumnsAlign(t *testing.T) {
	tl, out := testTailer(eventFilter{})
	tl.printHeader()
	for _, ev := range []*funnelv1.FunnelEvent{
		event("evt-6f1c0a6e-52d4-4b4e-9c55-0c1d3f7e8a90", inPhase(funnelv1.PhaseProcessing, "S")),
		event("evt-1", ofType(typeRenterCreated), inPhase(funnelv1.PhaseFailed, "S")),
	} {
		if _, err := tl.handle(watch.Event{Type: watch.Added, Object: ev}); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = tl.handle(watch.Event{Type: watch.Modified, Object: event("evt-1", ofType(typeRenterCreated), inPhase(funnelv1.PhaseSucceeded, "S"))})
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want a header and 3:\n%s", len(lines), out)
	}
	for _, col := range []string{"NAMESPACE/NAME", "TYPE", "PHASE", "SUMMARY"} {
		at := utf8.RuneCountInString(lines[0][:strings.Index(lines[0], col)])
		for _, l := range lines[1:] {
			if r := []rune(l); len(r) <= at || r[at-1] != ' ' || r[at] == ' ' {
				t.Errorf("column %s does not start where its header does:\n%s", col, out)
				break
			}
		}
	}
}

func TestTailWatchErrorIsReturned(t *testing.T) {
	tl, _ := testTailer(eventFilter{})
	events := make(chan watch.Event, 1)
	events <- watch.Event{Type: watch.Error, Object: &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired, Message: "too old resource version: 1 (5)"}}
	if _, err := tl.consume(context.Background(), events, "1"); !isExpired(err) {
		t.Errorf("error %v, want the 410 of the ERROR event", err)
	}
}

func TestTailRelistCatchesUp(t *testing.T) {
	tl, out := testTailer(eventFilter{})
	c := eventClient(interceptor.Funcs{},
		event("x", createdAt(time.Minute)),
		event("y", createdAt(time.Minute), inPhase(funnelv1.PhaseProcessing, "")),
		event("old", createdAt(time.Hour), inPhase(funnelv1.PhaseFailed, "")),
	)
	ctx, scope := context.Background(), eventScope{namespace: ns}
	if _, err := tl.list(ctx, c, scope); err != nil {
		t.Fatal(err)
	}
	out.Reset()

	// While the watch was down: x finished, y was deleted, z arrived, and
	// the old event changed (tail never knew its phase).
	x := getEvent(t, c, ns, "x")
	x.Status.Phase, x.Status.Summary = funnelv1.PhaseSucceeded, "done"
	if err := c.Status().Update(ctx, x); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, getEvent(t, c, ns, "y")); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, event("z", createdAt(0))); err != nil {
		t.Fatal(err)
	}
	old := getEvent(t, c, ns, "old")
	old.Status.Phase = funnelv1.PhaseProcessing
	if err := c.Status().Update(ctx, old); err != nil {
		t.Fatal(err)
	}

	if _, err := tl.list(ctx, c, scope); err != nil {
		t.Fatal(err)
	}
	equalLines(t, columns(out.String()), []string{
		"2024-10-09 13:00:00 default/x lease_transaction.status_updated Pending → Succeeded done",
		"2024-10-09 13:00:00 default/z lease_transaction.status_updated Pending",
	})
	if len(tl.seen) != 2 {
		t.Errorf("remembers %v, want x and z", tl.seen)
	}
}

// watchStarts signals on started each time the fake client starts a watch,
// after first running before (if any) for the n-th watch.
type watchStarts struct {
	mu      sync.Mutex
	n       int
	started chan int
	before  func(ctx context.Context, c client.WithWatch, n int) (watch.Interface, error)
}

func (w *watchStarts) watch(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()
	if w.before != nil {
		if wi, err := w.before(ctx, c, n); wi != nil || err != nil {
			return wi, err
		}
	}
	wi, err := c.Watch(ctx, list, opts...)
	w.started <- n
	return wi, err
}

func TestTailFollowsTheCluster(t *testing.T) {
	starts := &watchStarts{started: make(chan int, 10)}
	c := eventClient(interceptor.Funcs{Watch: starts.watch},
		event("listed", createdAgo(time.Minute), inPhase(funnelv1.PhaseSucceeded, "Application 74824: Submitted → Approved")),
		event("before-the-window", createdAgo(time.Hour), inPhase(funnelv1.PhaseSucceeded, "")),
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-starts.started
		ctx := context.Background()
		ev := event("arrived", func(ev *funnelv1.FunnelEvent) { ev.CreationTimestamp = metav1.Time{} })
		if err := c.Create(ctx, ev); err != nil {
			t.Error(err)
			return
		}
		for _, p := range []funnelv1.EventPhase{funnelv1.PhaseProcessing, funnelv1.PhaseSucceeded} {
			ev.Status.Phase, ev.Status.Summary = p, "Lease 1: moved in"
			if err := c.Status().Update(ctx, ev); err != nil {
				t.Error(err)
				return
			}
		}
		if err := c.Delete(ctx, ev); err != nil {
			t.Error(err)
		}
	}()
	code, out, errOut := cliWith(t, c, "tail", "--timeout", "1s")
	<-done
	if code != 0 {
		t.Fatalf("exit %d, want 0 at --timeout\n%s%s", code, out, errOut)
	}
	lines := columns(out)
	want := []string{
		"TIME NAMESPACE/NAME TYPE PHASE SUMMARY",
		"default/listed lease_transaction.status_updated Succeeded Application 74824: Submitted → Approved",
		"default/arrived lease_transaction.status_updated Pending",
		"default/arrived lease_transaction.status_updated Pending → Processing Lease 1: moved in",
		"default/arrived lease_transaction.status_updated Processing → Succeeded Lease 1: moved in",
	}
	if len(lines) != len(want) {
		t.Fatalf("output\n%s\nwant lines ending with\n%s", out, strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasSuffix(lines[i], want[i]) {
			t.Errorf("line %d: %q, want it to end with %q", i, lines[i], want[i])
		}
	}
}

func TestTailListsAgainWhenTheWatchExpires(t *testing.T) {
	starts := &watchStarts{started: make(chan int, 10)}
	starts.before = func(ctx context.Context, c client.WithWatch, n int) (watch.Interface, error) {
		if n != 1 {
			return nil, nil
		}
		// The first watch: the event finishes, and the watch reports that
		// it fell behind.
		ev := getEvent(t, c, ns, "slow")
		ev.Status.Phase, ev.Status.Summary = funnelv1.PhaseFailed, "gave up"
		if err := c.Status().Update(ctx, ev); err != nil {
			return nil, err
		}
		w := watch.NewFakeWithChanSize(1, false)
		w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
		return w, nil
	}
	lists := &pager{}
	c := eventClient(interceptor.Funcs{Watch: starts.watch, List: lists.list},
		event("slow", createdAgo(time.Minute), inPhase(funnelv1.PhaseProcessing, "")))
	code, out, errOut := cliWith(t, c, "tail", "--timeout", "300ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	lines := columns(out)
	if len(lines) != 3 || !strings.HasSuffix(lines[1], "default/slow lease_transaction.status_updated Processing") ||
		!strings.HasSuffix(lines[2], "default/slow lease_transaction.status_updated Processing → Failed gave up") {
		t.Errorf("output\n%s\nwant the change found by listing again", out)
	}
	if len(lists.calls) != 2 {
		t.Errorf("%d lists, want 2", len(lists.calls))
	}
}

func TestTailFiltersOnTheAPIServer(t *testing.T) {
	var mu sync.Mutex
	var watched []client.ListOptions
	lists := &pager{}
	c := eventClient(interceptor.Funcs{
		List: lists.list,
		Watch: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
			var o client.ListOptions
			o.ApplyOptions(opts)
			mu.Lock()
			watched = append(watched, o)
			mu.Unlock()
			return c.Watch(ctx, list, opts...)
		},
	},
		event("match", createdAgo(time.Minute), ofType(typeRenterCreated)),
		event("other-type", createdAgo(time.Minute)),
		event("other-receiver", createdAgo(time.Minute), ofType(typeRenterCreated), fromReceiver("leasing")),
		// Same label value as renter.created would have, another type.
		event("lossy", createdAgo(time.Minute), ofType("renter created")),
	)
	code, out, errOut := cliWith(t, c, "tail", "--receiver", "funnel", "--type", typeRenterCreated, "--timeout", "200ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	lines := columns(out)
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "default/match renter.created Pending") {
		t.Errorf("output\n%s\nwant the header and the one matching event", out)
	}
	const want = "spec.receiver=funnel,spec.type=renter.created"
	if len(lists.calls) != 1 || selectorString(lists.calls[0].FieldSelector) != want || lists.calls[0].LabelSelector != nil {
		t.Errorf("list calls %+v, want one with the field selector %q", lists.calls, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(watched) == 0 {
		t.Fatal("no watch")
	}
	for _, o := range watched {
		if selectorString(o.FieldSelector) != want || o.LabelSelector != nil || o.Namespace != ns || o.Raw == nil || o.Raw.ResourceVersion != "42" || !o.Raw.AllowWatchBookmarks {
			t.Errorf("watch options %+v (raw %+v), want the field selector %q from the list's resource version", o, o.Raw, want)
		}
	}
}

func TestTailUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"tail", "--since", "-1m"}, "--since must not be negative"},
		{[]string{"tail", "--timeout", "-1s"}, "--timeout must not be negative"},
	}
	for _, tt := range tests {
		code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{}), tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q (stdout %q)", tt.args, code, errOut, tt.wantErr, out)
		}
	}
}
