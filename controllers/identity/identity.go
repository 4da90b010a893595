// Package identity gives the operator clients that act as a FunnelSubscription's
// ServiceAccount (client-go impersonation): whatever a subscription makes the operator do
// in the cluster — create its Jobs, dry-run their template, read the Secrets its actions
// name — is authorized as that account, never as the operator.
package identity

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// The operator's only grant for its tenants' work: acting as their ServiceAccounts.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=impersonate

// maxClients bounds the per-account clients kept; one is cheap to rebuild (they share
// one transport), so the bound only caps memory in clusters with many accounts.
const maxClients = 256

// ErrNoServiceAccount: the subscription names no ServiceAccount and there is no default.
var ErrNoServiceAccount = errors.New("no ServiceAccount: set spec.serviceAccountName, or run the operator with --default-service-account")

// Username is the user name the API server gives ServiceAccount name of namespace ns.
func Username(ns, name string) string { return "system:serviceaccount:" + ns + ":" + name }

// Clients hands out clients that act as ServiceAccounts. They share the operator's
// connections and one client-side rate limit.
type Clients struct {
	// Default is the ServiceAccount used by subscriptions that name none
	// (--default-service-account); none when empty.
	Default string

	cfg       *rest.Config
	transport http.RoundTripper
	scheme    *runtime.Scheme
	mapper    meta.RESTMapper
	clients   *lru.Cache
}

// New builds Clients from the operator's own configuration.
func New(cfg *rest.Config, scheme *runtime.Scheme, mapper meta.RESTMapper, defaultAccount string) (*Clients, error) {
	base := rest.CopyConfig(cfg)
	// The operator's credentials impersonate; a configured impersonation would hide
	// whether the operator itself may.
	base.Impersonate = rest.ImpersonationConfig{}
	if base.RateLimiter == nil && base.QPS > 0 {
		base.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(base.QPS, max(base.Burst, 1))
	}
	rt, err := rest.TransportFor(base)
	if err != nil {
		return nil, fmt.Errorf("building the impersonating transport: %w", err)
	}
	return &Clients{Default: defaultAccount, cfg: base, transport: rt, scheme: scheme, mapper: mapper, clients: lru.New(maxClients)}, nil
}

// ServiceAccountOf is the account a subscription acts as: its own, else the default;
// "" when it has none.
func (c *Clients) ServiceAccountOf(sub *funnelv1.FunnelSubscription) string {
	if sub.Spec.ServiceAccountName != "" {
		return sub.Spec.ServiceAccountName
	}
	return c.Default
}

// For returns a client acting as the subscription's ServiceAccount, or
// ErrNoServiceAccount. There is no fallback to the operator's own identity.
func (c *Clients) For(sub *funnelv1.FunnelSubscription) (client.Client, error) {
	sa := c.ServiceAccountOf(sub)
	if sa == "" {
		return nil, ErrNoServiceAccount
	}
	return c.ForAccount(sub.Namespace, sa)
}

// ForAccount returns a client acting as ServiceAccount name of namespace ns.
func (c *Clients) ForAccount(ns, name string) (client.Client, error) {
	user := Username(ns, name)
	if v, ok := c.clients.Get(user); ok {
		return v.(client.Client), nil
	}
	// Without groups the API server adds the account's own (system:serviceaccounts and
	// system:serviceaccounts:<ns>), exactly as for the account's token.
	hc := &http.Client{Transport: transport.NewImpersonatingRoundTripper(transport.ImpersonationConfig{UserName: user}, c.transport),
		Timeout: c.cfg.Timeout}
	cl, err := client.New(c.cfg, client.Options{HTTPClient: hc, Scheme: c.scheme, Mapper: c.mapper})
	if err != nil {
		return nil, fmt.Errorf("creating a client acting as %s: %w", user, err)
	}
	c.clients.Add(user, cl)
	return cl, nil
}

// Needs lists the fields of a subscription that act in the cluster, and so need a
// ServiceAccount: Job actions and Secret references. HTTP actions without Secrets need
// none.
func Needs(sub *funnelv1.FunnelSubscription) []string {
	var out []string
	for _, a := range []struct {
		field  string
		action *funnelv1.Action
	}{{"spec.action", &sub.Spec.Action}, {"spec.delivery.deadLetter", sub.Spec.Delivery.DeadLetter}} {
		switch {
		case a.action == nil:
		case a.action.Job != nil:
			out = append(out, a.field+".job")
		case a.action.HTTP != nil:
			for i := range a.action.HTTP.HeadersFrom {
				out = append(out, fmt.Sprintf("%s.http.headersFrom[%d]", a.field, i))
			}
			if a.action.HTTP.Signing != nil {
				out = append(out, a.field+".http.signing")
			}
			if a.action.HTTP.SigningSecretRef != nil {
				out = append(out, a.field+".http.signingSecretRef")
			}
		}
	}
	return out
}

// Describe says which fields need an account, for a condition message.
func Describe(fields []string) string {
	if len(fields) > 3 {
		return strings.Join(fields[:3], ", ") + fmt.Sprintf(" and %d more", len(fields)-3)
	}
	return strings.Join(fields, ", ")
}
