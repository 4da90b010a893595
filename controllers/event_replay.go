package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
)

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents,verbs=get;list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents/status,verbs=patch

// replayListPage is how many finished events' metadata one list request returns.
const replayListPage = 100

// ReplayWatcher makes a new funnel.leasing.dev/replay value work on finished events too.
// Those are outside the controllers' cache (it holds unfinished events only, so memory
// follows work in flight), so the controllers never see their annotations change. The
// watcher follows the metadata of finished events without keeping any, and sets
// status.phase of each one whose replay value it has not had back to Pending: the event
// re-enters the cache and its family's controller replays it.
type ReplayWatcher struct {
	// Metadata lists and watches FunnelEvents' metadata.
	Metadata metadata.Interface
	// Reader reads an event whole, uncached; Client patches its status.
	Reader client.Reader
	Client client.Client
	// Namespaces are those watched; all when empty.
	Namespaces []string
}

// NeedLeaderElection: only the leader processes events.
func (w *ReplayWatcher) NeedLeaderElection() bool { return true }

// Start follows every namespace until ctx ends.
func (w *ReplayWatcher) Start(ctx context.Context) error {
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName](),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "replay"})
	namespaces := w.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var wg sync.WaitGroup
	for _, ns := range namespaces {
		wg.Go(func() { w.follow(ctx, ns, queue) })
	}
	for range 2 {
		wg.Go(func() {
			for w.next(ctx, queue) {
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	return nil
}

// follow lists the finished events of ns, then watches them from the list's version,
// and lists again whenever the watch cannot resume (its version is gone).
func (w *ReplayWatcher) follow(ctx context.Context, ns string, queue workqueue.TypedRateLimitingInterface[types.NamespacedName]) {
	log := ctrl.LoggerFrom(ctx).WithName("replay").WithValues("namespace", ns)
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: 7, Cap: time.Minute}
	for {
		rv, err := w.list(ctx, ns, queue)
		if err == nil {
			err = w.watch(ctx, ns, rv, queue)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errWatchGone) {
			backoff.Duration, backoff.Steps = time.Second, 7
			continue // list again, from now
		}
		delay := backoff.Step()
		log.Error(err, "Following finished events for replay requests; trying again", "after", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// list pages through the metadata of the finished events of ns, queues those with a
// replay value, and returns the version to watch from.
func (w *ReplayWatcher) list(ctx context.Context, ns string, queue workqueue.TypedRateLimitingInterface[types.NamespacedName]) (string, error) {
	res := w.Metadata.Resource(funnelv1.GroupVersion.WithResource("funnelevents")).Namespace(ns)
	opts := metav1.ListOptions{FieldSelector: funnelv1.FinishedEvents().String(), Limit: replayListPage}
	for {
		page, err := res.List(ctx, opts)
		if err != nil {
			return "", fmt.Errorf("listing finished FunnelEvents: %w", err)
		}
		for i := range page.Items {
			w.offer(&page.Items[i], queue)
		}
		if page.Continue == "" {
			return page.ResourceVersion, nil
		}
		opts.Continue = page.Continue
	}
}

// errWatchGone ends a watch whose resource version the API server no longer has.
var errWatchGone = errors.New("the watch's resource version is gone")

// watch follows the finished events of ns from rv, resuming where each watch ended, until
// ctx ends (nil) or the version is gone (errWatchGone) or the API server refuses.
func (w *ReplayWatcher) watch(ctx context.Context, ns, rv string, queue workqueue.TypedRateLimitingInterface[types.NamespacedName]) error {
	res := w.Metadata.Resource(funnelv1.GroupVersion.WithResource("funnelevents")).Namespace(ns)
	for ctx.Err() == nil {
		wi, err := res.Watch(ctx, metav1.ListOptions{FieldSelector: funnelv1.FinishedEvents().String(), ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return errWatchGone
			}
			return fmt.Errorf("watching finished FunnelEvents: %w", err)
		}
		err = func() error {
			defer wi.Stop()
			for ev := range wi.ResultChan() {
				switch ev.Type {
				case watch.Error:
					if status, ok := ev.Object.(*metav1.Status); ok && (status.Code == http.StatusGone || status.Reason == metav1.StatusReasonExpired) {
						return errWatchGone
					}
					return fmt.Errorf("watching finished FunnelEvents: %v", apierrors.FromObject(ev.Object))
				case watch.Added, watch.Modified, watch.Bookmark:
					m, ok := ev.Object.(*metav1.PartialObjectMetadata)
					if !ok {
						continue
					}
					rv = m.ResourceVersion
					if ev.Type != watch.Bookmark {
						w.offer(m, queue)
					}
				}
			}
			return nil // the server ended the watch: resume from rv
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// offer queues an event that carries a replay value; whether it is a new one needs the
// status, which the check reads.
func (w *ReplayWatcher) offer(m *metav1.PartialObjectMetadata, queue workqueue.TypedRateLimitingInterface[types.NamespacedName]) {
	if m.Annotations[funnelv1.AnnotationReplay] != "" {
		queue.Add(types.NamespacedName{Namespace: m.Namespace, Name: m.Name})
	}
}

// next checks one queued event; false once the queue is shut down.
func (w *ReplayWatcher) next(ctx context.Context, queue workqueue.TypedRateLimitingInterface[types.NamespacedName]) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	if err := w.check(ctx, key); err != nil {
		ctrl.LoggerFrom(ctx).WithName("replay").Error(err, "Asking for a replay; retrying", "event", key)
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}

// check sets the phase of a finished event whose replay value is new back to Pending,
// with the version it read: a concurrent change wins and the event is checked again.
func (w *ReplayWatcher) check(ctx context.Context, key types.NamespacedName) error {
	var ev funnelv1.FunnelEvent
	if err := w.Reader.Get(ctx, key, &ev); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !ev.Status.Phase.Finished() || replayToken(ev.Annotations[funnelv1.AnnotationReplay]) == ev.Status.ObservedReplay {
		return nil // already replayed, or in the controllers' hands
	}
	if _, err := statuspatch.Apply(ctx, w.Client, &ev, func(ev *funnelv1.FunnelEvent) { ev.Status.Phase = funnelv1.PhasePending },
		client.MergeFromWithOptimisticLock{}); err != nil {
		return fmt.Errorf("setting the phase of FunnelEvent %s back to Pending: %w", key, err)
	}
	ctrl.LoggerFrom(ctx).WithName("replay").V(1).Info("Replay requested by annotation", "event", key)
	return nil
}
