package funnel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Subject label keys, set on every FunnelEvent whose data has the id. They make
// the history of one application, community, unit, client or renter a label
// selector away, e.g.
// kubectl get fev -l funnel.leasing.dev/lease-transaction-id=74824.
const (
	LabelLeaseTransactionID = "funnel.leasing.dev/lease-transaction-id"
	LabelCommunityID        = "funnel.leasing.dev/community-id"
	LabelUnitID             = "funnel.leasing.dev/unit-id"
	LabelClientID           = "funnel.leasing.dev/client-id"
	LabelRenterID           = "funnel.leasing.dev/renter-id"
)

// maxLabelValue is Kubernetes' limit on the length of a label value.
const maxLabelValue = 63

// subjectSources lists, per subject label, the data fields that may carry
// it, best first. funnel_team_id is the community in renter.status-change
// (renter.created calls it funnel_community_id). Units are taken only from
// unit_id: an appointment's pms_unit_ids and a renter's listings are lists of
// candidates, not the event's unit, so no unit is guessed from them.
var subjectSources = []struct {
	label  string
	fields []string
}{
	{LabelLeaseTransactionID, []string{"lease_transaction_id"}},
	{LabelCommunityID, []string{"community_id", "funnel_community_id", "funnel_team_id"}},
	{LabelUnitID, []string{"unit_id"}},
	{LabelClientID, []string{"client_id"}},
	{LabelRenterID, []string{"funnel_renter_id"}},
}

// subjectFields are the data fields any subject label is read from.
var subjectFields = func() map[string]bool {
	m := map[string]bool{}
	for _, src := range subjectSources {
		for _, f := range src.fields {
			m[f] = true
		}
	}
	return m
}()

// SubjectLabels returns the subject labels (keys LabelLeaseTransactionID and
// the like) for the ids found at the top level of data. An integer gives its
// digits, a string is used only when it already is a valid label value;
// absent, null or unusable values give no label. It never fails, because an
// event whose data is unexpected must still be stored and findable.
//
// The same field names mean the same thing in every documented event type,
// so the sources do not depend on eventType today; it is taken so that a
// type-specific rule can be added without changing callers.
func SubjectLabels(eventType string, data json.RawMessage) map[string]string {
	labels := map[string]string{}
	data = trimJSONSpace(data)
	if jsonKind(data) != "object" || !json.Valid(data) {
		return labels
	}
	// Offsets rather than a decoded map: data may be large, the labels need a few ids.
	fields := map[string]json.RawMessage{}
	eachMember(data, 0, func(m span) {
		if key := data[m.keyStart+1 : m.keyEnd-1]; subjectFields[string(key)] || bytes.IndexByte(key, '\\') >= 0 {
			if k := decodeString(data[m.keyStart:m.keyEnd]); subjectFields[k] {
				fields[k] = data[m.valStart:m.valEnd]
			}
		}
	})
	for _, src := range subjectSources {
		for _, name := range src.fields {
			if v, ok := labelFromJSON(fields[name]); ok {
				labels[src.label] = v
				break
			}
		}
	}
	return labels
}

// labelFromJSON turns one JSON id into a label value, if it can be one
// without change.
func labelFromJSON(raw json.RawMessage) (string, bool) {
	var v string
	switch jsonKind(raw) {
	case "number":
		v = string(trimJSONSpace(raw))
		if !isNonNegativeIntegerLiteral(v) {
			return "", false
		}
	case "string":
		if json.Unmarshal(raw, &v) != nil {
			return "", false
		}
	default:
		return "", false
	}
	return v, v != "" && isLabelValue(v)
}

// isLabelValue reports whether s is a valid Kubernetes label value: empty,
// or at most 63 characters of [A-Za-z0-9_.-] starting and ending with an
// alphanumeric.
func isLabelValue(s string) bool {
	if len(s) > maxLabelValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLabelChar(s[i]) {
			return false
		}
	}
	return s == "" || isAlnum(s[0]) && isAlnum(s[len(s)-1])
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isLabelChar(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.'
}

// labelHashLen is how many hex digits of sha256 LabelValue appends when it
// must shorten a value: 40 bits keep distinct long inputs distinct.
const labelHashLen = 10

// LabelValue makes any string a valid Kubernetes label value, for the
// event-type label: unknown event types can be anything, and a label that
// the API server refuses would lose the event. A valid value is returned
// unchanged. Otherwise each invalid character (each rune, and each byte of
// invalid UTF-8) becomes '_' and non-alphanumeric ends are trimmed; a result
// still longer than 63 characters is cut and suffixed with "-" and a short
// hash of the whole input, so distinct long inputs stay distinct. An input
// with nothing usable gives just the hash.
func LabelValue(s string) string {
	if isLabelValue(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r < utf8.RuneSelf && isLabelChar(byte(r)) {
			b.WriteByte(byte(r))
		} else {
			b.WriteByte('_')
		}
		i += size
	}
	v := trimToAlnum(b.String())
	if v != "" && len(v) <= maxLabelValue {
		return v
	}
	sum := sha256.Sum256([]byte(s))
	tag := hex.EncodeToString(sum[:])[:labelHashLen]
	if v == "" {
		return tag
	}
	return trimToAlnum(v[:maxLabelValue-1-labelHashLen]) + "-" + tag
}

// trimToAlnum trims everything but ASCII letters and digits from both ends.
func trimToAlnum(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r >= utf8.RuneSelf || !isAlnum(byte(r)) })
}
