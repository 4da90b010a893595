package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// ReceiverName is the name of the FunnelReceiver NewReceiver creates.
const ReceiverName = "funnel"

// Receiver is a namespace's FunnelReceiver and the secrets it checks.
type Receiver struct {
	Namespace string
	// Token is the receiver's token; HMACKey its HMAC key (nil when it checks none).
	Token   string
	HMACKey []byte
}

// NewReceiver creates namespace ns (unless it exists), a Secret "funnel-auth" with a
// random token (and HMAC key, with hmac), and the FunnelReceiver "funnel" that checks
// them, with the defaults (no rate limit) but no count cap on retention, so that what a
// test or benchmark stores stays until it is done.
func NewReceiver(ctx context.Context, c client.Client, ns string, hmac bool) (*Receiver, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("harness: creating namespace %s: %w", ns, err)
	}
	r := &Receiver{Namespace: ns, Token: RandomSecret()}
	const secret = "funnel-auth"
	data := map[string]string{"token": r.Token}
	auth := funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{SecretRef: funnelv1.SecretKeyRef{Name: secret, Key: "token"}}}
	if hmac {
		r.HMACKey = []byte(RandomSecret())
		data["hmac"] = string(r.HMACKey)
		auth.HMAC = &funnelv1.HMACAuth{SecretRef: funnelv1.SecretKeyRef{Name: secret, Key: "hmac"}}
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secret}, StringData: data}); err != nil {
		return nil, fmt.Errorf("harness: creating Secret %s/%s: %w", ns, secret, err)
	}
	if err := c.Create(ctx, &funnelv1.FunnelReceiver{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ReceiverName},
		Spec:       funnelv1.FunnelReceiverSpec{Auth: auth, Retention: funnelv1.Retention{MaxEvents: ptr.To[int32](0)}},
	}); err != nil {
		return nil, fmt.Errorf("harness: creating FunnelReceiver %s/%s: %w", ns, ReceiverName, err)
	}
	return r, nil
}

// Auth authenticates requests to the receiver.
func (r *Receiver) Auth() send.Auth { return send.Auth{Token: r.Token, HMACKey: r.HMACKey} }

// WaitReady waits until the operator reports the receiver Ready.
func (r *Receiver) WaitReady(ctx context.Context, c client.Client, timeout time.Duration) error {
	return WaitReceiverReady(ctx, c, client.ObjectKey{Namespace: r.Namespace, Name: ReceiverName}, timeout)
}

// WaitReceiverReady waits until FunnelReceiver key has the condition Ready=True (set by
// the operator); after timeout the error says what the receiver last reported.
func WaitReceiverReady(ctx context.Context, c client.Client, key client.ObjectKey, timeout time.Duration) error {
	last := "not found"
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var rcv funnelv1.FunnelReceiver
		if err := c.Get(ctx, key, &rcv); err != nil {
			last = err.Error()
			return false, nil
		}
		ready := meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionReady)
		if ready == nil {
			last = "no Ready condition yet"
			return false, nil
		}
		last = fmt.Sprintf("Ready=%s (%s: %s)", ready.Status, ready.Reason, ready.Message)
		return ready.Status == metav1.ConditionTrue, nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("harness: FunnelReceiver %s not Ready after %s: %s", key, timeout, last)
	}
	return err
}

// RandomSecret is 48 random hex digits, for tokens and keys.
func RandomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
