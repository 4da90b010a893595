package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/metawrite"
)

// variant is a FunnelEvent CRD the costs phase writes to: the real one, or a copy of it
// under a group of the bench's with one thing changed, so that two schemas can be
// compared on the same API server at the same moment. The copies' groups are as long as
// the real one, so that their objects are the same size.
type variant struct {
	name  string
	group string
	// mw creates and patches the way the receiver and the controllers do.
	mw *metawrite.Client
	// c is a typed client of the variant (full answers).
	c client.Client
	// rest sends the bench's own requests, answered with metadata like mw's.
	rest rest.Interface
}

// crdChange is one change the costs phase makes to a copy of the FunnelEvent CRD.
type crdChange struct {
	name string
	// group is the copy's, as long as funnel.leasing.dev.
	group string
	// change edits the copy's schema (nil: none).
	change func(*apiextensionsv1.JSONSchemaProps) error
	// specPolicy: the spec's immutability is a ValidatingAdmissionPolicy's.
	specPolicy bool
}

// The copies of the FunnelEvent CRD.
const (
	variantShipped  = "shipped"
	variantNoRule   = "no spec rule"
	variantPolicy   = "spec rule in an admission policy"
	variantGranular = "per-field spec and status"
)

var crdChanges = []crdChange{
	{name: variantShipped, group: "a.funnel.bench.dev"},
	{name: variantNoRule, group: "b.funnel.bench.dev", change: dropSpecRule},
	{name: variantPolicy, group: "c.funnel.bench.dev", change: dropSpecRule, specPolicy: true},
	{name: variantGranular, group: "d.funnel.bench.dev", change: granular("spec", "status")},
}

// dropSpecRule removes the spec's immutability rule.
func dropSpecRule(s *apiextensionsv1.JSONSchemaProps) error {
	spec := s.Properties["spec"]
	n := len(spec.XValidations)
	spec.XValidations = slices.DeleteFunc(spec.XValidations, func(r apiextensionsv1.ValidationRule) bool { return r.Rule == specImmutable })
	if len(spec.XValidations) == n {
		return fmt.Errorf("the FunnelEvent CRD's spec has no rule %q any more: the costs phase's variants need updating", specImmutable)
	}
	s.Properties["spec"] = spec
	return nil
}

// granular gives the fields' own fields their own managedFields entries (what the CRD had
// before spec and status became atomic).
func granular(fields ...string) func(*apiextensionsv1.JSONSchemaProps) error {
	return func(s *apiextensionsv1.JSONSchemaProps) error {
		for _, f := range fields {
			p, ok := s.Properties[f]
			if !ok || p.XMapType == nil || *p.XMapType != "atomic" {
				return fmt.Errorf("the FunnelEvent CRD's %s is not atomic any more: the costs phase's variants need updating", f)
			}
			p.XMapType = nil
			s.Properties[f] = p
		}
		return nil
	}
}

// specImmutable is the CRD's rule that keeps the spec as the receiver wrote it.
const specImmutable = "self == oldSelf"

// newVariant makes the clients of the FunnelEvent kind in group.
func (b *bench) newVariant(name, group string) (*variant, error) {
	scheme := runtime.NewScheme()
	gv := schema.GroupVersion{Group: group, Version: funnelv1.GroupVersion.Version}
	scheme.AddKnownTypes(gv, &funnelv1.FunnelEvent{}, &funnelv1.FunnelEventList{})
	metav1.AddToGroupVersion(scheme, gv)
	c, err := client.New(b.cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", name, err)
	}
	mw, err := metawrite.New(b.cp.Config, c)
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", name, err)
	}
	rc, err := rest.UnversionedRESTClientFor(metadata.ConfigFor(b.cp.Config))
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", name, err)
	}
	return &variant{name: name, group: group, mw: mw, c: c, rest: rc}, nil
}

// installVariants installs the copies of the FunnelEvent CRD and returns their clients,
// the real CRD's first.
func (b *bench) installVariants(ctx context.Context) (map[string]*variant, error) {
	out := map[string]*variant{}
	real, err := b.newVariant("real", funnelv1.GroupVersion.Group)
	if err != nil {
		return nil, err
	}
	out["real"] = real
	raw, err := os.ReadFile(filepath.Join(b.o.crds, "funnel.leasing.dev_funnelevents.yaml"))
	if err != nil {
		return nil, fmt.Errorf("reading the FunnelEvent CRD: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	crds, err := client.New(b.cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	for _, ch := range crdChanges {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(raw, crd); err != nil {
			return nil, fmt.Errorf("decoding the FunnelEvent CRD: %w", err)
		}
		crd.Name, crd.Spec.Group = "funnelevents."+ch.group, ch.group
		if ch.change != nil {
			for i := range crd.Spec.Versions {
				if err := ch.change(crd.Spec.Versions[i].Schema.OpenAPIV3Schema); err != nil {
					return nil, err
				}
			}
		}
		if err := crds.Create(ctx, crd); err != nil {
			return nil, fmt.Errorf("installing CRD %s: %w", crd.Name, err)
		}
		if ch.specPolicy {
			if err := b.specPolicy(ctx, ch.group); err != nil {
				return nil, err
			}
		}
		if out[ch.name], err = b.newVariant(ch.name, ch.group); err != nil {
			return nil, err
		}
	}
	// Established, and the policy in force: a spec change is refused by every variant but
	// "no spec rule", which must accept it.
	for name, v := range out {
		if err := b.poll(ctx, time.Minute, "variant "+name+" to be served and its spec rule in force", func() (bool, error) {
			return v.checkImmutable(ctx, name != variantNoRule)
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// specPolicy makes the spec of group's FunnelEvents immutable with a
// ValidatingAdmissionPolicy instead of the CRD's rule: it matches updates of the resource,
// not of its status subresource, so a status write does not evaluate it.
func (b *bench) specPolicy(ctx context.Context, group string) error {
	name := "spec-immutable." + group
	fail := admissionregistrationv1.Fail
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"},
						Resources: []string{"funnelevents"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "object.spec == oldObject.spec", Message: "spec is immutable"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
	for _, o := range []client.Object{policy, binding} {
		if err := b.c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
	}
	return nil
}

// checkImmutable creates an event and tries to change its spec: true once the variant is
// served and the change is refused (refuse) or accepted (!refuse).
func (v *variant) checkImmutable(ctx context.Context, refuse bool) (bool, error) {
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: nsCosts, GenerateName: "immutable-"},
		Spec: funnelv1.FunnelEventSpec{Receiver: "r", Format: funnelv1.FormatV3, Type: "lease.move_in",
			ReceivedAt: metav1.NowMicro(), Data: runtime.RawExtension{Raw: []byte(`{}`)}}}
	if err := v.c.Create(ctx, ev); err != nil {
		return false, nil //nolint:nilerr // not served yet
	}
	err := v.c.Patch(ctx, ev, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"type":"lease.move_out"}}`)))
	_ = v.c.Delete(ctx, ev)
	switch {
	case err == nil:
		return !refuse, nil
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		return refuse, nil
	case strings.Contains(err.Error(), "spec is immutable"):
		return refuse, nil
	}
	return false, nil
}
