package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Backfill defaults and bounds.
const (
	DefaultBackfillEventsPerSecond int32 = 10
	MaxBackfillEventsPerSecond     int32 = 1000
)

// FunnelBackfillSpec says which archived events go to which one subscription. It is
// immutable: a backfill is one run; make another for other events.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create another FunnelBackfill"
// +kubebuilder:validation:XValidation:rule="!has(self.receivedAfter) || !has(self.receivedBefore) || self.receivedAfter < self.receivedBefore",message="receivedAfter must be before receivedBefore"
type FunnelBackfillSpec struct {
	// subscription is the FunnelSubscription (same namespace) the events are delivered to,
	// and no other. Its action must be HTTP.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Subscription string `json:"subscription"`

	// eventTypes are exact event types or prefix patterns (lease_transaction.*, or *).
	// Empty: the subscription's own eventTypes.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	EventTypes []string `json:"eventTypes,omitempty"`

	// selector selects events by their labels, e.g. funnel.leasing.dev/community-id.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// receivedAfter keeps events received at or after this time.
	// +optional
	ReceivedAfter *metav1.Time `json:"receivedAfter,omitempty"`

	// receivedBefore keeps events received before this time. Unset: the backfill's
	// creation (later events were routed to the subscription as they came).
	// +optional
	ReceivedBefore *metav1.Time `json:"receivedBefore,omitempty"`

	// eventsPerSecond paces the deliveries.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	EventsPerSecond int32 `json:"eventsPerSecond,omitempty"`
}

// FunnelBackfillStatus is how far a backfill got. Each event's outcome is recorded in
// the archive, not here.
type FunnelBackfillStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the subscription and the archive are usable), Complete (every
	// matching event was delivered or failed for good).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// delivered counts the events the subscription accepted.
	// +optional
	Delivered int64 `json:"delivered,omitempty"`

	// failed counts the events whose delivery failed for good.
	// +optional
	Failed int64 `json:"failed,omitempty"`

	// remaining counts the matching events not yet attempted (as of the last update).
	// +optional
	Remaining int64 `json:"remaining,omitempty"`

	// position is where the backfill resumes: an opaque position in receipt order.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Position string `json:"position,omitempty"`

	// startTime is when the first delivery started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the backfill completed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// FunnelBackfill delivers archived events again, to one subscription only: a new
// subscription gets the history it missed. Rate-limited, resumable after a restart,
// stopped by deleting it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fbf,categories=funnel
// +kubebuilder:printcolumn:name="Subscription",type=string,JSONPath=`.spec.subscription`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.delivered`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`
// +kubebuilder:printcolumn:name="Remaining",type=integer,JSONPath=`.status.remaining`
// +kubebuilder:printcolumn:name="Complete",type=string,JSONPath=`.status.conditions[?(@.type=="Complete")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FunnelBackfill struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to deliver where.
	// +required
	Spec FunnelBackfillSpec `json:"spec"`

	// status is how far it got.
	// +optional
	Status FunnelBackfillStatus `json:"status,omitempty"`
}

// FunnelBackfillList is a list of FunnelBackfills.
//
// +kubebuilder:object:root=true
type FunnelBackfillList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FunnelBackfill `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FunnelBackfill{}, &FunnelBackfillList{})
}
