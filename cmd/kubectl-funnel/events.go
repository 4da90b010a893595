package main

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
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

// eventPhase is where an event is, as the commands report it: the
// funnel.leasing.dev/done label when it holds a final phase (the operator
// sets it on finished events, and it is what retention and the cache go
// by), else status.phase, and Pending for an event no reconciler has
// written yet.
func eventPhase(ev *funnelv1.FunnelEvent) funnelv1.EventPhase {
	if done := funnelv1.EventPhase(ev.Labels[funnelv1.LabelDone]); done.Finished() {
		return done
	}
	if ev.Status.Phase == "" {
		return funnelv1.PhasePending
	}
	return ev.Status.Phase
}

// eventFilter selects the events of one receiver and one type; empty
// fields select everything.
type eventFilter struct {
	receiver  string
	eventType string
}

// selector is the filter as a label selector, for the API server. The
// labels hold funnel.LabelValue of the names, as the receiver writes them.
func (f eventFilter) selector() labels.Selector {
	set := labels.Set{}
	if f.receiver != "" {
		set[funnelv1.LabelReceiver] = funnel.LabelValue(f.receiver)
	}
	if f.eventType != "" {
		set[funnelv1.LabelEventType] = funnel.LabelValue(f.eventType)
	}
	return labels.SelectorFromValidatedSet(set)
}

// matches applies the filter to one event. The API server already applied
// the selector; this is exact where LabelValue is lossy (a type that is not
// a valid label value) and holds for watches that ignore the selector.
func (f eventFilter) matches(ev *funnelv1.FunnelEvent) bool {
	return f.selector().Matches(labels.Set(ev.Labels)) &&
		(f.receiver == "" || ev.Spec.Receiver == f.receiver) &&
		(f.eventType == "" || ev.Spec.Type == f.eventType)
}

// listEvents lists the FunnelEvents of scope that sel selects, pageSize at
// a time, and hands each page to each before it asks for the next, so no
// more than one page is held. It returns the resource version of the list,
// from which a watch can resume.
func listEvents(ctx context.Context, c client.Reader, scope eventScope, sel labels.Selector, each func([]funnelv1.FunnelEvent) error) (string, error) {
	cont := ""
	for {
		var page funnelv1.FunnelEventList
		opts := &client.ListOptions{Namespace: scope.namespace, LabelSelector: sel, Limit: pageSize, Continue: cont}
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
