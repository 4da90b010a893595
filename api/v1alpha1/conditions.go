package v1alpha1

import "k8s.io/apimachinery/pkg/fields"

// Condition types. Every condition carries observedGeneration; reasons are CamelCase and
// messages deterministic, so an unchanged outcome never causes a status write.
const (
	// ConditionReady is the summary condition of every kind: True when the object does
	// what it asks for (a receiver accepts events, an event is fully processed).
	ConditionReady = "Ready"
	// ConditionValidated reports whether an event's data matched its type's schema.
	ConditionValidated = "Validated"
	// ConditionDelivered reports whether every delivery of an event succeeded.
	ConditionDelivered = "Delivered"
	// ConditionMaxEventsReached reports whether a receiver holds more finished events than
	// spec.retention.maxEvents, so that retention deletes events before their age says.
	ConditionMaxEventsReached = "MaxEventsReached"
	// ConditionComplete reports whether a FunnelBackfill is done.
	ConditionComplete = "Complete"
	// ConditionContentConflict is True on an event whose identity (receiver, id, type) was
	// received before with different content: it is stored and processed as a variant.
	ConditionContentConflict = "ContentConflict"
	// ConditionDegraded is True on a FunnelSubscription whose circuit breaker is open: its
	// destination keeps failing (reason DestinationFailing), since lastTransitionTime.
	ConditionDegraded = "Degraded"
)

// Condition reasons of FunnelEvent.
const (
	// ReasonValid (Validated=True): the data matches its event type (any data object when
	// the type is unknown).
	ReasonValid = "Valid"
	// ReasonUndocumentedShape (Validated=True): the data has values Funnel's docs do not
	// describe (a status outside the documented ones, an id as a string); the message
	// says which. The event is delivered like any other.
	ReasonUndocumentedShape = "UndocumentedShape"
	// ReasonInvalidPayload (Validated, Delivered and Ready False): the data does not match
	// its event type; the event is Failed and never delivered.
	ReasonInvalidPayload = "InvalidPayload"
	// ReasonNoSubscriptions (Delivered=True): no subscription matches the event.
	ReasonNoSubscriptions = "NoSubscriptions"
	// ReasonAllDelivered (Delivered=True): every delivery succeeded.
	ReasonAllDelivered = "AllDelivered"
	// ReasonDelivering (Delivered=Unknown): deliveries are under way or wait for a retry.
	ReasonDelivering = "Delivering"
	// ReasonDeliveryFailed (Delivered and Ready False): a delivery failed for good. Also
	// the reason of the Warning Event of a failed delivery attempt.
	ReasonDeliveryFailed = "DeliveryFailed"
	// ReasonProcessed (Ready=True): the event is done: Succeeded.
	ReasonProcessed = "Processed"
	// ReasonNotHandled (Ready=True): the type is unknown and no subscription wants it: Ignored.
	ReasonNotHandled = "NotHandled"
	// ReasonProcessing (Ready=False): deliveries are under way.
	ReasonProcessing = "Processing"
	// ReasonDifferentContent (ContentConflict=True): the event's identity was received
	// before with other content; this variant is stored and processed too.
	ReasonDifferentContent = "DifferentContent"
)

// Condition reasons of FunnelBackfill (with SubscriptionNotFound below).
const (
	// ReasonBackfilling (Ready=True): the backfill delivers.
	ReasonBackfilling = "Backfilling"
	// ReasonSubscriptionNotFound: spec.subscription does not exist (yet).
	ReasonSubscriptionNotFound = "SubscriptionNotFound"
	// ReasonUnsupportedAction: the subscription's action is a Job; backfills deliver to HTTP actions.
	ReasonUnsupportedAction = "UnsupportedAction"
	// ReasonNoArchive: the operator runs without the archive, where backfills read events from.
	ReasonNoArchive = "NoArchive"
	// ReasonArchiveUnavailable: the archive's database fails; the backfill waits.
	ReasonArchiveUnavailable = "ArchiveUnavailable"
	// ReasonCompleted (Complete=True): every matching event was attempted to the end.
	ReasonCompleted = "Completed"
	// ReasonInProgress (Complete=False): events remain.
	ReasonInProgress = "InProgress"
)

// Condition reasons of FunnelReceiver.
const (
	// ReasonAccepting means the receiver is configured and accepts events.
	ReasonAccepting = "Accepting"
	// ReasonSuspended means spec.suspend is set: requests are answered 503.
	ReasonSuspended = "Suspended"
	// ReasonNoAuth means neither token nor HMAC is configured and insecureSkipAuth is not set.
	ReasonNoAuth = "NoAuthentication"
	// ReasonInsecureNotAllowed means insecureSkipAuth is set but the operator runs without
	// --allow-insecure-receivers.
	ReasonInsecureNotAllowed = "InsecureNotAllowed"
	// ReasonSecretNotFound means a referenced Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyMissing means a referenced Secret lacks the key, or its value is empty.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonInvalidSpec means the spec is inconsistent in a way the schema cannot express.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonMaxEventsReached (MaxEventsReached=True): the oldest finished events beyond
	// spec.retention.maxEvents are deleted, however young.
	ReasonMaxEventsReached = "MaxEventsReached"
	// ReasonWithinMaxEvents (MaxEventsReached=False): finished events are deleted by age only.
	ReasonWithinMaxEvents = "WithinMaxEvents"
)

// Condition reasons of FunnelSubscription (with SecretNotFound, SecretKeyMissing and
// Suspended from above).
const (
	// ReasonReady means the subscription routes matching events to its action.
	ReasonReady = "Ready"
	// ReasonInvalidFilter means the CEL filter does not compile; the message is the compiler's.
	ReasonInvalidFilter = "InvalidFilter"
	// ReasonInvalidJobTemplate means the API server refused a Job built from the template.
	ReasonInvalidJobTemplate = "InvalidJobTemplate"
	// ReasonForbidden means the subscription's ServiceAccount may not do what its action
	// needs (read a Secret, create the Job), or, for a receiver, that the operator may not
	// read its Secret; the message is the API server's.
	ReasonForbidden = "Forbidden"
	// ReasonInvalidSigningKey means a signing key's value starts with whsec_ but is not
	// the base64 of a key.
	ReasonInvalidSigningKey = "InvalidSigningKey"
	// ReasonServiceAccountRequired means the action needs the cluster (a Job, a Secret) but
	// the subscription names no ServiceAccount and the operator has no default one.
	ReasonServiceAccountRequired = "ServiceAccountRequired"
	// ReasonDestinationFailing (Degraded=True): the circuit breaker is open.
	ReasonDestinationFailing = "DestinationFailing"
	// ReasonDestinationAnswering (Degraded=False): the breaker closed again.
	ReasonDestinationAnswering = "DestinationAnswering"
)

// ReasonNotReceived (FunnelEvent Ready=False, Delivered=False) means the event was not
// created by the operator's receiver (no valid seal): it is not delivered.
const ReasonNotReceived = "NotReceived"

// Reasons of the Kubernetes Events the operator records that are no condition's reason.
// Failures also record Events with the reason of the condition they set
// (InvalidPayload, DeliveryFailed, a subscription's Forbidden, MaxEventsReached...).
const (
	// ReasonReplayed (Normal, FunnelEvent): processing starts over for a new replay value;
	// the message keeps the previous outcome.
	ReasonReplayed = "Replayed"
	// ReasonTooManySubscriptions (Warning, FunnelEvent): more subscriptions match than an
	// event can deliver to; it delivers to the first by name.
	ReasonTooManySubscriptions = "TooManySubscriptions"
	// ReasonDeadLettered (Warning, FunnelEvent): a failed delivery went to its dead letter.
	ReasonDeadLettered = "DeadLettered"
	// ReasonDeadLetterFailed (Warning, FunnelEvent): the dead letter failed too.
	ReasonDeadLetterFailed = "DeadLetterFailed"
	// ReasonCircuitOpened (Warning, FunnelSubscription): the destination kept failing;
	// deliveries wait for a probe.
	ReasonCircuitOpened = "CircuitOpened"
	// ReasonCircuitClosed (Normal, FunnelSubscription): the destination answers again.
	ReasonCircuitClosed = "CircuitClosed"
)

// Field selectors of FunnelEvents (CRD selectableFields): `kubectl get fev
// --field-selector status.phase=Failed,spec.type=lease.move_in`.
const (
	FieldPhase    = "status.phase"
	FieldType     = "spec.type"
	FieldReceiver = "spec.receiver"
)

// UnfinishedEvents selects the FunnelEvents whose phase is not final.
func UnfinishedEvents() fields.Selector {
	return phaseNotIn(PhaseSucceeded, PhaseFailed, PhaseIgnored)
}

// FinishedEvents selects the FunnelEvents in a final phase: the complement of
// UnfinishedEvents (an event not yet processed has no phase).
func FinishedEvents() fields.Selector {
	return phaseNotIn("", PhasePending, PhaseProcessing)
}

// phaseNotIn selects the FunnelEvents whose status.phase is none of phases (field
// selectors have no "in", and a list of "!=" is what the API server takes).
func phaseNotIn(phases ...EventPhase) fields.Selector {
	sels := make([]fields.Selector, 0, len(phases))
	for _, p := range phases {
		sels = append(sels, fields.OneTermNotEqualSelector(FieldPhase, string(p)))
	}
	return fields.AndSelectors(sels...)
}

// Well-known labels and annotations on FunnelEvents.
const (
	// LabelReceiver names the FunnelReceiver that accepted the event.
	LabelReceiver = "funnel.leasing.dev/receiver"
	// LabelEventType is the event type, made a valid label value.
	LabelEventType = "funnel.leasing.dev/event-type"
	// LabelFormat is the envelope format: Classic, V3 or PartnerV2.
	LabelFormat = "funnel.leasing.dev/format"
	// AnnotationDigest is the receiver's digest of the event content (api/funnel Envelope.Digest):
	// a later receipt of the same identity with another digest is stored as a variant.
	AnnotationDigest = "funnel.leasing.dev/digest"
	// LabelVariantOf marks an event whose identity (receiver, id, type) was already stored
	// with different content: its value is the name of the event stored first.
	LabelVariantOf = "funnel.leasing.dev/variant-of"
	// AnnotationIssues lists, as JSON, how the envelope differed from Funnel's docs
	// (api/funnel Issue): what the receiver read leniently, and what is invalid.
	AnnotationIssues = "funnel.leasing.dev/issues"
	// AnnotationEnvelopeExtra holds, as a JSON object, the envelope's top-level fields that
	// no format defines, verbatim.
	AnnotationEnvelopeExtra = "funnel.leasing.dev/envelope-extra"
	// AnnotationEventID holds the whole event id when it is longer than spec.eventID may be
	// (spec.eventID then holds "sha256:<hex>" of it).
	AnnotationEventID = "funnel.leasing.dev/event-id"
	// AnnotationIdempotencyKey holds the whole idempotency key when it is longer than
	// spec.idempotencyKey may be (which then holds "sha256:<hex>" of it).
	AnnotationIdempotencyKey = "funnel.leasing.dev/idempotency-key"
	// AnnotationSeal is the receiver's proof that it created the event: a MAC, keyed
	// with the operator's seal key, over the event's namespace, name and spec. The
	// controllers deliver only events that carry a valid one.
	AnnotationSeal = "funnel.leasing.dev/seal"
	// AnnotationReplay re-runs processing of an event whenever its value changes. Finished
	// events are outside the controllers' cache (it selects on status.phase), so a replay
	// also sets status.phase back to Pending: kubectl funnel replay does both.
	AnnotationReplay = "funnel.leasing.dev/replay"
	// AnnotationTraceparent is the W3C traceparent of the webhook request that stored the
	// event, set when tracing is on: its processing passes and deliveries continue that
	// trace, and its second field is the trace id to look up.
	AnnotationTraceparent = "funnel.leasing.dev/traceparent"
	// AnnotationTracestate is the request's W3C tracestate, when it had one.
	AnnotationTracestate = "funnel.leasing.dev/tracestate"
)
