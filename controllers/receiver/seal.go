package receiver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Seal keys: at least MinSealKeyBytes, in the Secret's data under SealKeyField.
const (
	DefaultSealKeySecret = "funnel-operator-seal-key"
	SealKeyField         = "key"
	MinSealKeyBytes      = 32
	// MaxSealSkew bounds how far an event's spec.receivedAt may be from the time the API
	// server created it: the receiver stamps one just before the other, so a larger gap
	// is a copy of an event received long before (a deleted event created again), or a
	// clock far off.
	MaxSealSkew = 5 * time.Minute

	// UpgradeGrace is how long after the key was made events without a seal are still
	// trusted when the key was made for an installation that already stored events: the
	// replicas of the version before, still running during the rolling update, create
	// events without seals.
	UpgradeGrace = time.Hour
	// AnnotationTrustUnsealedBefore, on the key's Secret, is the time before which the API
	// server's creation of an event without a seal is trusted (RFC 3339); the Secret's
	// creation time when absent.
	AnnotationTrustUnsealedBefore = "funnel.leasing.dev/trust-unsealed-before"

	sealPrefix = "v1."
)

// Sealer proves which FunnelEvents the receiver created: the receiver seals each event
// it creates with a MAC keyed with the operator's seal key, and the event controllers
// deliver only events whose seal checks. Whoever may create FunnelEvents but cannot
// read the key (kept in a Secret of the operator's namespace) cannot make one that the
// controllers deliver. The zero Sealer has no key: it seals nothing and accepts nothing.
type Sealer struct {
	key []byte
	// since is when the key was made: events the API server created before it predate
	// seals (an upgrade), and are accepted without one.
	since time.Time
}

// NewSealer returns Sealer keyed with key, made at since (the zero time when every
// event must carry a seal).
func NewSealer(key []byte, since time.Time) (Sealer, error) {
	if len(key) < MinSealKeyBytes {
		return Sealer{}, fmt.Errorf("seal key of %d bytes: want at least %d", len(key), MinSealKeyBytes)
	}
	return Sealer{key: key, since: since}, nil
}

// Seal writes ev's seal annotation. Call it last: the seal covers the namespace,
// name and spec as they are then.
func (r Sealer) Seal(ev *funnelv1.FunnelEvent) error {
	if r.key == nil {
		return nil
	}
	mac, err := r.mac(ev)
	if err != nil {
		return err
	}
	if ev.Annotations == nil {
		ev.Annotations = map[string]string{}
	}
	ev.Annotations[funnelv1.AnnotationSeal] = sealPrefix + base64.RawURLEncoding.EncodeToString(mac)
	return nil
}

// Check returns nil when ev was created by the receiver (or before seals existed), and
// otherwise why it was not.
func (r Sealer) Check(ev *funnelv1.FunnelEvent) error {
	created := ev.CreationTimestamp.Time
	if r.key == nil {
		return errors.New("the operator has no seal key")
	}
	if !created.IsZero() && created.Before(r.since) {
		return nil
	}
	value, ok := ev.Annotations[funnelv1.AnnotationSeal]
	if !ok {
		return errors.New("it has no seal (annotation " + funnelv1.AnnotationSeal + ")")
	}
	got, err := base64.RawURLEncoding.DecodeString(value[min(len(sealPrefix), len(value)):])
	if err != nil || len(value) < len(sealPrefix) || value[:len(sealPrefix)] != sealPrefix {
		return errors.New("its seal is malformed")
	}
	want, err := r.mac(ev)
	if err != nil {
		return fmt.Errorf("its data cannot be read: %w", err)
	}
	if !hmac.Equal(got, want) {
		return errors.New("its seal does not match its namespace, name and spec")
	}
	if received := ev.Spec.ReceivedAt.Time; !created.IsZero() && (received.Sub(created) > MaxSealSkew || created.Sub(received) > MaxSealSkew) {
		return fmt.Errorf("it was received at %s but created at %s: a copy of an event received before",
			received.UTC().Format(time.RFC3339), created.UTC().Format(time.RFC3339))
	}
	return nil
}

// mac is the seal's MAC: each field with its length, so that no two events share an
// input. Times are written as the API server keeps them (microseconds), the data in its
// canonical form as the API server keeps it, so that the MAC made before the create
// matches the object read back.
func (r Sealer) mac(ev *funnelv1.FunnelEvent) ([]byte, error) {
	m := hmac.New(sha256.New, r.key)
	_, _ = io.WriteString(m, "funnel-event-seal/v1\n")
	s := &ev.Spec
	for _, f := range [][2]string{
		{"namespace", ev.Namespace}, {"name", ev.Name}, {"receiver", s.Receiver}, {"format", string(s.Format)},
		{"eventID", s.EventID}, {"type", s.Type}, {"idempotencyKey", s.IdempotencyKey},
		{"receivedAt", microTime(&s.ReceivedAt)}, {"occurredAt", microTime(s.OccurredAt)},
	} {
		writeField(m, f[0], f[1])
	}
	_, _ = io.WriteString(m, "data\n")
	if err := funnel.WriteStoredJSON(m, s.Data.Raw); err != nil {
		return nil, err
	}
	return m.Sum(nil), nil
}

func writeField(h hash.Hash, name, value string) {
	_, _ = io.WriteString(h, name+" "+strconv.Itoa(len(value))+"\n"+value+"\n")
}

// microTime is t as a MicroTime is stored; "" for none.
func microTime(t *metav1.MicroTime) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(metav1.RFC3339Micro)
}

// LoadSealer reads the seal key from the Secret ref, creating the Secret with a new
// random key when there is none, so that every replica, and every restart, seals and
// checks with the same key. Replicas starting together agree: one create wins, the others
// read its key. When events are stored already (an upgrade), the new Secret trusts events
// without a seal for UpgradeGrace more, from now.
func LoadSealer(ctx context.Context, c client.Client, reader client.Reader, ref types.NamespacedName, now time.Time) (Sealer, error) {
	var s corev1.Secret
	err := reader.Get(ctx, ref, &s)
	if apierrors.IsNotFound(err) {
		key := make([]byte, MinSealKeyBytes)
		if _, err := rand.Read(key); err != nil {
			return Sealer{}, fmt.Errorf("making a seal key: %w", err)
		}
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name,
				Labels: map[string]string{"app.kubernetes.io/name": "funnel-operator"}},
			Immutable: ptr.To(true),
			Data:      map[string][]byte{SealKeyField: key},
		}
		if eventsStored(ctx, reader) {
			s.Annotations = map[string]string{AnnotationTrustUnsealedBefore: now.Add(UpgradeGrace).UTC().Format(time.RFC3339)}
		}
		err = c.Create(ctx, &s)
		if apierrors.IsAlreadyExists(err) {
			err = reader.Get(ctx, ref, &s)
		}
	}
	if err != nil {
		return Sealer{}, fmt.Errorf("reading or creating the seal key Secret %s: %w", ref, err)
	}
	since := s.CreationTimestamp.Time
	if v, ok := s.Annotations[AnnotationTrustUnsealedBefore]; ok {
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			return Sealer{}, fmt.Errorf("Secret %s, annotation %s: %w", ref, AnnotationTrustUnsealedBefore, err)
		}
	}
	r, err := NewSealer(s.Data[SealKeyField], since)
	if err != nil {
		return Sealer{}, fmt.Errorf("Secret %s, key %q: %w", ref, SealKeyField, err)
	}
	return r, nil
}

// eventsStored reports whether any FunnelEvent exists: then the operator is being
// upgraded to seals. When it cannot tell (an installation scoped to namespaces may not
// list cluster-wide), it says yes: a grace given for nothing is better than events of the
// replicas before left undelivered.
func eventsStored(ctx context.Context, reader client.Reader) bool {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
	if err := reader.List(ctx, &list, client.Limit(1)); err != nil {
		return true
	}
	return len(list.Items) > 0
}
