package delivery

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// policy is a subscription's delivery policy with its defaults applied.
type policy struct {
	retries    int32
	backoff    funnelv1.BackoffPolicy
	delay      time.Duration
	maxBackoff time.Duration
	timeout    time.Duration // 0: none
}

func policyOf(d funnelv1.DeliveryPolicy) policy {
	p := policy{retries: funnelv1.DefaultRetries, backoff: funnelv1.BackoffExponential,
		delay: d.BackoffDelay.Or(funnelv1.DefaultBackoffDelay), maxBackoff: d.MaxBackoff.Or(funnelv1.DefaultMaxBackoff),
		timeout: d.Timeout.Or(0)}
	if d.Retries != nil {
		p.retries = *d.Retries
	}
	if d.BackoffPolicy != "" {
		p.backoff = d.BackoffPolicy
	}
	return p
}

// wait is how long to wait before the retry that follows the given attempt (1-based):
// exponential doubles the delay each time, linear adds it; both capped at maxBackoff.
func (p policy) wait(attempt int32) time.Duration {
	var d time.Duration
	if p.backoff == funnelv1.BackoffLinear {
		d = p.delay * time.Duration(attempt)
	} else {
		exp := math.Pow(2, float64(attempt-1))
		if exp > float64(math.MaxInt64)/float64(max(p.delay, 1)) {
			return p.maxBackoff
		}
		d = time.Duration(float64(p.delay) * exp)
	}
	if d > p.maxBackoff || d < 0 {
		return p.maxBackoff
	}
	return d
}

// retryWait is how long to wait before the retry that follows the given attempt: the
// backoff, or the target's Retry-After when longer, up to maxBackoff.
func (p policy) retryWait(attempt int32, retryAfter time.Duration) time.Duration {
	wait := p.wait(attempt)
	if retryAfter > wait {
		wait = min(retryAfter, p.maxBackoff)
	}
	return wait
}

// retryAfter parses a Retry-After header (seconds or an HTTP date) relative to now.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
