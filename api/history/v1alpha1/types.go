// Package v1alpha1 holds the history.funnel.leasing.dev/v1alpha1 API: ArchivedEvent, a
// read-only view of the FunnelEvents in the PostgreSQL archive, served by the operator
// as an aggregated API (kubectl get archivedevents), under the cluster's RBAC.
//
// Not a CRD: +kubebuilder:skip keeps controller-gen from making one.
//
// +kubebuilder:object:generate=true
// +kubebuilder:skip
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// GroupName is the history API's group.
const GroupName = "history.funnel.leasing.dev"

// SchemeGroupVersion is the group and version of every kind in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Field selectors of archived events, besides metadata.name and metadata.namespace:
// equality only; the time bounds take RFC 3339 times.
const (
	FieldType     = funnelv1.FieldType
	FieldReceiver = funnelv1.FieldReceiver
	FieldPhase    = funnelv1.FieldPhase
	// FieldReceivedAfter keeps events received at or after the time.
	FieldReceivedAfter = "spec.receivedAt.after"
	// FieldReceivedBefore keeps events received before the time.
	FieldReceivedBefore = "spec.receivedAt.before"
)

// Annotations on archived events.
const (
	// AnnotationVersion is the archive row's version: 1, plus one per later change of the
	// finished event (a replay that finished again, a duplicate counted).
	AnnotationVersion = "history.funnel.leasing.dev/version"
	// AnnotationArchivedAt is when the row was last written (RFC 3339).
	AnnotationArchivedAt = "history.funnel.leasing.dev/archived-at"
)

// ArchivedEvent is a FunnelEvent as the archive holds it: its metadata (name, namespace,
// uid, labels, creation time), the event as received, and what the operator did with it.
//
// +kubebuilder:object:root=true
type ArchivedEvent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the event as received.
	Spec funnelv1.FunnelEventSpec `json:"spec"`

	// status is the final status the event had when it was archived.
	Status funnelv1.FunnelEventStatus `json:"status,omitempty"`
}

// ArchivedEventList is a page of archived events, oldest received first.
//
// +kubebuilder:object:root=true
type ArchivedEventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ArchivedEvent `json:"items"`
}

// AddToScheme registers the kinds, for clients.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &ArchivedEvent{}, &ArchivedEventList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
