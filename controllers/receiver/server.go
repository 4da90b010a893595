package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// Defaults of Options. The answer deadline leaves Funnel's 5 s timeout two seconds of margin
// for the network; everything the server waits on is bounded by it.
const (
	DefaultAnswerDeadline = 3 * time.Second
	DefaultMaxInFlight    = 128
	// DefaultPreAuthBodyTimeout bounds reading a body before its sender is authenticated
	// (HMAC, or no authentication): a slow unauthenticated body must not hold a slot for
	// the whole answer deadline. Funnel's bodies are a few KiB.
	DefaultPreAuthBodyTimeout = time.Second
	// retryAfterSeconds is what 503 and 429 answers ask the sender to wait.
	retryAfterSeconds = 5
)

// Options configure a Server.
type Options struct {
	// Addr is the listen address, e.g. ":8080".
	Addr string
	// Listener, when set, is used instead of listening on Addr (tests pass one on port 0).
	Listener net.Listener
	// AnswerDeadline bounds the time from the start of handling to the answer; a write
	// the API server has not confirmed by then is answered 503, never 200.
	AnswerDeadline time.Duration
	// MaxInFlight bounds concurrent requests; past it requests are shed with 503 at once.
	MaxInFlight int
	// MaxInFlightPerReceiver bounds the concurrent requests of one receiver, so that one
	// receiver (one tenant, or whoever floods its URL) cannot take the whole MaxInFlight;
	// half of it when 0.
	MaxInFlightPerReceiver int
	// PreAuthBodyTimeout bounds reading a body before the sender is authenticated;
	// DefaultPreAuthBodyTimeout when 0.
	PreAuthBodyTimeout time.Duration
	// Clock stamps receivedAt; tests inject a fake one.
	Clock clock.PassiveClock
	// Policy is what receivers may ask for; the FunnelReceiver controller reports the same.
	Policy Policy
	// Secrets reads the receivers' Secrets (a *Secrets, shared with the FunnelReceiver
	// controller). Required.
	Secrets client.Reader
	// Sealer seals every event the receiver creates, so that the event controllers can
	// tell it from one created by someone else. Without a key, events go unsealed (and
	// are not delivered).
	Sealer Sealer
	// Tracing makes a span of each webhook request and stores its trace context on the
	// event; nil is tracing off.
	Tracing *tracing.Tracing
}

// The receiver creates events, reads one back to compare a duplicate, and patches
// status.duplicates; it reads receivers through the cache, their Secrets through Secrets.
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents,verbs=create;get
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents/status,verbs=patch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers,verbs=list;watch

// Server is the webhook receiver, run by the manager on every replica (not only the
// leader): every replica can accept events, because the API server is what makes them
// durable and deduplicates them.
type Server struct {
	opts Options
	// cache holds FunnelReceivers; requests read their configuration from it.
	cache cache.Cache
	// writer creates FunnelEvents directly on the API server.
	writer client.Client

	inFlight   chan struct{}
	duplicates *duplicateCounter
	recent     *recentNames
	silence    *silence
	serving    atomic.Bool

	receiversMu sync.Mutex
	receivers   map[types.NamespacedName]*perReceiver
}

// perReceiver is what the server keeps for one FunnelReceiver while it exists.
type perReceiver struct {
	// inFlight counts its requests being handled.
	inFlight int
	// limiter enforces its spec.rateLimit; nil without one.
	limiter *rate.Limiter
}

// NewServer builds a Server that reads configuration from c and writes FunnelEvents
// with w, a client without client-side rate limits (the per-receiver limit and the API
// server's priority and fairness apply instead).
func NewServer(opts Options, c cache.Cache, w client.Client) *Server {
	if opts.AnswerDeadline <= 0 {
		opts.AnswerDeadline = DefaultAnswerDeadline
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxInFlightPerReceiver <= 0 {
		opts.MaxInFlightPerReceiver = max(opts.MaxInFlight/2, 1)
	}
	if opts.PreAuthBodyTimeout <= 0 {
		opts.PreAuthBodyTimeout = DefaultPreAuthBodyTimeout
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Server{
		opts:       opts,
		cache:      c,
		writer:     w,
		inFlight:   make(chan struct{}, opts.MaxInFlight),
		duplicates: newDuplicateCounter(w),
		recent:     newRecentNames(recentCapacity),
		silence:    newSilence(),
		receivers:  map[types.NamespacedName]*perReceiver{},
	}
}

// NeedLeaderElection is false: the receiver serves on every replica.
func (s *Server) NeedLeaderElection() bool { return false }

// Handler is the HTTP handler, exposed for tests. It routes by hand rather than with
// http.ServeMux, which answers an unclean path ("//webhooks/ns/name", what a base URL
// ending in "/" gives) with a redirect and stores nothing: Funnel's V3 sender counts any
// 3xx as delivered. This handler never answers 3xx.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := webhookKey(r.URL.Path)
		if !ok {
			s.answer(w, "", time.Now(), reply{code: http.StatusNotFound, msg: "not found: Funnel must POST to /webhooks/{namespace}/{receiver}"})
			return
		}
		s.serveWebhook(w, r, key)
	})
}

// webhookKey reads the receiver out of a path /webhooks/{namespace}/{receiver}. Empty
// segments (doubled or trailing slashes) are skipped, so a callback URL written with an
// extra slash still reaches its receiver; any other shape is not a webhook path.
func webhookKey(path string) (types.NamespacedName, bool) {
	var segs [3]string
	n := 0
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			continue
		}
		if n == len(segs) {
			return types.NamespacedName{}, false
		}
		segs[n] = seg
		n++
	}
	if n != len(segs) || segs[0] != "webhooks" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: segs[1], Name: segs[2]}, true
}

// Start waits for the caches it reads, then serves until ctx ends, and finally lets
// in-flight requests finish (they are bounded by the answer deadline).
func (s *Server) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("receiver")
	ctx = ctrl.LoggerInto(ctx, log)
	if _, err := s.cache.GetInformer(ctx, &funnelv1.FunnelReceiver{}); err != nil {
		return fmt.Errorf("starting the informer for FunnelReceivers: %w", err)
	}
	if !s.cache.WaitForCacheSync(ctx) {
		return errors.New("the receiver's caches did not sync")
	}
	stopSilence, err := s.trackSilence(ctx, s.cache)
	if err != nil {
		return err
	}
	defer stopSilence()

	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       s.opts.AnswerDeadline,
		WriteTimeout:      s.opts.AnswerDeadline + 2*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ln := s.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.opts.Addr); err != nil {
			return fmt.Errorf("listening on %s: %w", s.opts.Addr, err)
		}
	}

	dupCtx, stopDuplicates := context.WithCancel(context.WithoutCancel(ctx))
	dupDone := make(chan struct{})
	go func() { defer close(dupDone); s.duplicates.run(dupCtx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.serving.Store(true)
	log.Info("Serving webhooks", "address", ln.Addr().String())

	select {
	case err = <-serveErr:
	case <-ctx.Done():
		s.serving.Store(false)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AnswerDeadline+time.Second)
		err = srv.Shutdown(shutdownCtx)
		cancel()
		<-serveErr
	}
	stopDuplicates()
	<-dupDone
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving webhooks: %w", err)
	}
	return nil
}

// ReadyCheck is a readyz check: ready once the caches synced and the listener is up, so a
// replica gets traffic only when it can answer correctly.
func (s *Server) ReadyCheck(*http.Request) error {
	if !s.serving.Load() {
		return errors.New("the webhook receiver is not serving yet")
	}
	return nil
}

// reply is the answer to one request.
type reply struct {
	code int
	msg  string
	// stored is the FunnelEvent a 200 stands for, as created or found stored.
	stored *funnelv1.FunnelEvent
	// receipt is what the request was to stored: tracing.ReceiptCreated, ...Variant or
	// ...Duplicate.
	receipt string
}

// event is the name of the FunnelEvent a 200 stands for, "" for another answer.
func (r reply) event() string {
	if r.stored == nil {
		return ""
	}
	return r.stored.Name
}

// serveWebhook handles a request to the webhook path of receiver key.
func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request, key types.NamespacedName) {
	start := time.Now()
	ctx, cancel := context.WithDeadline(r.Context(), start.Add(s.opts.AnswerDeadline))
	defer cancel()
	ctx, span := s.opts.Tracing.Request(ctx, r, key)
	label, rep := s.handle(ctx, w, r, key)
	s.answer(w, label, start, rep)
	tracing.Answered(span, rep.code, rep.event(), rep.msg)
}

// admit takes a slot for a request of receiver key: first one of the receiver's own,
// then one of the server's. Past either cap the request is shed at once; release gives
// the slots back.
func (s *Server) admit(key types.NamespacedName) (release func(), ok bool) {
	s.receiversMu.Lock()
	st := s.state(key)
	if st.inFlight >= s.opts.MaxInFlightPerReceiver {
		s.receiversMu.Unlock()
		return nil, false
	}
	st.inFlight++
	s.receiversMu.Unlock()
	unreceiver := func() {
		s.receiversMu.Lock()
		st.inFlight--
		s.receiversMu.Unlock()
	}
	select {
	case s.inFlight <- struct{}{}:
		return func() { <-s.inFlight; unreceiver() }, true
	default:
		unreceiver()
		return nil, false
	}
}

// state returns the receiver's entry, created on first use; receiversMu must be held.
func (s *Server) state(key types.NamespacedName) *perReceiver {
	st, ok := s.receivers[key]
	if !ok {
		st = &perReceiver{}
		s.receivers[key] = st
	}
	return st
}

// answer writes the reply and records it in the metrics.
func (s *Server) answer(w http.ResponseWriter, receiver string, start time.Time, rep reply) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	switch rep.code {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	case http.StatusOK:
		h.Set(funnel.EventNameHeader, rep.event())
	}
	body := rep.msg
	if rep.code == http.StatusOK {
		body = funnel.AckBody
	} else {
		body += "\n"
	}
	w.WriteHeader(rep.code)
	_, _ = w.Write([]byte(body))
	if !s.silence.has(receiver) {
		// Deleted meanwhile: its series are gone and must not come back.
		receiver = ""
	}
	requestsTotal.WithLabelValues(receiver, strconv.Itoa(rep.code)).Inc()
	requestDuration.WithLabelValues(receiver).Observe(time.Since(start).Seconds())
	s.silence.observe(receiver, rep.code, s.opts.Clock.Now())
}

// allow spends one request of the receiver's rate limit, if it has one.
func (s *Server) allow(key types.NamespacedName, rl *funnelv1.RateLimit) bool {
	s.receiversMu.Lock()
	defer s.receiversMu.Unlock()
	st := s.state(key)
	switch {
	case rl == nil:
		st.limiter = nil
		return true
	case st.limiter == nil:
		st.limiter = rate.NewLimiter(rate.Limit(rl.RequestsPerSecond), int(rl.Burst))
	default:
		if st.limiter.Limit() != rate.Limit(rl.RequestsPerSecond) {
			st.limiter.SetLimit(rate.Limit(rl.RequestsPerSecond))
		}
		if st.limiter.Burst() != int(rl.Burst) {
			st.limiter.SetBurst(int(rl.Burst))
		}
	}
	return st.limiter.Allow()
}

// forget drops what the server keeps for a receiver that no longer exists: its entry
// and its metric series. Requests still in flight keep their own reference.
func (s *Server) forget(key types.NamespacedName) {
	s.receiversMu.Lock()
	delete(s.receivers, key)
	s.receiversMu.Unlock()
	forgetReceiverMetrics(key.String())
}

// logger is the request's logger; request details are added by handle.
func logger(ctx context.Context) logr.Logger { return ctrl.LoggerFrom(ctx) }
