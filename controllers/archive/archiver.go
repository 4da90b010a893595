package archive

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Archiver defaults.
const (
	DefaultBatchSize     = 100
	DefaultFlushInterval = time.Second
	// listPage is how many finished events one list request returns while catching up.
	listPage = 200
)

// Archiver writes every finished FunnelEvent to the Store. It lists the finished events
// (writing those not archived in their current version), then watches them from the
// list's version and writes changes in batches. The API server is the queue: whatever the
// archiver has not written yet is still stored there (retention waits for the archive),
// so when the database fails it drops the watch, waits, and catches up with a new list.
// It writes nothing to the API server.
type Archiver struct {
	Store *Store
	// Client lists and watches FunnelEvents, uncached.
	Client client.WithWatch
	// Finished selects the finished events (a field selector on status.phase).
	Finished fields.Selector
	// Namespaces are those archived; all when empty.
	Namespaces []string
	// BatchSize and FlushInterval bound a batch: it is written when it is full or this
	// long after its first event. DefaultBatchSize, DefaultFlushInterval when zero.
	BatchSize     int
	FlushInterval time.Duration
	// Backoff is the first wait after a failure (doubling up to a minute); 1s when zero.
	Backoff time.Duration
	Clock   clock.Clock
}

// NeedLeaderElection: one writer, the leader.
func (a *Archiver) NeedLeaderElection() bool { return true }

// Start migrates the schema, then archives every namespace until ctx ends.
func (a *Archiver) Start(ctx context.Context) error {
	if a.BatchSize <= 0 {
		a.BatchSize = DefaultBatchSize
	}
	if a.FlushInterval <= 0 {
		a.FlushInterval = DefaultFlushInterval
	}
	if a.Backoff <= 0 {
		a.Backoff = time.Second
	}
	if a.Clock == nil {
		a.Clock = clock.RealClock{}
	}
	log := ctrl.LoggerFrom(ctx).WithName("archive")
	backoff := a.backoff()
	for {
		_, err := a.Store.Migrate(ctx)
		if err == nil {
			up.Set(1)
			break
		}
		a.failed(opMigrate)
		delay := backoff.Step()
		log.Error(err, "Preparing the archive; trying again", "after", delay)
		if !a.sleep(ctx, delay) {
			return nil
		}
	}
	namespaces := a.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var wg sync.WaitGroup
	for _, ns := range namespaces {
		wg.Go(func() { a.follow(ctx, ns) })
	}
	wg.Wait()
	return nil
}

func (a *Archiver) backoff() wait.Backoff {
	return wait.Backoff{Duration: a.Backoff, Factor: 2, Jitter: 0.2, Steps: 10, Cap: time.Minute}
}

// sleep waits d or until ctx ends (false).
func (a *Archiver) sleep(ctx context.Context, d time.Duration) bool {
	t := a.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// errWatchGone ends a watch whose resource version the API server no longer has.
var errWatchGone = errors.New("the watch's resource version is gone")

// follow catches up on ns, then watches it, and starts over after a failure.
func (a *Archiver) follow(ctx context.Context, ns string) {
	log := ctrl.LoggerFrom(ctx).WithName("archive").WithValues("namespace", ns)
	backoff := a.backoff()
	for {
		rv, err := a.catchUp(ctx, ns)
		if err == nil {
			backoff = a.backoff()
			err = a.watch(ctx, ns, rv)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errWatchGone) {
			continue
		}
		delay := backoff.Step()
		log.Error(err, "Archiving finished events; catching up again", "after", delay)
		if !a.sleep(ctx, delay) {
			return
		}
	}
}

// catchUp pages through the finished events of ns, archives those not archived in their
// current version, and returns the version to watch from.
func (a *Archiver) catchUp(ctx context.Context, ns string) (string, error) {
	var list funnelv1.FunnelEventList
	for cont := ""; ; {
		if err := a.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: a.Finished},
			client.Limit(listPage), client.Continue(cont)); err != nil {
			return "", fmt.Errorf("listing finished FunnelEvents: %w", err)
		}
		uids := make([]types.UID, len(list.Items))
		for i := range list.Items {
			uids[i] = list.Items[i].UID
		}
		archived, err := a.Store.ArchivedVersions(ctx, uids)
		if err != nil {
			a.failed(opRead)
			return "", err
		}
		var todo []*funnelv1.FunnelEvent
		for i := range list.Items {
			if ev := &list.Items[i]; archived[ev.UID] != ev.ResourceVersion {
				todo = append(todo, ev)
			}
		}
		for len(todo) > 0 {
			n := min(len(todo), a.BatchSize)
			if err := a.write(ctx, todo[:n]); err != nil {
				return "", err
			}
			todo = todo[n:]
		}
		if cont = list.Continue; cont == "" {
			return list.ResourceVersion, nil
		}
	}
}

// watch follows the finished events of ns from rv and writes them in batches, until ctx
// ends (nil), the version is gone (errWatchGone), or a write fails.
func (a *Archiver) watch(ctx context.Context, ns, rv string) error {
	var pending []*funnelv1.FunnelEvent
	index := map[types.UID]int{} // a newer version of a pending event replaces it
	var flushAt <-chan time.Time
	flush := func() error {
		err := a.write(ctx, pending)
		pending, index, flushAt = pending[:0], map[types.UID]int{}, nil
		queued.Set(0)
		return err
	}
	for ctx.Err() == nil {
		w, err := a.Client.Watch(ctx, &funnelv1.FunnelEventList{}, client.InNamespace(ns),
			client.MatchingFieldsSelector{Selector: a.Finished},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return errWatchGone
			}
			return fmt.Errorf("watching finished FunnelEvents: %w", err)
		}
		err = func() error {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-flushAt:
					if err := flush(); err != nil {
						return err
					}
				case ev, ok := <-w.ResultChan():
					if !ok {
						return nil // the server ended the watch: resume from rv
					}
					switch ev.Type {
					case watch.Error:
						if status, ok := ev.Object.(*metav1.Status); ok && (status.Code == http.StatusGone || status.Reason == metav1.StatusReasonExpired) {
							return errWatchGone
						}
						return fmt.Errorf("watching finished FunnelEvents: %v", apierrors.FromObject(ev.Object))
					case watch.Bookmark:
						if m, ok := ev.Object.(*funnelv1.FunnelEvent); ok {
							rv = m.ResourceVersion
						}
					case watch.Added, watch.Modified:
						fev, ok := ev.Object.(*funnelv1.FunnelEvent)
						if !ok {
							continue
						}
						rv = fev.ResourceVersion
						if i, ok := index[fev.UID]; ok {
							pending[i] = fev
						} else {
							index[fev.UID] = len(pending)
							pending = append(pending, fev)
							queued.Set(float64(len(pending)))
						}
						if len(pending) >= a.BatchSize {
							if err := flush(); err != nil {
								return err
							}
						} else if flushAt == nil {
							flushAt = a.Clock.After(a.FlushInterval)
						}
					}
					// Deleted: retention after archiving, or a replay took the event back
					// to Pending; it comes back here when it finishes again.
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// write archives a batch and records the metrics.
func (a *Archiver) write(ctx context.Context, events []*funnelv1.FunnelEvent) error {
	if len(events) == 0 {
		return nil
	}
	start := a.Clock.Now()
	written, err := a.Store.Write(ctx, events)
	if err != nil {
		a.failed(opWrite)
		return err
	}
	up.Set(1)
	now := a.Clock.Now()
	batchDuration.Observe(now.Sub(start).Seconds())
	for i, ev := range events {
		if !written[i] {
			continue
		}
		archived.Inc()
		if ev.Status.ProcessedTime != nil {
			lag.Observe(now.Sub(ev.Status.ProcessedTime.Time).Seconds())
		}
	}
	return nil
}

// failed records a failed database operation.
func (a *Archiver) failed(op string) {
	up.Set(0)
	errorsTotal.WithLabelValues(op).Inc()
}
