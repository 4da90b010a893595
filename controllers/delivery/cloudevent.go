package delivery

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// A CloudEvents 1.0 request in HTTP binary content mode (body: CloudEvent): the event's
// data object is the body, its attributes are ce- headers
// (https://github.com/cloudevents/spec, the HTTP protocol binding).
const CloudEventsSpecVersion = "1.0"

// cloudEventSubjects maps the subject labels to the CloudEvent's extension attributes
// (lower-case letters only, at most 20, as the spec asks), in the order ce-subject
// prefers them: the application first, then the most specific of the rest.
var cloudEventSubjects = []struct{ label, extension, subject string }{
	{funnel.LabelLeaseTransactionID, "leasetransactionid", "lease-transaction"},
	{funnel.LabelRenterID, "renterid", "renter"},
	{funnel.LabelUnitID, "unitid", "unit"},
	{funnel.LabelCommunityID, "communityid", "community"},
	{funnel.LabelClientID, "clientid", "client"},
}

// CloudEventSource is the ce-source of the events of a receiver: a URI-reference naming
// the FunnelReceiver the way Knative's sources name theirs.
func CloudEventSource(namespace, receiver string) string {
	return "/apis/" + funnelv1.GroupVersion.String() + "/namespaces/" + namespace + "/funnelreceivers/" + receiver
}

// setCloudEvent sets the ce- headers of ev. ce-id is the FunnelEvent's name, which no two
// events of a namespace share: the same for every subscription, attempt and restart, so a
// consumer that de-duplicates on source and id sees one event. A replay, a new delivery
// asked for by a person, appends /replay-<n> as its Idempotency-Key does. With failure
// (a dead letter) the failed delivery is described in extension attributes, as Knative
// does for its dead letter sinks, and the event is otherwise the same.
func setCloudEvent(h http.Header, ev *funnelv1.FunnelEvent, failure *failureContext) {
	set := func(attribute, value string) { h.Set("Ce-"+attribute, ceHeaderValue(value)) }
	set("specversion", CloudEventsSpecVersion)
	set("id", ev.Name+replaySuffix(ev))
	set("source", CloudEventSource(ev.Namespace, ev.Spec.Receiver))
	set("type", ev.Spec.Type)
	at := ev.Spec.ReceivedAt.Time
	if ev.Spec.OccurredAt != nil {
		at = ev.Spec.OccurredAt.Time
	}
	set("time", at.UTC().Format(time.RFC3339Nano))
	// From the data, as the subject labels were: labels may be edited since.
	ids := funnel.SubjectLabels(ev.Spec.Type, dataOf(ev))
	subject := ""
	for _, s := range cloudEventSubjects {
		if id, ok := ids[s.label]; ok {
			set(s.extension, id)
			if subject == "" {
				subject = s.subject + "/" + id
			}
		}
	}
	if subject != "" {
		set("subject", subject)
	}
	if failure == nil {
		return
	}
	set("funnelsubscription", failure.Subscription)
	set("funnelattempts", strconv.Itoa(int(failure.Attempts)))
	if failure.LastError != "" {
		set("funnelerror", failure.LastError)
	}
	if failure.ResponseCode != 0 {
		set("funnelresponsecode", strconv.Itoa(int(failure.ResponseCode)))
	}
	if failure.LastAttemptTime != nil {
		set("funnellastattempt", failure.LastAttemptTime.UTC().Format(time.RFC3339Nano))
	}
}

// ceHeaderValue percent-encodes an attribute for its header, as the HTTP binding requires:
// space, '"', '%' and every byte outside printable ASCII. Funnel's types and the fixed
// failure reasons may hold them; ids, names and times never do.
func ceHeaderValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '"' && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}
