package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// proberTimeout is how long a probe may stay unreported before another attempt may
// probe: its event was deleted, or its outcome lost with a leader.
const proberTimeout = 2 * funnelv1.MaxHTTPTimeout

var (
	circuitOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "funnel_circuit_open",
		Help: "1 while a subscription's circuit breaker is open (its destination keeps failing), else 0.",
	}, []string{"subscription"})
	circuitTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_circuit_transitions_total",
		Help: "Circuit breaker transitions by subscription and the state entered: open, closed.",
	}, []string{"subscription", "state"})
)

// breakerConfig is a subscription's circuit breaker with its defaults applied.
type breakerConfig struct {
	failures int32 // 0: off
	probe    time.Duration
	maxProbe time.Duration
}

// breakerOf is sub's breaker: on by default for HTTP actions; a Job is not a destination.
func breakerOf(sub *funnelv1.FunnelSubscription) breakerConfig {
	c := breakerConfig{failures: funnelv1.DefaultBreakerFailures, probe: funnelv1.DefaultBreakerProbeInterval,
		maxProbe: policyOf(sub.Spec.Delivery).maxBackoff}
	if cb := sub.Spec.Delivery.CircuitBreaker; cb != nil {
		if cb.ConsecutiveFailures != nil {
			c.failures = *cb.ConsecutiveFailures
		}
		if probe := cb.ProbeInterval.Or(0); probe > 0 {
			c.probe = probe
		}
	}
	if sub.Spec.Action.HTTP == nil {
		c.failures = 0
	}
	c.maxProbe = max(c.maxProbe, c.probe)
	return c
}

// circuit is one subscription's breaker.
type circuit struct {
	failures  int32
	open      bool
	since     time.Time
	nextProbe time.Time
	wait      time.Duration // the interval before the next probe
	prober    string        // the attempt probing, "" when none
	proberAt  time.Time
	lastError string
}

// breakers holds the circuit of every subscription with deliveries on this leader. A new
// leader starts each from the subscription's status.circuit.
type breakers struct {
	mu sync.Mutex
	m  map[types.UID]*circuit
}

// get is sub's circuit; b.mu is held.
func (b *breakers) get(sub *funnelv1.FunnelSubscription, cfg breakerConfig, now time.Time) *circuit {
	if c, ok := b.m[sub.UID]; ok {
		return c
	}
	if b.m == nil || len(b.m) > 4096 {
		b.m = map[types.UID]*circuit{} // forget deleted subscriptions now and then
	}
	c := &circuit{wait: cfg.probe}
	if st := sub.Status.Circuit; st != nil {
		c.open, c.since, c.failures, c.lastError, c.nextProbe = true, st.Since.Time, st.ConsecutiveFailures, st.LastError, now
		if st.NextProbeTime != nil {
			c.nextProbe = st.NextProbeTime.Time
		}
	}
	b.m[sub.UID] = c
	return c
}

// admit tells whether attempt who of a delivery to sub may be made now: always while the
// breaker is closed; while open, only as the one probe, when it is due. Refused, wait is
// when to ask again.
func (b *breakers) admit(sub *funnelv1.FunnelSubscription, who string, now time.Time) (bool, time.Duration) {
	cfg := breakerOf(sub)
	if cfg.failures == 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.get(sub, cfg, now)
	switch {
	case !c.open || c.prober == who:
		return true, 0
	case c.prober != "" && now.Sub(c.proberAt) < proberTimeout:
		// Its success wakes everybody; after a failure the next probe is due in about wait.
		return false, min(c.proberAt.Add(proberTimeout).Sub(now), c.wait)
	case now.Before(c.nextProbe):
		return false, c.nextProbe.Sub(now)
	}
	c.prober, c.proberAt = who, now
	return true, 0
}

// record tells sub's breaker how attempt who ended: with an answer (anything but a
// retryable failure), or a retryable failure; it returns the breaker's state.
func (b *breakers) record(sub *funnelv1.FunnelSubscription, who string, failed bool, reason string, now time.Time) circuit {
	cfg := breakerOf(sub)
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.get(sub, cfg, now)
	if !failed || cfg.failures == 0 {
		*c = circuit{wait: cfg.probe}
		return *c
	}
	c.failures++
	c.lastError = reason
	switch {
	case c.open && c.prober == who:
		c.prober = ""
		c.wait = min(2*c.wait, cfg.maxProbe)
		c.nextProbe = now.Add(c.wait)
	case !c.open && c.failures >= cfg.failures:
		c.open, c.since, c.wait, c.prober = true, now, cfg.probe, ""
		c.nextProbe = now.Add(c.wait)
	}
	return *c
}

// circuitGate is the breaker's say for a delivery's next attempt (sequence.gate).
func (r *Router) circuitGate(ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription) func(int32, time.Time) (bool, time.Duration) {
	return func(number int32, now time.Time) (bool, time.Duration) {
		return r.breakers.admit(sub, attemptID(ev, number), now)
	}
}

// attemptID names one attempt of an event's delivery to the breaker.
func attemptID(ev *funnelv1.FunnelEvent, number int32) string {
	return fmt.Sprintf("%s/%d/%d", ev.UID, ev.Status.Replays, number)
}

// circuitHeld is the message of a delivery waiting for its open breaker.
func circuitHeld(sub *funnelv1.FunnelSubscription) string {
	st := sub.Status.Circuit
	if st == nil {
		return fmt.Sprintf("the destination of FunnelSubscription %s keeps failing; waiting for a probe to find it answering", sub.Name)
	}
	return fmt.Sprintf("the destination of FunnelSubscription %s keeps failing (circuit open since %s, last error: %s); waiting for a probe to find it answering",
		sub.Name, st.Since.UTC().Format(time.RFC3339), st.LastError)
}

// recordOutcome tells the breaker how the attempt a delivery just recorded ended. When
// the breaker's state then differs from the subscription's status, the pass that writes
// its own status successfully brings the status along: an Event, the metrics, the
// subscription's status.circuit and Degraded condition, and on closing the waiting
// deliveries woken. Level-based, so a pass whose write fails leaves it to the next.
func (r *Router) recordOutcome(fx *effects, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription, s *funnelv1.AttemptStatus, st step, now time.Time) {
	if st.ended == endNone {
		return
	}
	c := r.breakers.record(sub, attemptID(ev, s.Attempts), st.ended == endFailed, s.LastError, now)
	if c.open == (sub.Status.Circuit != nil) {
		return
	}
	key, label := client.ObjectKeyFromObject(sub), sub.Namespace+"/"+sub.Name
	fx.run = append(fx.run, func() {
		ctx := context.Background()
		wrote, err := r.writeCircuit(ctx, key, c, now)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Recording the circuit breaker in the subscription's status", "subscription", label)
		}
		if !wrote {
			return // written by another pass (or the subscription is gone)
		}
		if c.open {
			circuitOpen.WithLabelValues(label).Set(1)
			circuitTransitions.WithLabelValues(label, "open").Inc()
			r.Recorder.Eventf(sub, nil, corev1.EventTypeWarning, funnelv1.ReasonCircuitOpened, "Deliver",
				"%d retryable failures in a row (last: %s): deliveries wait, one probe every %s", c.failures, c.lastError, c.wait)
			return
		}
		circuitOpen.WithLabelValues(label).Set(0)
		circuitTransitions.WithLabelValues(label, "closed").Inc()
		r.Recorder.Eventf(sub, nil, corev1.EventTypeNormal, funnelv1.ReasonCircuitClosed, "Deliver", "The destination answers again: deliveries go ahead")
		r.wakeDeliveringTo(ctx, key)
	})
}

// writeCircuit records an open breaker (status.circuit, Degraded=True) or a closed one,
// unless the status says so already. Its own field and condition: the subscription
// controller's Ready is left alone.
func (r *Router) writeCircuit(ctx context.Context, key types.NamespacedName, c circuit, now time.Time) (bool, error) {
	// Read fresh, not from the cache: the write carries what it read (optimistic lock).
	var reader client.Reader = r.Client
	if r.APIReader != nil {
		reader = r.APIReader
	}
	var sub funnelv1.FunnelSubscription
	if err := reader.Get(ctx, key, &sub); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if c.open == (sub.Status.Circuit != nil) {
		return false, nil
	}
	base := sub.DeepCopy()
	cond := metav1.Condition{Type: funnelv1.ConditionDegraded, ObservedGeneration: sub.Generation, LastTransitionTime: metav1.NewTime(now)}
	if c.open {
		sub.Status.Circuit = &funnelv1.CircuitStatus{Since: metav1.NewTime(c.since), ConsecutiveFailures: c.failures,
			NextProbeTime: metaTime(c.nextProbe), LastError: trim(c.lastError)}
		cond.Status, cond.Reason = metav1.ConditionTrue, funnelv1.ReasonDestinationFailing
		cond.Message = trim(fmt.Sprintf("%d retryable failures in a row, the last: %s; deliveries wait, one probe at a time", c.failures, c.lastError))
	} else {
		sub.Status.Circuit = nil
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, funnelv1.ReasonDestinationAnswering, "The destination answers"
	}
	meta.SetStatusCondition(&sub.Status.Conditions, cond)
	if err := r.Client.Status().Patch(ctx, &sub, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("writing the circuit of FunnelSubscription %s: %w", key, err)
	}
	return true, nil
}

// wakeDeliveringTo wakes the events still delivering to a subscription.
func (r *Router) wakeDeliveringTo(ctx context.Context, key types.NamespacedName) {
	events, err := r.Events.DeliveringTo(ctx, key)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Waking the deliveries of a closed circuit; they wake on their own timers", "subscription", key)
		return
	}
	for i := range events {
		r.Executor.wake(wakeObject(&events[i]))
	}
}
