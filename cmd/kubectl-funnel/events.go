package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// pageSize is how many FunnelEvents one List call asks for. A cluster may
// hold 100k of them: paging keeps both the API server's answers and this
// process small, since every command works page by page.
const pageSize = 500

// eventScope is where a command looks for FunnelEvents: the namespace of -n
// (or the kubeconfig), or every namespace with -A.
type eventScope struct {
	// namespace is "" when all is set.
	namespace string
	all       bool
}

func resolveScope(kube *kubeOptions, allNamespaces bool) (eventScope, error) {
	if allNamespaces {
		return eventScope{all: true}, nil
	}
	ns, err := kube.Namespace()
	if err != nil {
		return eventScope{}, err
	}
	return eventScope{namespace: ns}, nil
}

// String reads as the end of a sentence: "in namespace default".
func (s eventScope) String() string {
	if s.all {
		return "in any namespace"
	}
	return "in namespace " + s.namespace
}

// eventPhase is where an event is, as the commands report it: its
// status.phase, and Pending for an event no reconciler has written yet.
func eventPhase(ev *funnelv1.FunnelEvent) funnelv1.EventPhase {
	return cmp.Or(ev.Status.Phase, funnelv1.PhasePending)
}

// eventFilter selects the events of one receiver and one type; empty
// fields select everything.
type eventFilter struct {
	receiver  string
	eventType string
}

// selector is the filter as a field selector on spec.receiver and
// spec.type, two of the CRD's selectableFields: the API server compares
// the names exactly, in lists and in watches. It is nil when the filter
// selects everything.
func (f eventFilter) selector() fields.Selector {
	var terms []fields.Selector
	if f.receiver != "" {
		terms = append(terms, fields.OneTermEqualSelector(funnelv1.FieldReceiver, f.receiver))
	}
	if f.eventType != "" {
		terms = append(terms, fields.OneTermEqualSelector(funnelv1.FieldType, f.eventType))
	}
	return andFields(terms...)
}

// andFields is the conjunction of the non-nil selectors, nil if there is
// none, so that "no field selector" stays nil all the way to the request.
func andFields(sels ...fields.Selector) fields.Selector {
	sels = slices.DeleteFunc(sels, func(s fields.Selector) bool { return s == nil || s.Empty() })
	switch len(sels) {
	case 0:
		return nil
	case 1:
		return sels[0]
	}
	return fields.AndSelectors(sels...)
}

// eventSelector is what the API server selects FunnelEvents by: labels,
// and the fields the CRD declares selectable (status.phase, spec.type,
// spec.receiver). A nil selector selects everything.
type eventSelector struct {
	labels labels.Selector
	fields fields.Selector
}

// listOptions are the options of a List or Watch of the events of scope
// that s selects.
func (s eventSelector) listOptions(scope eventScope) *client.ListOptions {
	return &client.ListOptions{Namespace: scope.namespace, LabelSelector: s.labels, FieldSelector: s.fields}
}

// parseSelectors parses the -l and --field-selector flags, kubectl style;
// empty flags select everything.
func parseSelectors(labelSel, fieldSel string) (eventSelector, error) {
	var sel eventSelector
	var err error
	if labelSel != "" {
		if sel.labels, err = labels.Parse(labelSel); err != nil {
			return eventSelector{}, fmt.Errorf("--selector %q: %w", labelSel, err)
		}
	}
	if fieldSel != "" {
		if sel.fields, err = fields.ParseSelector(fieldSel); err != nil {
			return eventSelector{}, fmt.Errorf("--field-selector %q: %w", fieldSel, err)
		}
	}
	return sel, nil
}

// listEvents lists the FunnelEvents of scope that sel selects, pageSize at
// a time, and hands each page to each before it asks for the next, so no
// more than one page is held. It returns the resource version of the list,
// from which a watch can resume.
func listEvents(ctx context.Context, c client.Reader, scope eventScope, sel eventSelector, each func([]funnelv1.FunnelEvent) error) (string, error) {
	cont := ""
	for {
		var page funnelv1.FunnelEventList
		opts := sel.listOptions(scope)
		opts.Limit, opts.Continue = pageSize, cont
		if err := c.List(ctx, &page, opts); err != nil {
			return "", listError(err, scope)
		}
		if err := each(page.Items); err != nil {
			return "", err
		}
		if cont = page.Continue; cont == "" {
			return page.ResourceVersion, nil
		}
	}
}

// listError explains the failures of a List a user can do something about.
func listError(err error, scope eventScope) error {
	switch {
	case meta.IsNoMatchError(err):
		return fmt.Errorf("the FunnelEvent kind is not installed in this cluster (install funnel-operator's CRDs): %w", err)
	case apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "field label not supported"):
		return fmt.Errorf("listing FunnelEvents %s: the API server cannot select FunnelEvents by this field. They can be selected by %s, %s and %s, "+
			"on Kubernetes 1.31 or later with the CRDs of this funnel-operator version installed: %w",
			scope, funnelv1.FieldPhase, funnelv1.FieldType, funnelv1.FieldReceiver, err)
	case apierrors.IsResourceExpired(err):
		return fmt.Errorf("listing FunnelEvents %s: the listing expired between two pages (the API server keeps it about 5 minutes); run the command again: %w", scope, err)
	}
	return fmt.Errorf("listing FunnelEvents %s: %w", scope, err)
}

// eventRef names an event the way kubectl does, with its namespace when
// the command spans several: funnelevent/NAME [-n NAMESPACE]. Either way
// it can be pasted after kubectl get.
func eventRef(key types.NamespacedName, scope eventScope) string {
	if scope.all {
		return "funnelevent/" + key.Name + " -n " + key.Namespace
	}
	return "funnelevent/" + key.Name
}
