package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Receiver defaults and bounds, shared by the schema markers below and the code that
// applies them to objects created before a default existed.
const (
	DefaultMaxBodyBytes       int64 = 256 << 10
	MaxMaxBodyBytes           int64 = 1 << 20
	DefaultTokenHeader              = "Authorization"
	DefaultHMACHeader               = "X-Funnel-Signature"
	DefaultSucceededRetention       = 168 * time.Hour
	DefaultFailedRetention          = 720 * time.Hour
	DefaultMaxEvents          int32 = 10000
)

// SecretKeyRef selects one key of a Secret in the referring object's namespace.
type SecretKeyRef struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key within the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// TokenAuth checks a shared token sent in a header.
type TokenAuth struct {
	// secretRef points at the expected token.
	// +required
	SecretRef SecretKeyRef `json:"secretRef"`

	// header carrying the token. Its value may be "Bearer <token>", "Token <token>" or the
	// bare token.
	// +optional
	// +kubebuilder:default=Authorization
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Header string `json:"header,omitempty"`
}

// HMACAlgorithm is the hash an HMAC signature is computed with.
// +kubebuilder:validation:Enum=sha256;sha512
type HMACAlgorithm string

const (
	HMACSHA256 HMACAlgorithm = "sha256"
	HMACSHA512 HMACAlgorithm = "sha512"
)

// HMACAuth checks an HMAC of the raw request body, sent hex- or base64-encoded in a
// header, optionally prefixed with "<algorithm>=".
type HMACAuth struct {
	// secretRef points at the shared HMAC key.
	// +required
	SecretRef SecretKeyRef `json:"secretRef"`

	// header carrying the signature.
	// +optional
	// +kubebuilder:default=X-Funnel-Signature
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Header string `json:"header,omitempty"`

	// algorithm of the HMAC.
	// +optional
	// +kubebuilder:default=sha256
	Algorithm HMACAlgorithm `json:"algorithm,omitempty"`
}

// ReceiverAuth is how a receiver authenticates requests. Token and HMAC may be combined
// (both must pass); allowedCIDRs further restricts where requests may come from.
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureSkipAuth) && self.insecureSkipAuth) || !has(self.token) && !has(self.hmac)",message="insecureSkipAuth cannot be combined with token or hmac"
type ReceiverAuth struct {
	// token authenticates requests with a shared token.
	// +optional
	Token *TokenAuth `json:"token,omitempty"`

	// hmac authenticates requests with a signature over the raw body.
	// +optional
	HMAC *HMACAuth `json:"hmac,omitempty"`

	// allowedCIDRs, when set, only admits requests whose source address is in one of these
	// ranges. The source is the direct peer, unless that peer is a trusted proxy.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32"
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`

	// trustedProxies are the ranges of proxies (ingress controllers, load balancers) whose
	// X-Forwarded-For header is believed when checking allowedCIDRs: the source is the
	// right-most address in it that is not itself a trusted proxy. Empty: the header is
	// ignored, so a client cannot forge its address.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32"
	TrustedProxies []string `json:"trustedProxies,omitempty"`

	// insecureSkipAuth accepts unauthenticated requests. Without token or hmac a receiver
	// refuses every request unless this is set explicitly.
	// +optional
	InsecureSkipAuth bool `json:"insecureSkipAuth,omitempty"`
}

// Retention says how long finished events of a receiver are kept.
type Retention struct {
	// succeeded is how long Succeeded and Ignored events are kept, counted from their
	// receipt (creationTimestamp): an event is deleted once it is finished and that old.
	// +optional
	// +kubebuilder:default="168h"
	Succeeded *Duration `json:"succeeded,omitempty"`

	// failed is how long Failed events are kept, counted from their receipt
	// (creationTimestamp), as succeeded is.
	// +optional
	// +kubebuilder:default="720h"
	Failed *Duration `json:"failed,omitempty"`

	// maxEvents caps how many finished events of the receiver are kept in the cluster,
	// whatever their age: beyond it the oldest go first. Events still being processed are
	// never deleted and not counted. 0 keeps any number (only the ages apply).
	// +optional
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000000
	MaxEvents *int32 `json:"maxEvents,omitempty"`
}

// RateLimit bounds how fast one receiver accepts requests; above it requests get 429.
type RateLimit struct {
	// requestsPerSecond is the sustained rate.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	RequestsPerSecond int32 `json:"requestsPerSecond"`

	// burst is how many requests may arrive at once above the sustained rate; twice
	// requestsPerSecond when not set.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	Burst int32 `json:"burst,omitempty"`
}

// FunnelReceiverSpec configures one webhook endpoint.
type FunnelReceiverSpec struct {
	// auth is how requests are authenticated.
	// +optional
	Auth ReceiverAuth `json:"auth,omitempty"`

	// formats lists the envelope formats accepted; all three when empty.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	Formats []EventFormat `json:"formats,omitempty"`

	// maxBodyBytes is the largest request body accepted (413 above it).
	// +optional
	// +kubebuilder:default=262144
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=1048576
	MaxBodyBytes *int64 `json:"maxBodyBytes,omitempty"`

	// rateLimit, when set, bounds the rate of authenticated requests to this receiver (429
	// above it). Not set by default: a rate limit turns a burst Funnel sends into answers
	// Funnel gives up on after four attempts, while the per-receiver cap on requests in
	// flight (--webhook-max-in-flight-per-receiver) already holds the load to what the API
	// server can write.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// dedupeWindow is how long an identical envelope without an event id (Partner v2, whose
	// envelope has none) counts as a retry of the first receipt; after it, an identical body
	// is a new event. Longer than Funnel's retry horizon.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="must be between 1h and 8760h"
	DedupeWindow *Duration `json:"dedupeWindow,omitempty"`

	// retention of finished events.
	// +optional
	// +kubebuilder:default={}
	Retention Retention `json:"retention,omitempty"`

	// suspend makes the receiver answer every request with 503, so Funnel retries later.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// FunnelReceiverStatus is the observed state of a receiver.
type FunnelReceiverStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// webhookPath is the path Funnel must POST to: /webhooks/{namespace}/{name}.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	WebhookPath string `json:"webhookPath,omitempty"`

	// url is a hint of the full callback URL, when the operator knows its external address.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	URL string `json:"url,omitempty"`

	// conditions: Ready is True when the receiver accepts events; MaxEventsReached is True
	// while spec.retention.maxEvents, not the ages, decides which finished events are
	// deleted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FunnelReceiver is an endpoint Funnel Leasing posts events to: its authentication, the
// envelope formats it accepts, its limits and how long its events are kept.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=frcv,categories=funnel
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.status.webhookPath`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FunnelReceiver struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec configures the endpoint.
	// +optional
	Spec FunnelReceiverSpec `json:"spec,omitempty"`

	// status is the observed state.
	// +optional
	Status FunnelReceiverStatus `json:"status,omitempty"`
}

// FunnelReceiverList is a list of FunnelReceivers.
//
// +kubebuilder:object:root=true
type FunnelReceiverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FunnelReceiver `json:"items"`
}

// WebhookPath is the path Funnel must POST this receiver's events to.
func (r *FunnelReceiver) WebhookPath() string {
	return "/webhooks/" + r.Namespace + "/" + r.Name
}

func init() {
	SchemeBuilder.Register(&FunnelReceiver{}, &FunnelReceiverList{})
}
