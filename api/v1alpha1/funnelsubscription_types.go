package v1alpha1

import (
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Subscription defaults, shared by the schema markers and the code that applies them to
// objects stored before a default existed.
const (
	DefaultRetries       int32 = 5
	DefaultBackoffDelay        = time.Second
	DefaultMaxBackoff          = 5 * time.Minute
	DefaultHTTPTimeout         = 10 * time.Second
	MaxHTTPTimeout             = 60 * time.Second
	DefaultRetryAfterCap       = 10 * time.Minute
	// SignatureHeader is the former signature header, sent only for the deprecated
	// signingSecretRef.
	SignatureHeader      = "X-Funnel-Operator-Signature"
	IdempotencyKeyHeader = "Idempotency-Key"

	// DefaultJobTTLSecondsAfterFinished is the ttlSecondsAfterFinished of a Job action's
	// Jobs when the template sets none: finished Jobs go away instead of piling up, long
	// after their outcome was recorded.
	DefaultJobTTLSecondsAfterFinished int32 = 3600
)

// ReservedHeaders lists, lower case, the header names and name prefixes the operator sets
// on deliveries (or that describe the body and the connection), which subscription
// headers may not set. The HTTPHeaderName schema rule carries the same lists.
func ReservedHeaders() (names, prefixes []string) {
	return []string{"content-type", "content-length", "content-encoding", "transfer-encoding", "host",
			"connection", "upgrade", "te", "trailer", "keep-alive", "user-agent", "idempotency-key",
			"traceparent", "tracestate"},
		[]string{"x-funnel-", "webhook-", "ce-"}
}

// IsReservedHeader reports whether a subscription may not set the header name (any case).
func IsReservedHeader(name string) bool {
	name = strings.ToLower(name)
	names, prefixes := ReservedHeaders()
	for _, n := range names {
		if name == n {
			return true
		}
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// HTTPHeaderName is the name of a header a subscription adds. The headers the operator
// sets (Content-Type, Idempotency-Key, X-Funnel-*, the signature headers, the W3C trace
// context, ...) cannot be overridden.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=128
// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['content-type', 'content-length', 'content-encoding', 'transfer-encoding', 'host', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'user-agent', 'idempotency-key', 'traceparent', 'tracestate']) && !['x-funnel-', 'webhook-', 'ce-'].exists(p, self.lowerAscii().startsWith(p))",messageExpression="'header ' + self + ' is reserved: the operator sets it, or it describes the body or the connection'"
type HTTPHeaderName string

// HTTPBody is what an HTTP action sends.
// +kubebuilder:validation:Enum=Envelope;Original;CloudEvent
type HTTPBody string

const (
	// BodyEnvelope is a normalised JSON envelope, the same for every format:
	// {"name","namespace","receiver","id","type","format","occurredAt","receivedAt","summary","data"}.
	BodyEnvelope HTTPBody = "Envelope"
	// BodyOriginal is the event in the envelope format Funnel sent it in (Classic, V3 or
	// Partner v2), rebuilt from the stored fields with data verbatim.
	BodyOriginal HTTPBody = "Original"
	// BodyCloudEvent is a CloudEvents 1.0 request in HTTP binary content mode: the
	// event's data object is the body (application/json), its attributes are ce- headers.
	BodyCloudEvent HTTPBody = "CloudEvent"
)

// HTTPSigning signs every request per the Standard Webhooks specification
// (https://www.standardwebhooks.com): webhook-id, webhook-timestamp and
// webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">.
type HTTPSigning struct {
	// secretRefs are the signing keys, in the subscription's namespace, read as its
	// ServiceAccount. Each one signs every request (webhook-signature holds one v1,<sig>
	// per key, space-separated), so a key is rotated without a moment where the target
	// cannot verify: add the new key, move the target to it, remove the old one. A value
	// starting with whsec_ is Standard Webhooks' form, the base64 of the key; any other
	// value is the key's bytes as they are.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:XValidation:rule="self.all(r, self.exists_one(s, s.name == r.name && s.key == r.key))",message="each Secret key may be listed once"
	SecretRefs []SecretKeyRef `json:"secretRefs"`
}

// HTTPHeader is a static header.
type HTTPHeader struct {
	// name of the header; not one the operator sets.
	// +required
	Name HTTPHeaderName `json:"name"`

	// value of the header.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// HTTPHeaderFromSecret is a header whose value is read from a Secret, e.g. an API key.
type HTTPHeaderFromSecret struct {
	// name of the header; not one the operator sets.
	// +required
	Name HTTPHeaderName `json:"name"`

	// secretRef points at the value, in the subscription's namespace.
	// +required
	SecretRef SecretKeyRef `json:"secretRef"`
}

// HTTPAction calls an HTTP endpoint (usually an in-cluster Service) with the event.
// +kubebuilder:validation:XValidation:rule="!(has(self.signing) && has(self.signingSecretRef))",message="signing replaces the deprecated signingSecretRef: set one of them"
type HTTPAction struct {
	// url of the endpoint, http or https.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="must be an absolute http or https URL"
	URL string `json:"url"`

	// method of the request.
	// +optional
	// +kubebuilder:default=POST
	// +kubebuilder:validation:Enum=POST;PUT;PATCH
	Method string `json:"method,omitempty"`

	// headers sent with every request.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Headers []HTTPHeader `json:"headers,omitempty"`

	// headersFrom are headers whose values come from Secrets.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	HeadersFrom []HTTPHeaderFromSecret `json:"headersFrom,omitempty"`

	// signing, when set, signs every request per Standard Webhooks, with one or more keys.
	// +optional
	Signing *HTTPSigning `json:"signing,omitempty"`

	// signingSecretRef is deprecated, use signing: it will be removed in the next API
	// version. It signs per Standard Webhooks with this one key, as signing does, and also
	// sends the former X-Funnel-Operator-Signature: sha256=<hex HMAC-SHA256 of the body
	// with the key's bytes>, for targets that still check that header.
	// +optional
	SigningSecretRef *SecretKeyRef `json:"signingSecretRef,omitempty"`

	// timeout of one request, from connecting to the end of the answer: more than 0, at
	// most 1m.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('60s')",message="must be more than 0 and at most 60s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// body sent: Envelope (normalised), Original (as Funnel sent it) or CloudEvent (a
	// CloudEvents 1.0 binary-mode request, for a Knative Broker, Argo Events or Dapr).
	// +optional
	// +kubebuilder:default=Envelope
	Body HTTPBody `json:"body,omitempty"`
}

// JobAction runs a Job for each attempt of a delivery. The Job is named after the event,
// the subscription and the attempt, owned by the FunnelEvent, and its containers get the
// event in the environment: FUNNEL_EVENT_NAME, FUNNEL_EVENT_NAMESPACE, FUNNEL_EVENT_ID,
// FUNNEL_EVENT_TYPE and FUNNEL_EVENT_DATA (the data object as JSON). A Job that fails is
// a failed attempt, retried per spec.delivery with a new Job. ttlSecondsAfterFinished
// defaults to 3600.
type JobAction struct {
	// template of the Job (metadata and a batch/v1 JobSpec). Its schema is not repeated
	// here, which would make this CRD larger than the API server accepts; the subscription
	// controller validates it with a server-side dry run instead (Ready=False
	// InvalidJobTemplate, with the API server's message).
	// +required
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Template batchv1.JobTemplateSpec `json:"template"`
}

// Action is what a subscription does with a matching event: exactly one of http or job.
// +kubebuilder:validation:XValidation:rule="(has(self.http) ? 1 : 0) + (has(self.job) ? 1 : 0) == 1",message="exactly one of http or job must be set"
type Action struct {
	// http calls an endpoint with the event.
	// +optional
	HTTP *HTTPAction `json:"http,omitempty"`

	// job runs a Job for the event.
	// +optional
	Job *JobAction `json:"job,omitempty"`
}

// BackoffPolicy is how the wait between retries grows.
// +kubebuilder:validation:Enum=exponential;linear
type BackoffPolicy string

const (
	// BackoffExponential waits backoffDelay × 2^(attempt−1).
	BackoffExponential BackoffPolicy = "exponential"
	// BackoffLinear waits backoffDelay × attempt.
	BackoffLinear BackoffPolicy = "linear"
)

// DeliveryPolicy says how a failed delivery is retried and where it goes when retries
// are exhausted (after Knative's delivery spec).
type DeliveryPolicy struct {
	// retries after the first attempt, for retryable failures (HTTP 429, 5xx, timeouts,
	// connection errors). Other 4xx answers fail at once.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Retries *int32 `json:"retries,omitempty"`

	// backoffPolicy: exponential or linear.
	// +optional
	// +kubebuilder:default=exponential
	BackoffPolicy BackoffPolicy `json:"backoffPolicy,omitempty"`

	// backoffDelay is the base wait between retries.
	// +optional
	// +kubebuilder:default="1s"
	BackoffDelay *Duration `json:"backoffDelay,omitempty"`

	// maxBackoff caps the wait between retries, including a target's Retry-After.
	// +optional
	// +kubebuilder:default="5m"
	MaxBackoff *Duration `json:"maxBackoff,omitempty"`

	// timeout, when set, bounds the whole delivery from its first attempt: no retry starts
	// after it.
	// +optional
	Timeout *Duration `json:"timeout,omitempty"`

	// maxInFlight bounds the subscription's HTTP requests in flight at once: the others
	// wait their turn, in order (status Running, not yet sent). Unset, only the operator's
	// per-namespace bound (--delivery-concurrency-per-namespace) applies. For a Job action
	// it bounds the subscription's active Jobs: a delivery whose Job would be one too many
	// waits (Pending, reason MaxInFlight, no attempt spent) until one ends.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxInFlight *int32 `json:"maxInFlight,omitempty"`

	// circuitBreaker stops a destination that keeps failing from being hammered by every
	// event's retries: see CircuitBreaker. On by default for HTTP actions.
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`

	// deadLetter runs once for a delivery that failed for good, with the failure context:
	// an HTTP dead letter receives {"event": <envelope>, "subscription", "failure": {...}},
	// a Job dead letter also gets FUNNEL_DELIVERY_ERROR and FUNNEL_DELIVERY_ATTEMPTS.
	// +optional
	DeadLetter *Action `json:"deadLetter,omitempty"`
}

// OrderingKey is the subject whose events a subscription receives in order.
// +kubebuilder:validation:Enum=lease-transaction;community;unit;client;renter
type OrderingKey string

const (
	OrderByLeaseTransaction OrderingKey = "lease-transaction"
	OrderByCommunity        OrderingKey = "community"
	OrderByUnit             OrderingKey = "unit"
	OrderByClient           OrderingKey = "client"
	OrderByRenter           OrderingKey = "renter"
)

// OrderingKeys lists every ordering key.
var OrderingKeys = []OrderingKey{OrderByLeaseTransaction, OrderByCommunity, OrderByUnit, OrderByClient, OrderByRenter}

// Label is the event label that carries the key's value: funnel.leasing.dev/<key>-id.
func (k OrderingKey) Label() string { return "funnel.leasing.dev/" + string(k) + "-id" }

// Ordering delivers the events about one subject one at a time, in the order they
// happened.
type Ordering struct {
	// key is the subject: lease-transaction, community, unit, client or renter, read from
	// the event's funnel.leasing.dev/<key>-id label. Events without that label are not
	// held back.
	// +required
	Key OrderingKey `json:"key"`
}

// CircuitBreaker opens after consecutiveFailures retryable failures in a row (HTTP 408,
// 429, 5xx, timeouts, connection errors) across the subscription's HTTP deliveries.
// While open, deliveries wait (reason CircuitOpen) instead of spending their retries, and
// one attempt at a time probes the destination, every probeInterval, doubling after each
// failed probe up to maxBackoff; the first answer that is not a retryable failure closes
// it and every waiting delivery goes ahead.
type CircuitBreaker struct {
	// consecutiveFailures that open the breaker; 0 turns it off.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	ConsecutiveFailures *int32 `json:"consecutiveFailures,omitempty"`

	// probeInterval is the wait before the first probe of an open breaker.
	// +optional
	// +kubebuilder:default="10s"
	ProbeInterval *Duration `json:"probeInterval,omitempty"`
}

// Circuit breaker defaults.
const (
	DefaultBreakerFailures      int32 = 5
	DefaultBreakerProbeInterval       = 10 * time.Second
)

// CircuitStatus is the state of an open circuit breaker.
type CircuitStatus struct {
	// since is when the breaker opened.
	// +required
	Since metav1.Time `json:"since"`

	// consecutiveFailures is the count of retryable failures in a row so far.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// nextProbeTime is when the next probe may go.
	// +optional
	NextProbeTime *metav1.Time `json:"nextProbeTime,omitempty"`

	// lastError is the last failure's reason.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`
}

// FunnelSubscriptionSpec says which events go to which action, and how they are retried.
type FunnelSubscriptionSpec struct {
	// eventTypes the subscription wants: exact names (lease.move_in), prefix patterns
	// (lease_transaction.*) or * for every type.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*|[A-Za-z0-9][A-Za-z0-9_.-]*(\.\*)?)$`
	EventTypes []string `json:"eventTypes"`

	// filter is a CEL expression over `event` that must be true for the subscription to
	// match: event.type, event.id, event.format, event.occurredAt (a timestamp, absent for
	// Partner v2), event.receiver, event.name, event.labels (map) and event.data (the data
	// object). Example: event.data.current_status == 'Approved' && event.data.community_id == 43522
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Filter string `json:"filter,omitempty"`

	// receiver, when set, only matches events accepted by this FunnelReceiver.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Receiver string `json:"receiver,omitempty"`

	// suspend stops matching new events and pauses pending retries.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// requireValidData makes the subscription match only events whose data is valid
	// (condition Validated not False: nothing Funnel documents as required is missing or
	// of another kind). By default every event is delivered, invalid ones too, and the
	// Validated condition says what is wrong.
	// +optional
	RequireValidData bool `json:"requireValidData,omitempty"`

	// serviceAccountName is the ServiceAccount of the subscription's namespace the operator
	// acts as (impersonates) for everything the subscription does in the cluster: creating
	// the Jobs of job actions, the dry run of their template, reading the Secrets of
	// headersFrom and signing (or signingSecretRef). The subscription can do exactly what this account
	// may do, never more. When empty, the operator's --default-service-account applies;
	// without one, only http actions without Secrets work (Ready=False,
	// ServiceAccountRequired, otherwise). The admission policy shipped with the operator
	// lets only users who may impersonate the account name it.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// action is what happens with a matching event.
	// +required
	Action Action `json:"action"`

	// ordering, when set, delivers the events of one subject (e.g. one lease transaction)
	// to this subscription one at a time, in occurredAt order (receivedAt, then the name,
	// breaking ties): an event waits (reason Ordering, naming the event ahead) until every
	// earlier unfinished event of its subject has succeeded here or failed for good (its
	// dead letter, if any, then runs on its own). Events of other subjects are not held.
	// +optional
	Ordering *Ordering `json:"ordering,omitempty"`

	// delivery is the retry and dead-letter policy.
	// +optional
	// +kubebuilder:default={}
	Delivery DeliveryPolicy `json:"delivery,omitempty"`
}

// FunnelSubscriptionStatus is the observed state of a subscription.
type FunnelSubscriptionStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the filter compiles, the Secrets it needs exist and
	// its ServiceAccount may read them, and its Job templates pass a dry run as that account.
	// Degraded is True while the circuit breaker is open (reason DestinationFailing, since
	// its lastTransitionTime).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// matched counts events routed to this subscription (updated in batches).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Matched int64 `json:"matched,omitempty"`

	// succeeded counts deliveries that succeeded (updated in batches).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Succeeded int64 `json:"succeeded,omitempty"`

	// failed counts deliveries that failed for good (updated in batches).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Failed int64 `json:"failed,omitempty"`

	// circuit is the state of the circuit breaker while it is open (the destination keeps
	// failing); absent while closed.
	// +optional
	Circuit *CircuitStatus `json:"circuit,omitempty"`

	// lastDeliveryTime is when a delivery last finished.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`
}

// FunnelSubscription routes events of its namespace that match its types and filter to
// an action (an HTTP call or a Job), with retries and a dead letter.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fsub,categories=funnel
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Types",type=string,JSONPath=`.spec.eventTypes`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matched`
// +kubebuilder:printcolumn:name="Succeeded",type=integer,JSONPath=`.status.succeeded`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Service-Account",type=string,JSONPath=`.spec.serviceAccountName`,priority=1
// +kubebuilder:printcolumn:name="Last-Delivery",type=date,JSONPath=`.status.lastDeliveryTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FunnelSubscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which events go where.
	// +required
	Spec FunnelSubscriptionSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status FunnelSubscriptionStatus `json:"status,omitempty"`
}

// FunnelSubscriptionList is a list of FunnelSubscriptions.
//
// +kubebuilder:object:root=true
type FunnelSubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FunnelSubscription `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FunnelSubscription{}, &FunnelSubscriptionList{})
}
