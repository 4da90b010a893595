package receiver

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// silence keeps the last-request and last-accepted gauges of the receivers that exist: a
// series appears with its receiver (at the receiver's creation time) and goes when the
// receiver is deleted, so an alert on silence never fires for a receiver that is gone.
type silence struct {
	mu sync.Mutex
	// known holds the metric labels ("namespace/name") of the receivers in the cache.
	known map[string]struct{}
}

func newSilence() *silence { return &silence{known: map[string]struct{}{}} }

// observe records an answer for a receiver label. Answers for receivers not (or no longer)
// in the cache are ignored, so a request in flight while its receiver is deleted does not
// bring the series back.
func (t *silence) observe(label string, code int, now time.Time) {
	if label == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.known[label]; !ok {
		return
	}
	lastRequest.WithLabelValues(label).Set(unixSeconds(now))
	if code == http.StatusOK {
		lastAccepted.WithLabelValues(label).Set(unixSeconds(now))
	}
}

// has reports whether the receiver of label is in the cache.
func (t *silence) has(label string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.known[label]
	return ok
}

// add starts the series of a receiver at its creation time; a series that already holds
// a later time keeps it.
func (t *silence) add(label string, created time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known[label] = struct{}{}
	for _, g := range []*prometheus.GaugeVec{lastRequest, lastAccepted} {
		setAtLeast(g.WithLabelValues(label), unixSeconds(created))
	}
}

// remove drops the series of a deleted receiver.
func (t *silence) remove(label string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.known, label)
	lastRequest.DeleteLabelValues(label)
	lastAccepted.DeleteLabelValues(label)
}

// trackSilence keeps s.silence in step with the FunnelReceivers in the cache until the
// returned function is called.
func (s *Server) trackSilence(ctx context.Context, c cache.Cache) (stop func(), err error) {
	inf, err := c.GetInformer(ctx, &funnelv1.FunnelReceiver{})
	if err != nil {
		return nil, fmt.Errorf("getting the FunnelReceiver informer: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if rcv, ok := obj.(*funnelv1.FunnelReceiver); ok {
				s.silence.add(receiverLabel(rcv), rcv.CreationTimestamp.Time)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if rcv, ok := obj.(*funnelv1.FunnelReceiver); ok {
				s.silence.remove(receiverLabel(rcv))
				s.forget(types.NamespacedName{Namespace: rcv.Namespace, Name: rcv.Name})
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching FunnelReceivers for the silence metrics: %w", err)
	}
	return func() {
		if err := inf.RemoveEventHandler(reg); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Removing the silence metrics' event handler")
		}
	}, nil
}

// receiverLabel is a receiver's metric label, the same as requests get.
func receiverLabel(rcv *funnelv1.FunnelReceiver) string {
	return types.NamespacedName{Namespace: rcv.Namespace, Name: rcv.Name}.String()
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// setAtLeast raises a gauge to v, never lowers it.
func setAtLeast(g prometheus.Gauge, v float64) {
	var m dto.Metric
	if err := g.Write(&m); err == nil && m.GetGauge().GetValue() >= v {
		return
	}
	g.Set(v)
}
