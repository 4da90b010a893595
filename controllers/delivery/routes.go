package delivery

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// routeKeep is how long a settled pass's routing waits for the next pass: its attempts'
// outcomes usually wake the event within milliseconds, DefaultSettleTime at the latest.
const routeKeep = time.Minute

// pendingRoutes keeps the routing of events whose pass settled (Result.Settling: nothing
// written yet), for the pass that records their outcomes: an event is routed once —
// subscriptions listed and filters evaluated once, not again by that pass.
type pendingRoutes struct {
	mu     sync.Mutex
	routes map[routeKey]pendingRoute
	pruned time.Time
}

// routeKey is one processing of one event: a replay routes again.
type routeKey struct {
	uid     types.UID
	replays int32
}

type pendingRoute struct {
	routing
	at time.Time
}

// routing is what route found: a delivery per subscription that wants the event, and
// whether more wanted it than MaxDeliveries.
type routing struct {
	deliveries []funnelv1.DeliveryStatus
	capped     bool
}

func routeKeyOf(ev *funnelv1.FunnelEvent) routeKey {
	return routeKey{uid: ev.UID, replays: ev.Status.Replays}
}

// keep remembers the event's routing (not copied: the caller hands it over).
func (p *pendingRoutes) keep(ev *funnelv1.FunnelEvent, rt routing, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.routes == nil {
		p.routes = map[routeKey]pendingRoute{}
	}
	p.routes[routeKeyOf(ev)] = pendingRoute{routing: rt, at: now}
	// A deleted event's routing is never taken: forget old ones now and then.
	if now.Sub(p.pruned) > routeKeep {
		for k, r := range p.routes {
			if now.Sub(r.at) > routeKeep {
				delete(p.routes, k)
			}
		}
		p.pruned = now
	}
}

// take returns and forgets the event's kept routing, if any.
func (p *pendingRoutes) take(ev *funnelv1.FunnelEvent, now time.Time) (routing, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.routes[routeKeyOf(ev)]
	if !ok {
		return routing{}, false
	}
	delete(p.routes, routeKeyOf(ev))
	return r.routing, now.Sub(r.at) <= routeKeep
}
