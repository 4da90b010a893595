package funnel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ObjectName is the name of the FunnelEvent for this envelope (design.md §3).
// It is deterministic, so a retried delivery lands on the same object and is
// recognised as a duplicate:
//
//   - Classic: evt-<id>;
//   - V3 with a UUID id: evt-<id lower-cased>;
//   - V3 with any other id: evt-v3-<first 32 hex of sha256(id)>, so odd ids
//     still give a valid name and two distinct ids never share one;
//   - PartnerV2, which has no id: evt-p-<first 32 hex of sha256(body)>.
//
// body is the raw request body; only PartnerV2 uses it. The result is always
// a valid DNS-1123 subdomain of at most 253 characters ("" for a nil
// envelope).
func (e *Envelope) ObjectName(body []byte) string {
	if e == nil {
		return ""
	}
	switch e.Format {
	case FormatClassic:
		if isDigits(e.ID) && len(e.ID) <= MaxClassicIDDigits {
			return "evt-" + e.ID
		}
		// Only an Envelope built by hand gets here; Parse never returns one.
		return "evt-c-" + hash32([]byte(e.ID))
	case FormatV3:
		if isUUID(e.ID) {
			return "evt-" + strings.ToLower(e.ID)
		}
		return "evt-v3-" + hash32([]byte(e.ID))
	default:
		return "evt-p-" + hash32(body)
	}
}

// hash32 returns the first 32 hex digits (128 bits) of sha256(b).
func hash32(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
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

// Digest is the hex sha256 of a canonical form of the envelope: format, id,
// type, occurredAt, idempotency key and data, with data canonicalised by
// CanonicalJSON. Redeliveries of one event that differ only in whitespace or
// key order give the same digest; any changed value gives another. The
// receiver compares digests to answer 409 when an event id arrives again with
// a different payload. A nil envelope gives "".
func (e *Envelope) Digest() string {
	if e == nil {
		return ""
	}
	h := sha256.New()
	io.WriteString(h, "funnel-envelope-digest/v1\n")
	field := func(name string, value []byte) {
		// Length-prefixed, so no two different field lists hash alike.
		fmt.Fprintf(h, "%s %d\n", name, len(value))
		h.Write(value)
		h.Write([]byte{'\n'})
	}
	field("format", []byte(e.Format))
	field("id", []byte(e.ID))
	field("type", []byte(e.Type))
	if e.OccurredAt != nil {
		field("occurredAt", []byte(e.OccurredAt.UTC().Format(time.RFC3339Nano)))
	} else {
		field("noOccurredAt", nil)
	}
	field("idempotencyKey", []byte(e.IdempotencyKey))
	if canonical, err := CanonicalJSON(e.Data); err == nil {
		field("data", canonical)
	} else {
		// Not reachable through Parse; a hand-built envelope with bad data
		// still gets a digest that changes with every byte.
		field("rawData", e.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CanonicalJSON re-encodes one JSON value so that equal values give equal
// bytes: object keys sorted, insignificant whitespace removed, numbers kept
// as their exact text (never through float64), strings in one escaping.
// It refuses invalid JSON and invalid UTF-8, which encoding/json would
// otherwise silently replace and so make two different bodies equal.
func CanonicalJSON(raw []byte) ([]byte, error) {
	if i := firstInvalidUTF8(raw); i >= 0 {
		return nil, fmt.Errorf("canonical JSON: invalid UTF-8 at offset %d", i)
	}
	if !json.Valid(raw) {
		// Unmarshal explains what json.Valid only reports.
		err := json.Unmarshal(raw, new(json.RawMessage))
		if err == nil {
			err = errors.New("not valid JSON")
		}
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	// encoding/json writes map keys sorted and a json.Number as its text.
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte{'\n'}), nil
}
