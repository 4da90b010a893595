package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// EventFormat is the envelope shape Funnel used for an event.
// +kubebuilder:validation:Enum=Classic;V3;PartnerV2
type EventFormat string

const (
	// FormatClassic is the "Event Object": integer id, event_type, event_timestamp, event_data.
	FormatClassic EventFormat = "Classic"
	// FormatV3 is the V3 webhook: UUID id, event, ISO timestamp, data.
	FormatV3 EventFormat = "V3"
	// FormatPartnerV2 is the Partner API prospect webhook: event and data only.
	FormatPartnerV2 EventFormat = "PartnerV2"
)

// AllFormats lists every envelope format, in documentation order.
var AllFormats = []EventFormat{FormatClassic, FormatV3, FormatPartnerV2}

// EventPhase is where a FunnelEvent is in its lifecycle.
// +kubebuilder:validation:Enum=Pending;Processing;Succeeded;Failed;Ignored
type EventPhase string

const (
	// PhasePending: stored, not yet looked at by a reconciler.
	PhasePending EventPhase = "Pending"
	// PhaseProcessing: validated, deliveries under way or awaiting a retry.
	PhaseProcessing EventPhase = "Processing"
	// PhaseSucceeded: valid, and every delivery succeeded (or none was wanted).
	PhaseSucceeded EventPhase = "Succeeded"
	// PhaseFailed: invalid data, or a delivery failed for good.
	PhaseFailed EventPhase = "Failed"
	// PhaseIgnored: a valid event of a type no handler knows and no subscription wants.
	PhaseIgnored EventPhase = "Ignored"
)

// Finished reports whether the phase is final: nothing more happens unless replayed.
func (p EventPhase) Finished() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseIgnored
}

// DeliveryPhase is the state of one subscription's delivery of an event.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type DeliveryPhase string

const (
	// DeliveryPending: not attempted yet, or waiting for the next retry.
	DeliveryPending DeliveryPhase = "Pending"
	// DeliveryRunning: an attempt is under way: a Job, or an HTTP call waiting for a
	// delivery worker or for the target's answer.
	DeliveryRunning DeliveryPhase = "Running"
	// DeliverySucceeded: the action succeeded.
	DeliverySucceeded DeliveryPhase = "Succeeded"
	// DeliveryFailed: the action failed for good (retries exhausted or a permanent error).
	DeliveryFailed DeliveryPhase = "Failed"
)

// Lengths of FunnelEventSpec fields; longer values are kept whole in annotations.
const (
	MaxEventIDLength        = 253
	MaxIdempotencyKeyLength = 512
)

// DeliveryWaitReason says why a Pending delivery is held back instead of attempted.
// +kubebuilder:validation:Enum=SubscriptionNotReady;Suspended;Ordering;CircuitOpen;MaxInFlight
type DeliveryWaitReason string

const (
	// WaitSubscriptionNotReady: the subscription is not Ready for a reason outside the
	// event (a Secret missing, a permission refused, a Job template the API server
	// refuses); the delivery goes ahead once it is Ready.
	WaitSubscriptionNotReady DeliveryWaitReason = "SubscriptionNotReady"
	// WaitSuspended: the subscription is suspended; the delivery goes ahead when resumed.
	WaitSuspended DeliveryWaitReason = "Suspended"
	// WaitOrdering: the subscription orders deliveries by subject, and an earlier event of
	// this one's subject has not finished its delivery yet (the message names it).
	WaitOrdering DeliveryWaitReason = "Ordering"
	// WaitCircuitOpen: the subscription's destination keeps failing (its circuit breaker is
	// open); the delivery waits for a probe to find it answering, without spending a retry.
	WaitCircuitOpen DeliveryWaitReason = "CircuitOpen"
	// WaitMaxInFlight: the subscription runs Jobs and has spec.delivery.maxInFlight of
	// them active; the delivery starts its Job when one ends, without spending an attempt.
	WaitMaxInFlight DeliveryWaitReason = "MaxInFlight"
)

// FunnelEventSpec is the event exactly as Funnel sent it. It is written once, by the
// receiver, and never changes: a retried delivery from Funnel lands on the same object.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
type FunnelEventSpec struct {
	// receiver is the name of the FunnelReceiver (same namespace) that accepted the event.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Receiver string `json:"receiver"`

	// format is the envelope shape the event arrived in.
	// +required
	Format EventFormat `json:"format"`

	// eventID is Funnel's id of the event: the classic integer id as exact decimal
	// digits, or the V3 UUID, as sent. Empty for PartnerV2, whose envelope has no id. An
	// id longer than 253 bytes is "sha256:<hex>" of it, the whole id in the annotation
	// funnel.leasing.dev/event-id.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	EventID string `json:"eventID,omitempty"`

	// type is the event type, e.g. lease_transaction.status_updated.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Type string `json:"type"`

	// occurredAt is when the event happened according to Funnel (event_timestamp or
	// timestamp). Absent for PartnerV2.
	// +optional
	OccurredAt *metav1.MicroTime `json:"occurredAt,omitempty"`

	// idempotencyKey is the classic envelope's idempotency_key, kept verbatim. Its meaning
	// is undocumented, so it is never used to merge events. A key longer than 512 bytes is
	// "sha256:<hex>" of it, the whole key in the annotation
	// funnel.leasing.dev/idempotency-key.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	IdempotencyKey string `json:"idempotencyKey,omitempty"`

	// receivedAt is when the receiver accepted the event.
	// +required
	ReceivedAt metav1.MicroTime `json:"receivedAt"`

	// Atomic because it is written once, as a whole: field ownership then records one
	// field instead of every key in it, which keeps managedFields, and so every read and
	// write of the object, smaller (measured with make bench).

	// data is the event's data object, verbatim; one atomic value for field ownership.
	// +required
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	// +mapType=atomic
	Data runtime.RawExtension `json:"data"`
}

// AttemptStatus is the state of one sequence of attempts of an action: a delivery, or
// its dead letter. Both inline it, so its fields sit where they always did.
type AttemptStatus struct {
	// phase of the attempts: Pending (not attempted yet, or waiting for a retry), Running,
	// Succeeded or Failed.
	// +required
	Phase DeliveryPhase `json:"phase"`

	// attempts made so far.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempts int32 `json:"attempts,omitempty"`

	// lastAttemptTime is when the last attempt started.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`

	// nextAttemptTime is when the next retry is due, while Pending.
	// +optional
	NextAttemptTime *metav1.Time `json:"nextAttemptTime,omitempty"`

	// lastError is the last attempt's error, trimmed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`

	// responseCode is the HTTP status of the last attempt of an HTTP action.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=999
	ResponseCode int32 `json:"responseCode,omitempty"`

	// completionTime is when the attempts reached Succeeded or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// job is the name of the Job a Job action created for the last attempt.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Job string `json:"job,omitempty"`
}

// DeliveryStatus is the state of one subscription's delivery of an event.
type DeliveryStatus struct {
	// subscription is the name of the FunnelSubscription (same namespace).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Subscription string `json:"subscription"`

	AttemptStatus `json:",inline"`

	// reason, while the delivery is Pending but held back rather than attempted, says why:
	// SubscriptionNotReady, Suspended, Ordering, CircuitOpen or MaxInFlight. Empty
	// otherwise.
	// +optional
	Reason DeliveryWaitReason `json:"reason,omitempty"`

	// message says, for a held-back delivery, what it waits for.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// deadLetter is the state of the dead letter of a delivery that failed for good.
	// +optional
	DeadLetter *DeadLetterStatus `json:"deadLetter,omitempty"`
}

// DeadLetterStatus is the state of a failed delivery's dead letter, which runs once
// (transient failures of it are retried a few times).
type DeadLetterStatus struct {
	AttemptStatus `json:",inline"`
}

// FunnelEventStatus is what the operator did with the event.
type FunnelEventStatus struct {
	// phase is the lifecycle position: Pending, Processing, then Succeeded, Failed or Ignored.
	// +optional
	Phase EventPhase `json:"phase,omitempty"`

	// conditions: Validated (data matched its type), Delivered (every delivery succeeded),
	// Ready (processing finished successfully).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// summary is one human line about the event, e.g. "Application 74824: Submitted → Approved".
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Summary string `json:"summary,omitempty"`

	// deliveries holds one entry per subscription the event matched, in a stable order.
	// +optional
	// +listType=map
	// +listMapKey=subscription
	// +kubebuilder:validation:MaxItems=64
	Deliveries []DeliveryStatus `json:"deliveries,omitempty"`

	// attempts is the total number of delivery attempts over all deliveries.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempts int32 `json:"attempts,omitempty"`

	// duplicates counts extra receipts of the same event after the first (best effort).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Duplicates int64 `json:"duplicates,omitempty"`

	// processedTime is when processing reached a final phase.
	// +optional
	ProcessedTime *metav1.Time `json:"processedTime,omitempty"`

	// observedReplay is the value of the funnel.leasing.dev/replay annotation the last
	// processing ran for; a different annotation value means "process again".
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ObservedReplay string `json:"observedReplay,omitempty"`

	// replays counts the times the event was processed again (replayed). Each replay is a
	// new delivery to every subscription: its idempotency key ends in /replay-<replays>
	// and its Jobs are new ones, however often an annotation value is reused.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replays int32 `json:"replays,omitempty"`
}

// FunnelEvent is one event received from Funnel Leasing, stored durably before it was
// acknowledged. Its spec is the event as sent; its status is what the operator did with it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fev,categories=funnel
// +kubebuilder:selectablefield:JSONPath=`.status.phase`
// +kubebuilder:selectablefield:JSONPath=`.spec.type`
// +kubebuilder:selectablefield:JSONPath=`.spec.receiver`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Summary",type=string,JSONPath=`.status.summary`
// +kubebuilder:printcolumn:name="Occurred",type=date,JSONPath=`.spec.occurredAt`
// +kubebuilder:printcolumn:name="Attempts",type=integer,JSONPath=`.status.attempts`,priority=1
// +kubebuilder:printcolumn:name="Lease-Transaction",type=string,JSONPath=`.metadata.labels.funnel\.leasing\.dev/lease-transaction-id`,priority=1
// +kubebuilder:printcolumn:name="Community",type=string,JSONPath=`.metadata.labels.funnel\.leasing\.dev/community-id`,priority=1
// +kubebuilder:printcolumn:name="Unit",type=string,JSONPath=`.metadata.labels.funnel\.leasing\.dev/unit-id`,priority=1
// +kubebuilder:printcolumn:name="Client",type=string,JSONPath=`.metadata.labels.funnel\.leasing\.dev/client-id`,priority=1
// +kubebuilder:printcolumn:name="Renter",type=string,JSONPath=`.metadata.labels.funnel\.leasing\.dev/renter-id`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FunnelEvent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the event as received; immutable. One value for field ownership: written
	// once, it needs no per-field managedFields.
	// +required
	// +structType=atomic
	Spec FunnelEventSpec `json:"spec"`

	// status is what the operator did with the event. An event no reconciler has looked
	// at yet reads as phase Pending.
	// One value for field ownership: the operator alone writes it, with merge patches,
	// so per-field managedFields would only add bytes to every event.
	// +optional
	// +kubebuilder:default={phase: Pending}
	// +structType=atomic
	Status FunnelEventStatus `json:"status,omitempty"`
}

// FunnelEventList is a list of FunnelEvents.
//
// +kubebuilder:object:root=true
type FunnelEventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FunnelEvent `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FunnelEvent{}, &FunnelEventList{})
}
