package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// handle runs one request through the checks in the order of the contract (design §4)
// and stores the event. It returns the receiver's metric label and the answer. Checks that
// need no body come first, so unauthenticated or throttled senders cost no body read.
func (s *Server) handle(ctx context.Context, w http.ResponseWriter, r *http.Request, key types.NamespacedName) (string, reply) {
	if r.Method != http.MethodPost {
		return "", reply{http.StatusMethodNotAllowed, "method not allowed: Funnel events are POSTed"}
	}
	var rcv funnelv1.FunnelReceiver
	if err := s.cache.Get(ctx, key, &rcv); err != nil {
		if apierrors.IsNotFound(err) {
			s.forgetLimiter(key)
			return "", reply{http.StatusNotFound, fmt.Sprintf("no FunnelReceiver %s", key)}
		}
		logger(ctx).Error(err, "Reading FunnelReceiver from the cache", "receiver", key)
		return "", reply{http.StatusServiceUnavailable, "receiver configuration unavailable, retry later"}
	}
	label := key.String()
	cfg, err := Resolve(ctx, s.opts.Secrets, &rcv, s.opts.Policy)
	if err != nil {
		logger(ctx).Error(err, "Resolving FunnelReceiver", "receiver", key)
		return label, reply{http.StatusServiceUnavailable, "receiver configuration unavailable, retry later"}
	}
	// Only the reason: the message names Secrets, which unauthenticated callers need not know.
	if cfg.Ready.Status != metav1.ConditionTrue {
		return label, reply{http.StatusServiceUnavailable, "receiver not ready: " + cfg.Ready.Reason}
	}
	if len(cfg.AllowedCIDRs) > 0 {
		if addr, ok := clientAddr(r, cfg.TrustedProxies); !ok || !contains(cfg.AllowedCIDRs, addr) {
			return label, reply{http.StatusForbidden, "source address not allowed"}
		}
	}
	if cfg.Token != nil && !tokenMatches(r.Header.Get(cfg.TokenHeader), cfg.Token) {
		return label, reply{http.StatusUnauthorized, "missing or invalid credentials"}
	}
	if !s.limiter(key, cfg.RateLimit).Allow() {
		return label, reply{http.StatusTooManyRequests, "rate limited, retry later"}
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return label, reply{http.StatusUnsupportedMediaType, "unsupported content type: send application/json"}
	}
	if r.ContentLength > cfg.MaxBodyBytes {
		return label, reply{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than the receiver's limit of %d bytes", cfg.MaxBodyBytes)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cfg.MaxBodyBytes))
	if err != nil {
		return label, bodyError(err, cfg.MaxBodyBytes)
	}
	if cfg.HMACKey != nil && !signatureMatches(r.Header.Get(cfg.HMACHeader), body, cfg.HMACKey, cfg.HMACAlgorithm) {
		return label, reply{http.StatusUnauthorized, "missing or invalid signature"}
	}
	env, err := funnel.Parse(body)
	if err != nil {
		return label, reply{http.StatusBadRequest, err.Error()}
	}
	if !slices.Contains(cfg.Formats, funnelv1.EventFormat(env.Format)) {
		return label, reply{http.StatusBadRequest, fmt.Sprintf("%s envelopes are not accepted by this receiver (spec.formats)", env.Format)}
	}
	return label, s.store(ctx, &rcv, env, body)
}

// bodyError turns a failed body read into an answer.
func bodyError(err error, limit int64) reply {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return reply{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than the receiver's limit of %d bytes", limit)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reply{http.StatusRequestTimeout, "body not received in time"}
	default:
		return reply{http.StatusBadRequest, "reading body: " + err.Error()}
	}
}

// isJSON accepts application/json and any +json type; a missing Content-Type is accepted
// too, since the body is parsed as JSON anyway and Funnel's docs do not promise the header.
func isJSON(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// store creates the FunnelEvent and decides the answer from what the API server said:
// 200 only when the event exists with this content.
func (s *Server) store(ctx context.Context, rcv *funnelv1.FunnelReceiver, env *funnel.Envelope, body []byte) reply {
	ev := NewEvent(rcv, env, body, s.opts.Clock.Now())
	typ := metricType(env.Type)
	// Built only when a line is written: zap encodes values as soon as they are added.
	log := func() logr.Logger {
		return logger(ctx).WithValues("funnelevent", klog.KObj(ev), "type", env.Type, "id", env.ID)
	}

	key := types.NamespacedName{Namespace: ev.Namespace, Name: ev.Name}
	if s.recent.has(key) {
		// Created here lately: most likely stored; compare with it, as the API server's
		// watch cache has it (resourceVersion "0": no etcd read). Missing there (deleted
		// since, or the cache not there yet), the create below settles it.
		if r, found := s.duplicate(ctx, ev, typ, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}}); found {
			return r
		}
	}
	err := s.writer.Create(ctx, ev)
	switch {
	case err == nil:
		s.recent.add(key)
		eventsCreated.WithLabelValues(typ).Inc()
		if logger(ctx).V(1).Enabled() {
			log().V(1).Info("Stored event")
		}
		return reply{code: http.StatusOK}
	case apierrors.IsAlreadyExists(err):
		r, found := s.duplicate(ctx, ev, typ)
		if !found {
			// Deleted between the create and the read (retention): let Funnel retry.
			logger(ctx).Info("The existing event was deleted while being compared; answering 503", "funnelevent", key)
			return reply{http.StatusServiceUnavailable, "event not stored in time, retry later"}
		}
		return r
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		log().Info("The API server refused the event", "reason", err.Error())
		return reply{http.StatusBadRequest, "event cannot be stored: " + err.Error()}
	default:
		log().Error(err, "Storing event failed; answering 503 so Funnel retries")
		return reply{http.StatusServiceUnavailable, "event not stored in time, retry later"}
	}
}

// duplicate answers a receipt of an event whose object exists: 200 if it is the same
// event (and count it), 409 if the id was reused for different content. found is false
// when there is no such object. A stale read is harmless: the digest never changes, and
// the count is written with an optimistic lock that re-reads on conflict.
func (s *Server) duplicate(ctx context.Context, ev *funnelv1.FunnelEvent, typ string, opts ...client.GetOption) (r reply, found bool) {
	key := types.NamespacedName{Namespace: ev.Namespace, Name: ev.Name}
	var existing funnelv1.FunnelEvent
	if err := s.writer.Get(ctx, key, &existing, opts...); err != nil {
		if apierrors.IsNotFound(err) {
			return reply{}, false
		}
		// The API server is struggling: let Funnel retry.
		logger(ctx).Error(err, "Reading the existing event failed; answering 503", "funnelevent", key)
		return reply{http.StatusServiceUnavailable, "event not stored in time, retry later"}, true
	}
	if !sameEvent(&existing, ev) {
		eventsConflicting.WithLabelValues(typ).Inc()
		logger(ctx).Info("Event id received again with different content", "funnelevent", key, "type", ev.Spec.Type, "id", ev.Spec.EventID)
		return reply{http.StatusConflict, fmt.Sprintf("event %s was already received with different content", key.Name)}, true
	}
	eventsDuplicate.WithLabelValues(typ).Inc()
	s.duplicates.add(&existing)
	return reply{code: http.StatusOK}, true
}

// sameEvent compares by the receiver's digest when the stored object has one; objects
// created some other way (by hand, by an older version) are compared field by field,
// with data decoded the way the API server stores it.
func sameEvent(existing, received *funnelv1.FunnelEvent) bool {
	if d, ok := existing.Annotations[funnelv1.AnnotationDigest]; ok {
		return d == received.Annotations[funnelv1.AnnotationDigest]
	}
	a, b := existing.Spec, received.Spec
	if a.Type != b.Type || a.Format != b.Format || a.EventID != b.EventID || a.IdempotencyKey != b.IdempotencyKey {
		return false
	}
	var da, db any
	if utiljson.Unmarshal(a.Data.Raw, &da) != nil || utiljson.Unmarshal(b.Data.Raw, &db) != nil {
		return false
	}
	return reflect.DeepEqual(da, db)
}

// NewEvent builds the FunnelEvent of an envelope: deterministic name, labels users
// select by, and the event verbatim in spec.
func NewEvent(rcv *funnelv1.FunnelReceiver, env *funnel.Envelope, body []byte, now time.Time) *funnelv1.FunnelEvent {
	labels := map[string]string{
		funnelv1.LabelReceiver:  funnel.LabelValue(rcv.Name),
		funnelv1.LabelEventType: funnel.LabelValue(env.Type),
		funnelv1.LabelFormat:    string(env.Format),
	}
	maps.Copy(labels, funnel.SubjectLabels(env.Type, env.Data))
	ev := &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   rcv.Namespace,
			Name:        env.ObjectName(body),
			Labels:      labels,
			Annotations: map[string]string{funnelv1.AnnotationDigest: env.Digest()},
		},
		Spec: funnelv1.FunnelEventSpec{
			Receiver:       rcv.Name,
			Format:         funnelv1.EventFormat(env.Format),
			EventID:        env.ID,
			Type:           env.Type,
			IdempotencyKey: env.IdempotencyKey,
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
	if funnel.Lookup(t).Known {
		return t
	}
	return "other"
}
