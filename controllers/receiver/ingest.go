package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// handle runs one request through the checks in the order of the receiver's HTTP contract
// (docs/architecture.md) and stores the event. It returns the receiver's metric label and
// the answer. Checks that need no body come first, so senders refused by address or token
// cost no slot and no body read; the HMAC comes before the rate limit, so bad signatures
// cannot spend it. Authentication, parsing and the create are each a span of the
// request's trace.
func (s *Server) handle(ctx context.Context, w http.ResponseWriter, r *http.Request, key types.NamespacedName) (string, reply) {
	if r.Method != http.MethodPost {
		return "", reply{code: http.StatusMethodNotAllowed, msg: "method not allowed: Funnel events are POSTed"}
	}
	var rcv funnelv1.FunnelReceiver
	if err := s.cache.Get(ctx, key, &rcv); err != nil {
		if apierrors.IsNotFound(err) {
			return "", reply{code: http.StatusNotFound, msg: fmt.Sprintf("no FunnelReceiver %s", key)}
		}
		logger(ctx).Error(err, "Reading FunnelReceiver from the cache", "receiver", key)
		return "", reply{code: http.StatusServiceUnavailable, msg: "receiver configuration unavailable, retry later"}
	}
	label := key.String()
	cfg, err := Resolve(ctx, s.opts.Secrets, &rcv, s.opts.Policy)
	if err != nil {
		logger(ctx).Error(err, "Resolving FunnelReceiver", "receiver", key)
		return label, reply{code: http.StatusServiceUnavailable, msg: "receiver configuration unavailable, retry later"}
	}
	// Only the reason: the message names Secrets, which unauthenticated callers need not know.
	if cfg.Ready.Status != metav1.ConditionTrue {
		return label, reply{code: http.StatusServiceUnavailable, msg: "receiver not ready: " + cfg.Ready.Reason}
	}
	span := s.opts.Tracing.Step(ctx, tracing.StepAuthenticate, key)
	body, release, rep := s.authenticate(w, r, key, cfg)
	tracing.EndStep(span, rep.code, rep.msg)
	if rep.code != 0 {
		return label, rep
	}
	defer release()
	if !s.allow(key, cfg.RateLimit) {
		return label, reply{code: http.StatusTooManyRequests, msg: "rate limited, retry later"}
	}
	span = s.opts.Tracing.Step(ctx, tracing.StepParse, key)
	env, rep := parse(r, body, cfg.Formats)
	if env != nil {
		id := env.ID
		if len(id) > funnelv1.MaxEventIDLength {
			id = "" // the create step records its stored form
		}
		tracing.Parsed(span, string(env.Format), env.Type, id)
	}
	tracing.EndStep(span, rep.code, rep.msg)
	if rep.code != 0 {
		return label, rep
	}
	span = s.opts.Tracing.Step(ctx, tracing.StepCreate, key)
	rep = s.store(ctx, &rcv, env)
	tracing.Stored(ctx, span, rep.stored, rep.receipt)
	tracing.EndStep(span, rep.code, rep.msg)
	return label, rep
}

// authenticate checks who sent the request, in the contract's order: its source address
// and token, then, within an admitted slot, reads the body under the receiver's limit and
// checks its HMAC signature. It returns the body and the slot's release, or the answer
// (a reply with a code) that refuses the request.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, key types.NamespacedName, cfg *Config) ([]byte, func(), reply) {
	if len(cfg.AllowedCIDRs) > 0 {
		if addr, ok := clientAddr(r, cfg.TrustedProxies); !ok || !contains(cfg.AllowedCIDRs, addr) {
			return nil, nil, reply{code: http.StatusForbidden, msg: "source address not allowed"}
		}
	}
	if cfg.Token != nil && !tokenMatches(r.Header.Get(cfg.TokenHeader), cfg.Token) {
		return nil, nil, reply{code: http.StatusUnauthorized, msg: "missing or invalid credentials"}
	}
	if r.ContentLength > cfg.MaxBodyBytes {
		return nil, nil, reply{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than the receiver's limit of %d bytes", cfg.MaxBodyBytes)}
	}
	release, ok := s.admit(key)
	if !ok {
		return nil, nil, reply{code: http.StatusServiceUnavailable, msg: "overloaded: too many requests in flight, retry later"}
	}
	if cfg.Token == nil {
		// Not authenticated yet (HMAC only, or no authentication): the body gets a short
		// deadline, so that slow unauthenticated bodies cannot hold the slots.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.PreAuthBodyTimeout))
	}
	body, err := readBody(r, w, cfg.MaxBodyBytes)
	if err != nil {
		release()
		return nil, nil, bodyError(err, cfg.MaxBodyBytes)
	}
	if cfg.HMACKey != nil && !signatureMatches(r.Header.Get(cfg.HMACHeader), body, cfg.HMACKey, cfg.HMACAlgorithm) {
		release()
		return nil, nil, reply{code: http.StatusUnauthorized, msg: "missing or invalid signature"}
	}
	return body, release, reply{}
}

// parse reads the envelope of body and checks that the receiver accepts its format;
// otherwise it returns the answer (a reply with a code) that refuses the request, with
// the envelope when it was read.
func parse(r *http.Request, body []byte, formats []funnelv1.EventFormat) (*funnel.Envelope, reply) {
	env, err := funnel.Parse(body)
	if err != nil {
		// Any Content-Type is taken when the body is JSON (Funnel's docs do not promise
		// the header); 415 only for a body that is not JSON and was not said to be.
		var perr *funnel.ParseError
		if errors.As(err, &perr) && perr.NotJSON && !isJSON(r.Header.Get("Content-Type")) {
			return nil, reply{code: http.StatusUnsupportedMediaType, msg: "unsupported content type, and the body is not JSON: send application/json"}
		}
		return nil, reply{code: http.StatusBadRequest, msg: err.Error()}
	}
	if !slices.Contains(formats, funnelv1.EventFormat(env.Format)) {
		return env, reply{code: http.StatusBadRequest, msg: fmt.Sprintf("%s envelopes are not accepted by this receiver (spec.formats)", env.Format)}
	}
	return env, reply{}
}

// readBody reads the body up to limit bytes into one buffer of the announced size, so
// that reading holds the body once rather than up to twice while a buffer grows.
func readBody(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

// bodyError turns a failed body read into an answer.
func bodyError(err error, limit int64) reply {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return reply{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than the receiver's limit of %d bytes", limit)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reply{code: http.StatusRequestTimeout, msg: "body not received in time"}
	default:
		return reply{code: http.StatusBadRequest, msg: "reading body: " + err.Error()}
	}
}

// isJSON reports whether a Content-Type says JSON: application/json, any +json type, or
// none at all.
func isJSON(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// store creates the FunnelEvent and decides the answer from what the API server said:
// 200 only when the event exists with this content, under the name the answer carries.
func (s *Server) store(ctx context.Context, rcv *funnelv1.FunnelReceiver, env *funnel.Envelope) reply {
	now := s.opts.Clock.Now()
	window := dedupeWindow(rcv)
	id := funnel.Naming{Receiver: rcv.Name, DedupeWindow: window}.Identify(env, now)
	ev := NewEvent(rcv, env, id, now)
	tracing.Annotate(ctx, ev)
	typ := metricType(env.Type)
	if id.Previous != "" {
		// Identified by content: a receipt within the window of the same content stored
		// in the previous window is a retry of it.
		prev, err := s.read(ctx, types.NamespacedName{Namespace: ev.Namespace, Name: id.Previous})
		switch {
		case err != nil:
			return unconfirmed(ctx, ev, err)
		case prev != nil && prev.Annotations[funnelv1.AnnotationDigest] == id.Digest && now.Sub(prev.Spec.ReceivedAt.Time) < window:
			return s.duplicate(prev, typ)
		}
	}
	return s.create(ctx, ev, typ)
}

// create stores ev, or finds it stored: the same content under its name is a duplicate;
// different content under its name is stored again as a variant.
func (s *Server) create(ctx context.Context, ev *funnelv1.FunnelEvent, typ string) reply {
	// Built only when a line is written: zap encodes values as soon as they are added.
	log := func() logr.Logger {
		return logger(ctx).WithValues("funnelevent", klog.KObj(ev), "type", ev.Spec.Type, "id", ev.Spec.EventID)
	}
	key := types.NamespacedName{Namespace: ev.Namespace, Name: ev.Name}
	if s.recent.has(key) {
		// Created here lately: most likely stored; compare with it, as the API server's
		// watch cache has it (no etcd read). Missing there (deleted since, or the cache
		// not there yet), the create below settles it.
		existing, err := s.read(ctx, key)
		if err != nil {
			return unconfirmed(ctx, ev, err)
		}
		if existing != nil {
			return s.compare(ctx, ev, existing, typ)
		}
	}
	// Sealed here, as the variant of an event is renamed before it comes back here.
	if err := s.opts.Sealer.Seal(ev); err != nil {
		log().Info("The event cannot be sealed", "reason", err.Error())
		return reply{code: http.StatusBadRequest, msg: "event cannot be stored: " + err.Error()}
	}
	err := s.writer.Create(ctx, ev)
	switch {
	case err == nil:
		s.recent.add(key)
		eventsCreated.WithLabelValues(typ).Inc()
		receipt := tracing.ReceiptCreated
		if _, variant := ev.Labels[funnelv1.LabelVariantOf]; variant {
			receipt = tracing.ReceiptVariant
			eventsConflicting.WithLabelValues(typ).Inc()
			log().Info("Event received again with different content; stored as a variant", "variantOf", ev.Labels[funnelv1.LabelVariantOf])
		} else if logger(ctx).V(1).Enabled() {
			log().V(1).Info("Stored event")
		}
		return reply{code: http.StatusOK, stored: ev, receipt: receipt}
	case apierrors.IsAlreadyExists(err):
		existing, err := s.read(ctx, key, withQuorum)
		switch {
		case err != nil:
			return unconfirmed(ctx, ev, err)
		case existing == nil:
			// Deleted between the create and the read (retention): let Funnel retry.
			logger(ctx).Info("The existing event was deleted while being compared; answering 503", "funnelevent", key)
			return reply{code: http.StatusServiceUnavailable, msg: "event not stored in time, retry later"}
		}
		return s.compare(ctx, ev, existing, typ)
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		log().Info("The API server refused the event", "reason", err.Error())
		return reply{code: http.StatusBadRequest, msg: "event cannot be stored: " + err.Error()}
	default:
		return unconfirmed(ctx, ev, err)
	}
}

// compare answers a receipt whose name is taken by existing: a duplicate when the
// content is the same; otherwise the receipt is stored under its variant name (same
// receiver, id and type, another payload: never refused, never merged).
func (s *Server) compare(ctx context.Context, ev, existing *funnelv1.FunnelEvent, typ string) reply {
	digest := ev.Annotations[funnelv1.AnnotationDigest]
	if existing.Annotations[funnelv1.AnnotationDigest] == digest {
		return s.duplicate(existing, typ)
	}
	if _, variant := ev.Labels[funnelv1.LabelVariantOf]; variant {
		// A variant's name is derived from its digest: another content under it would
		// need a sha256 prefix collision.
		logger(ctx).Error(nil, "Variant name taken by different content; answering 503", "funnelevent", klog.KObj(existing))
		return reply{code: http.StatusServiceUnavailable, msg: "event not stored, retry later"}
	}
	v := ev.DeepCopy()
	v.Name = funnel.VariantName(ev.Name, digest)
	v.Labels[funnelv1.LabelVariantOf] = ev.Name
	return s.create(ctx, v, typ)
}

// duplicate acknowledges a repeated receipt of the stored event ev and counts it.
func (s *Server) duplicate(ev *funnelv1.FunnelEvent, typ string) reply {
	eventsDuplicate.WithLabelValues(typ).Inc()
	s.duplicates.add(ev)
	return reply{code: http.StatusOK, stored: ev, receipt: tracing.ReceiptDuplicate}
}

// withQuorum reads from etcd rather than the API server's watch cache: after an
// AlreadyExists the object must be found even if the cache lags.
var withQuorum client.GetOption = &client.GetOptions{}

// read gets a FunnelEvent; nil when there is none. Without options it reads the API
// server's watch cache (resourceVersion "0": no etcd read), which may lag a moment: a
// duplicate or a conflict found late is still answered right, by the create.
func (s *Server) read(ctx context.Context, key types.NamespacedName, opts ...client.GetOption) (*funnelv1.FunnelEvent, error) {
	if len(opts) == 0 {
		opts = []client.GetOption{&client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}}}
	}
	var ev funnelv1.FunnelEvent
	if err := s.writer.Get(ctx, key, &ev, opts...); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading FunnelEvent %s: %w", key, err)
	}
	return &ev, nil
}

// unconfirmed answers a receipt whose storage the API server did not confirm: 503, so
// Funnel retries, and the retry lands on the same object.
func unconfirmed(ctx context.Context, ev *funnelv1.FunnelEvent, err error) reply {
	logger(ctx).Error(err, "Storing event failed; answering 503 so Funnel retries", "funnelevent", klog.KObj(ev))
	return reply{code: http.StatusServiceUnavailable, msg: "event not stored in time, retry later"}
}

// dedupeWindow is the receiver's dedupe window for events without an id.
func dedupeWindow(rcv *funnelv1.FunnelReceiver) time.Duration {
	if w := rcv.Spec.DedupeWindow.Or(0); w > 0 {
		return w
	}
	return funnel.DefaultDedupeWindow
}

// Bounds of what the receiver keeps in annotations (the API server allows 256 KiB of
// them per object): each whole value above its spec field's limit, and the envelope's
// undefined top-level fields.
const (
	maxAnnotatedValue = 64 << 10
	maxIssues         = 32
)

// NewEvent builds the FunnelEvent of an envelope: its identity's name, labels users
// select by, and the event as sent in spec; what does not fit spec is kept in
// annotations.
func NewEvent(rcv *funnelv1.FunnelReceiver, env *funnel.Envelope, id funnel.Identity, now time.Time) *funnelv1.FunnelEvent {
	labels := map[string]string{
		funnelv1.LabelReceiver:  funnel.LabelValue(rcv.Name),
		funnelv1.LabelEventType: funnel.LabelValue(strings.ToLower(env.Type)),
		funnelv1.LabelFormat:    string(env.Format),
	}
	maps.Copy(labels, funnel.SubjectLabels(env.Type, env.Data))
	annotations := map[string]string{funnelv1.AnnotationDigest: id.Digest}
	issues := slices.Clone(env.Issues)
	keep := func(annotation, field, value string, limit int) string {
		if len(value) <= limit {
			return value
		}
		sum := sha256.Sum256([]byte(value))
		if len(value) <= maxAnnotatedValue {
			annotations[annotation] = value
			issues = append(issues, funnel.Issue{Field: field, Reason: fmt.Sprintf("is %d bytes long; spec holds its sha256, annotation %s the value", len(value), annotation)})
		} else {
			issues = append(issues, funnel.Issue{Field: field, Reason: fmt.Sprintf("is %d bytes long; only its sha256 is kept", len(value))})
		}
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	eventID := keep(funnelv1.AnnotationEventID, "id", env.ID, funnelv1.MaxEventIDLength)
	idempotencyKey := keep(funnelv1.AnnotationIdempotencyKey, "idempotency_key", env.IdempotencyKey, funnelv1.MaxIdempotencyKeyLength)
	if len(env.Extra) > 0 {
		if len(env.Extra) <= maxAnnotatedValue {
			annotations[funnelv1.AnnotationEnvelopeExtra] = string(env.Extra)
		} else {
			issues = append(issues, funnel.Issue{Field: "(envelope)", Reason: fmt.Sprintf("top-level fields no format defines (%d bytes) are not kept", len(env.Extra))})
		}
	}
	if len(issues) > 0 {
		if len(issues) > maxIssues {
			issues = append(issues[:maxIssues-1], funnel.Issue{Field: "(envelope)", Reason: fmt.Sprintf("and %d more issues", len(issues)-maxIssues+1)})
		}
		b, _ := json.Marshal(issues) // strings only: cannot fail
		annotations[funnelv1.AnnotationIssues] = string(b)
	}
	ev := &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   rcv.Namespace,
			Name:        id.Name,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: funnelv1.FunnelEventSpec{
			Receiver:       rcv.Name,
			Format:         funnelv1.EventFormat(env.Format),
			EventID:        eventID,
			Type:           env.Type,
			IdempotencyKey: idempotencyKey,
			ReceivedAt:     metav1.NewMicroTime(now),
			Data:           runtime.RawExtension{Raw: env.Data},
		},
	}
	if env.OccurredAt != nil {
		t := metav1.NewMicroTime(*env.OccurredAt)
		ev.Spec.OccurredAt = &t
	}
	return ev
}

// metricType bounds the type label to the documented types: unknown types are sender
// input and would let a client grow the label set without limit.
func metricType(t string) string {
	if h := funnel.Lookup(t); h.Known {
		return h.Type
	}
	return "other"
}
