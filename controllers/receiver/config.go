// Package receiver is the front door: the HTTP server Funnel Leasing posts events to. It
// authenticates each request against its FunnelReceiver, parses the envelope, and creates
// the FunnelEvent before answering, so an acknowledged event is always stored.
package receiver

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Config is a receiver's configuration resolved against its Secrets: everything a request
// is checked with. It is computed from the informer cache, never with an API call.
type Config struct {
	// Ready is the receiver's Ready condition as computed now; requests are refused with
	// 503 unless it is True.
	Ready metav1.Condition

	Token       []byte
	TokenHeader string

	HMACKey       []byte
	HMACHeader    string
	HMACAlgorithm funnelv1.HMACAlgorithm

	AllowedCIDRs   []netip.Prefix
	TrustedProxies []netip.Prefix

	Formats      []funnelv1.EventFormat
	MaxBodyBytes int64
	// RateLimit is the receiver's rate limit, nil for none.
	RateLimit *funnelv1.RateLimit
}

// Policy is what the operator's administrator allows receivers to ask for, whatever their
// spec says (manager flags).
type Policy struct {
	// AllowInsecure lets spec.auth.insecureSkipAuth take effect (--allow-insecure-receivers).
	// Without it such a receiver is not Ready: whoever may create a FunnelReceiver must not
	// be able to open an unauthenticated door into the cluster on their own.
	AllowInsecure bool
}

// SecretUse is one Secret key a receiver depends on, with the spec field naming it.
type SecretUse struct {
	Field string
	Ref   funnelv1.SecretKeyRef
	// hmac: the key is the HMAC key rather than the token.
	hmac bool
}

// SecretUses lists the Secret keys a receiver's authentication depends on.
func SecretUses(rcv *funnelv1.FunnelReceiver) []SecretUse {
	var uses []SecretUse
	if t := rcv.Spec.Auth.Token; t != nil {
		uses = append(uses, SecretUse{Field: "spec.auth.token.secretRef", Ref: t.SecretRef})
	}
	if h := rcv.Spec.Auth.HMAC; h != nil {
		uses = append(uses, SecretUse{Field: "spec.auth.hmac.secretRef", Ref: h.SecretRef, hmac: true})
	}
	return uses
}

// Resolve reads the receiver's Secrets and decides its Ready condition. Configuration
// problems become a False condition whose reason and message the user can act on; only
// unexpected API errors are returned. The FunnelReceiver controller and the HTTP server
// share it, so the status users see is exactly what requests are checked against.
func Resolve(ctx context.Context, r client.Reader, rcv *funnelv1.FunnelReceiver, policy Policy) (*Config, error) {
	spec := rcv.Spec
	cfg := &Config{
		TokenHeader:   funnelv1.DefaultTokenHeader,
		HMACHeader:    funnelv1.DefaultHMACHeader,
		HMACAlgorithm: funnelv1.HMACSHA256,
		Formats:       spec.Formats,
		MaxBodyBytes:  funnelv1.DefaultMaxBodyBytes,
		RateLimit:     spec.RateLimit,
	}
	if len(cfg.Formats) == 0 {
		cfg.Formats = funnelv1.AllFormats
	}
	if spec.MaxBodyBytes != nil {
		cfg.MaxBodyBytes = min(*spec.MaxBodyBytes, funnelv1.MaxMaxBodyBytes)
	}
	if rl := spec.RateLimit; rl != nil && rl.Burst <= 0 {
		cfg.RateLimit = &funnelv1.RateLimit{RequestsPerSecond: rl.RequestsPerSecond, Burst: 2 * rl.RequestsPerSecond}
	}
	if t := spec.Auth.Token; t != nil && t.Header != "" {
		cfg.TokenHeader = t.Header
	}
	if h := spec.Auth.HMAC; h != nil {
		if h.Header != "" {
			cfg.HMACHeader = h.Header
		}
		if h.Algorithm != "" {
			cfg.HMACAlgorithm = h.Algorithm
		}
	}

	notReady := func(reason, format string, args ...any) (*Config, error) {
		cfg.Ready = metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: reason, Message: fmt.Sprintf(format, args...)}
		return cfg, nil
	}
	var err error
	if cfg.AllowedCIDRs, err = parsePrefixes(spec.Auth.AllowedCIDRs); err != nil {
		return notReady(funnelv1.ReasonInvalidSpec, "spec.auth.allowedCIDRs: %v", err)
	}
	if cfg.TrustedProxies, err = parsePrefixes(spec.Auth.TrustedProxies); err != nil {
		return notReady(funnelv1.ReasonInvalidSpec, "spec.auth.trustedProxies: %v", err)
	}
	if spec.Auth.Token == nil && spec.Auth.HMAC == nil && !spec.Auth.InsecureSkipAuth {
		return notReady(funnelv1.ReasonNoAuth,
			"No authentication configured: set spec.auth.token or spec.auth.hmac, or spec.auth.insecureSkipAuth: true to accept unauthenticated requests")
	}
	if spec.Auth.InsecureSkipAuth && !policy.AllowInsecure {
		return notReady(funnelv1.ReasonInsecureNotAllowed,
			"spec.auth.insecureSkipAuth is set, but the operator does not allow unauthenticated receivers (--allow-insecure-receivers): set spec.auth.token or spec.auth.hmac")
	}
	for _, use := range SecretUses(rcv) {
		var secret corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: rcv.Namespace, Name: use.Ref.Name}, &secret)
		if apierrors.IsNotFound(err) {
			return notReady(funnelv1.ReasonSecretNotFound, "Secret %q referenced by %s does not exist", use.Ref.Name, use.Field)
		}
		if apierrors.IsForbidden(err) {
			// The admin scoped the operator's Secret reads (RoleBindings per namespace).
			return notReady(funnelv1.ReasonForbidden, "The operator may not read Secret %q referenced by %s: %v", use.Ref.Name, use.Field, err)
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", rcv.Namespace, use.Ref.Name, err)
		}
		value := secret.Data[use.Ref.Key]
		if len(value) == 0 {
			return notReady(funnelv1.ReasonSecretKeyMissing, "Secret %q has no non-empty key %q (referenced by %s)", use.Ref.Name, use.Ref.Key, use.Field)
		}
		if use.hmac {
			cfg.HMACKey = value
		} else {
			cfg.Token = value
		}
	}
	if spec.Suspend {
		return notReady(funnelv1.ReasonSuspended, "spec.suspend is set: requests are answered 503 so Funnel retries later")
	}
	cfg.Ready = metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: funnelv1.ReasonAccepting, Message: "Accepting events at " + rcv.WebhookPath()}
	return cfg, nil
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", c)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
