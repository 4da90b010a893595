package funnel

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"
)

// DefaultDedupeWindow is how long an identical envelope without an id (Partner
// v2) counts as a retry of the first: longer than Funnel's retry horizon.
const DefaultDedupeWindow = 24 * time.Hour

// MaxVisibleIDDigits is the longest integer id shown as it is in an object
// name (every 64-bit id); longer ids are hashed, so that every name, a
// variant's too, fits in 63 characters and can be a label value.
const MaxVisibleIDDigits = 20

// Identity is how the receiver stores one received envelope (README "Identity").
type Identity struct {
	// Name is the FunnelEvent's name: deterministic, so a retried delivery lands
	// on the same object and two replicas receiving it at once create one.
	Name string
	// Previous is, for an event identified by its content, the name the same
	// content got in the previous dedupe window: a receipt within the window of
	// the event stored there is a retry of it. Empty for an event with an id.
	Previous string
	// Digest is the envelope's Digest.
	Digest string
}

// Naming is the receiver's part of an event's identity.
type Naming struct {
	// Receiver is the FunnelReceiver's name: the same id sent to two receivers is
	// two events.
	Receiver string
	// DedupeWindow is how long an identical envelope without an id counts as
	// the same event; DefaultDedupeWindow when not positive.
	DedupeWindow time.Duration
}

// Identify names the event of envelope e received at receivedAt.
//
//   - With an id, the identity is receiver + id + type (letter case ignored; a
//     UUID in any case is one id; an integer sent as a number or a string is
//     one id). The name shows the id when it is an integer or a UUID:
//     evt-<id>-<10 hex>, the hex a digest of receiver, type and id; any other
//     id gives evt-i-<32 hex>.
//   - Without an id (Partner v2), the identity is receiver + the envelope's
//     content (Digest: key order, whitespace and number notation do not
//     count) within the dedupe window: evt-p-<32 hex> (evt-c-… for the other
//     formats). Windows are fixed intervals of the epoch, so every replica
//     names a receipt alike; Previous covers a retry that crosses into the
//     next interval.
func (n Naming) Identify(e *Envelope, receivedAt time.Time) Identity {
	digest := e.Digest()
	if id := e.identityID(); id != "" {
		return Identity{Name: idName(n.Receiver, e.Type, id), Digest: digest}
	}
	w := n.DedupeWindow
	if w <= 0 {
		w = DefaultDedupeWindow
	}
	prefix := "evt-c-"
	if e.Format == FormatPartnerV2 {
		prefix = "evt-p-"
	}
	window := receivedAt.UnixNano() / int64(w)
	name := func(window int64) string {
		return prefix + hashHex(32, "funnel-event-content/v2", n.Receiver, strconv.FormatInt(int64(w), 10), strconv.FormatInt(window, 10), digest)
	}
	return Identity{Name: name(window), Previous: name(window - 1), Digest: digest}
}

// VariantName is the name under which an envelope is stored when the name of
// its identity is taken by different content: same receiver, id and type,
// another payload. Deterministic, so retries of the variant land on it too.
func VariantName(name, digest string) string {
	return name + "-" + digest[:11]
}

// identityID is the id the envelope is identified by: integers as their
// digits, a UUID in lower case, other ids as sent; "" when there is none.
func (e *Envelope) identityID() string {
	if isUUID(e.ID) {
		return strings.ToLower(e.ID)
	}
	return e.ID
}

// idName names an event identified by its id.
func idName(receiver, eventType, id string) string {
	if isUUID(id) || isDigits(id) && len(id) <= MaxVisibleIDDigits {
		return "evt-" + id + "-" + hashHex(10, "funnel-event-name/v2", receiver, strings.ToLower(eventType), id)
	}
	return "evt-i-" + hashHex(32, "funnel-event-name/v2", receiver, strings.ToLower(eventType), id)
}

// hashHex returns the first n hex digits of sha256 over the length-prefixed parts, so
// no two different part lists hash alike.
func hashHex(n int, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:n]
}

// isUUID reports whether s has the 8-4-4-4-12 hex digit shape of a UUID, in
// any case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Digest is the hex sha256 of a canonical form of the envelope: format, id
// (as identified), type (letter case ignored), occurredAt, idempotency key and
// data in canonical JSON. Redeliveries of one event that differ only in their
// serialisation (whitespace, key order, string escapes, number notation, the
// letter case of a UUID, an integer id sent as a string, the unit of a
// timestamp) give the same digest; any changed value gives another. Top-level
// fields no format defines are left out: a sender may add a delivery counter
// to each retry. A nil envelope gives "".
func (e *Envelope) Digest() string {
	if e == nil {
		return ""
	}
	h := sha256.New()
	io.WriteString(h, "funnel-envelope-digest/v2\n")
	field := func(name string, value []byte) {
		fmt.Fprintf(h, "%s %d\n", name, len(value))
		h.Write(value)
		h.Write([]byte{'\n'})
	}
	field("format", []byte(e.Format))
	field("id", []byte(e.identityID()))
	field("type", []byte(strings.ToLower(e.Type)))
	if e.OccurredAt != nil {
		field("occurredAt", []byte(e.OccurredAt.UTC().Format(time.RFC3339Nano)))
	} else {
		field("noOccurredAt", nil)
	}
	field("idempotencyKey", []byte(e.IdempotencyKey))
	io.WriteString(h, "data\n")
	if data := trimJSONSpace(e.Data); json.Valid(data) && checkDepth(data, MaxNestingDepth) == nil {
		hashCanonical(h, data)
	} else {
		// Not reachable through Parse; a hand-built envelope with bad data still gets
		// a digest that changes with every byte.
		field("rawData", e.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashCanonical streams the canonical form of valid JSON into h.
func hashCanonical(h hash.Hash, data []byte) {
	w := bufio.NewWriterSize(h, 4096)
	writeCanonical(w, data, 0)
	_ = w.Flush() // a hash never fails to write
}

// CanonicalJSON re-encodes one JSON value so that equal values give equal
// bytes: object keys sorted (the last of duplicate keys kept), insignificant
// whitespace removed, strings in one escaping, numbers as significant digits
// and an exponent (never through float64). It refuses invalid JSON and invalid
// UTF-8, which encoding/json would otherwise silently replace and so make two
// different bodies equal, and nesting deeper than MaxNestingDepth.
func CanonicalJSON(raw []byte) ([]byte, error) {
	trimmed, err := canonicalInput(raw)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	writeCanonical(&out, trimmed, 0)
	return out.Bytes(), nil
}

// WriteStoredJSON writes to w the canonical form of the JSON value raw as the API server
// keeps it in a custom resource: CanonicalJSON's, but with numbers as the API server
// reads them (an integer that fits in 64 bits, else a float64: 2.5e5 and 250000 are
// alike, and an integer past 64 bits is rounded). raw gives the same bytes before and
// after the API server stored it, so a MAC over them survives the round trip. It refuses
// what CanonicalJSON refuses.
func WriteStoredJSON(w io.Writer, raw []byte) error {
	trimmed, err := canonicalInput(raw)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 4096)
	writeStoredCanonical(bw, trimmed, 0)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("canonical JSON: %w", err)
	}
	return nil
}

// canonicalInput checks that raw can be canonicalised and returns it without the
// surrounding whitespace.
func canonicalInput(raw []byte) ([]byte, error) {
	if i := firstInvalidUTF8(raw); i >= 0 {
		return nil, fmt.Errorf("canonical JSON: invalid UTF-8 at offset %d", i)
	}
	if err := checkDepth(raw, MaxNestingDepth); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	trimmed := trimJSONSpace(raw)
	if !json.Valid(trimmed) {
		// Unmarshal explains what json.Valid only reports.
		err := json.Unmarshal(trimmed, new(json.RawMessage))
		if err == nil {
			err = errors.New("not valid JSON")
		}
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return trimmed, nil
}

// EventNameHeader carries, in the receiver's 200, the name of the FunnelEvent the
// request is stored as (the body must stay exactly "Funnel Event Received"): senders
// and tests find the object by it.
const EventNameHeader = "X-Funnel-Event-Name"

// EventName is the name the receiver named receiver gives to body received at t, for
// senders and tests that predict it. The receiver's answer is authoritative (its 200
// carries the name in a header): it differs when the identity was already stored with
// other content (a variant), or when content identified the event as a retry of an
// earlier window.
func EventName(receiver string, body []byte, t time.Time) (string, error) {
	env, err := Parse(body)
	if err != nil {
		return "", err
	}
	return Naming{Receiver: receiver}.Identify(env, t).Name, nil
}
