// Package synth makes realistic synthetic Funnel webhook bodies: every
// documented event type, in any of the three envelopes, with fresh ids and
// plausible data.
//
// Funnel's docs mention a testing API but document no endpoint, so the operator
// needs its own source of events to exercise a receiver end to end: the
// kubectl-funnel "send" command and load tests build their bodies here.
// Field names and value shapes follow the docs exactly, so every body passes
// funnel.Parse and its type's Decode; where the docs give no field table,
// only the ids the documented events share are sent, never invented fields.
package synth

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
)

// types lists the documented event types in the order of the docs: the
// Events List, the V3 lease events, the Partner v2 prospect events.
var types = []string{
	funnel.TypeUnitReserved,
	funnel.TypeUnitReleased,
	funnel.TypeStatusUpdated,
	funnel.TypeTermsUpdated,
	funnel.TypeLeaseTransactionUpdated,
	funnel.TypeFeesUpdated,
	funnel.TypeRentableItemSelected,
	funnel.TypeRentableItemDeselected,
	funnel.TypeResidentMoveIn,
	funnel.TypeResidentMoveInCanceled,
	funnel.TypeQuoteCreated,
	funnel.TypeMoveIn,
	funnel.TypeMoveInCanceled,
	funnel.TypeRenterCreated,
	funnel.TypeRenterStatusChange,
	funnel.TypeAppointmentUpdated,
}

// Types returns the 16 documented event types, in the order the docs list
// them. The slice is a copy.
func Types() []string { return slices.Clone(types) }

// Formats returns the three envelope formats, Classic first.
func Formats() []funnel.Format {
	return []funnel.Format{funnel.FormatClassic, funnel.FormatV3, funnel.FormatPartnerV2}
}

// NaturalFormat is the envelope the docs show eventType in, so that a
// default synthetic event looks like what Funnel's own pages print:
// lease_transaction.unit_reserved and the lease.move_in pair are V3, the
// renter.* and appointment.* prospect events Partner v2, and everything else
// (the rest of the Events List and unknown types) Classic.
func NaturalFormat(eventType string) funnel.Format {
	switch {
	case eventType == funnel.TypeUnitReserved, strings.HasPrefix(eventType, "lease.move_in"):
		return funnel.FormatV3
	case strings.HasPrefix(eventType, "renter."), strings.HasPrefix(eventType, "appointment."):
		return funnel.FormatPartnerV2
	default:
		return funnel.FormatClassic
	}
}

// Generator makes synthetic event bodies. Given the same seeded *rand.Rand,
// the same clock and the same calls, it returns the same bytes, so a load
// run can be repeated exactly. It is not safe for concurrent use.
type Generator struct {
	r *rand.Rand
	// Now is the clock for timestamps and the dates derived from them; nil
	// means time.Now. Set it to a fixed instant for reproducible bodies.
	Now func() time.Time
	// seen holds the identity of every event returned so far, so that one
	// generator never gives two different bodies the same FunnelEvent name
	// (the receiver would store the second as a variant of the first).
	seen map[string]struct{}
}

// New returns a Generator drawing from r.
func New(r *rand.Rand) *Generator {
	return &Generator{r: r, seen: make(map[string]struct{})}
}

// maxAttempts bounds the redraws after an identity collision; with 64-bit
// and UUID ids a second attempt is already vanishingly rare.
const maxAttempts = 100

// Event returns a complete webhook body for eventType in format ("" for the
// type's NaturalFormat). The envelope has fresh ids and the current time;
// the data is plausible for the type, and a generic object for a type the
// docs do not list. Every body has a FunnelEvent name this generator has not
// returned before: Partner v2 has no id, so its data carries fresh renter,
// tour or transaction ids and the body as a whole is kept unique.
func (g *Generator) Event(eventType string, format funnel.Format) ([]byte, error) {
	if eventType == "" {
		return nil, errors.New("synth: event type is empty")
	}
	if format == "" {
		format = NaturalFormat(eventType)
	}
	if !slices.Contains(Formats(), format) {
		return nil, fmt.Errorf("synth: unknown format %q (want %s, %s or %s)",
			format, funnel.FormatClassic, funnel.FormatV3, funnel.FormatPartnerV2)
	}
	now := time.Now()
	if g.Now != nil {
		now = g.Now()
	}
	now = now.UTC()
	for range maxAttempts {
		body, identity, err := g.envelope(eventType, format, now, g.data(eventType, now))
		if err != nil {
			return nil, fmt.Errorf("synth: encoding %s event: %w", eventType, err)
		}
		if _, dup := g.seen[identity]; !dup {
			g.seen[identity] = struct{}{}
			return body, nil
		}
	}
	return nil, fmt.Errorf("synth: no fresh %s identity for %s after %d attempts", format, eventType, maxAttempts)
}

// Envelopes, with fields in the order the docs print them.
type (
	classicEnvelope struct {
		ID             uint64  `json:"id"`
		EventType      string  `json:"event_type"`
		EventTimestamp int64   `json:"event_timestamp"`
		IdempotencyKey *string `json:"idempotency_key"`
		EventData      any     `json:"event_data"`
	}
	v3Envelope struct {
		ID        string `json:"id"`
		Event     string `json:"event"`
		Timestamp string `json:"timestamp"`
		Data      any    `json:"data"`
	}
	partnerEnvelope struct {
		Event string `json:"event"`
		Data  any    `json:"data"`
	}
)

// v3TimeLayout writes a V3 timestamp as the Events List example does:
// microseconds and an explicit +00:00 offset (the time is in UTC).
const v3TimeLayout = "2006-01-02T15:04:05.000000+00:00"

// envelope wraps data in format and returns the body with the identity the
// receiver names the event by (funnel.Naming.Identify's inputs).
func (g *Generator) envelope(eventType string, format funnel.Format, now time.Time, data any) ([]byte, string, error) {
	switch format {
	case funnel.FormatClassic:
		env := classicEnvelope{
			ID:             g.classicID(),
			EventType:      eventType,
			EventTimestamp: now.Unix(),
			EventData:      data,
		}
		// The docs' only example has null; the key's meaning is
		// undocumented, so a string sometimes keeps receivers honest.
		if g.r.IntN(4) == 0 {
			key := g.uuid()
			env.IdempotencyKey = &key
		}
		body, err := marshal(env)
		return body, fmt.Sprintf("c:%d", env.ID), err
	case funnel.FormatV3:
		env := v3Envelope{ID: g.uuid(), Event: eventType, Timestamp: now.Format(v3TimeLayout), Data: data}
		body, err := marshal(env)
		return body, "v:" + env.ID, err
	default:
		body, err := marshal(partnerEnvelope{Event: eventType, Data: data})
		sum := sha256.Sum256(body)
		return body, "p:" + string(sum[:16]), err
	}
}

// marshal encodes v compactly, as a webhook sender would, without
// encoding/json's HTML escaping, which Funnel's bodies do not show.
func marshal(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

// classicID returns a Classic event id: usually of the size the docs show
// (8932127), and one time in eight above 2^53, where a float64 would round
// it, to prove ids travel as exact digits.
func (g *Generator) classicID() uint64 {
	if g.r.IntN(8) == 0 {
		return 1<<53 + 1 + g.r.Uint64N(math.MaxUint64-1<<53)
	}
	return 1_000_000 + g.r.Uint64N(9_999_000_000)
}

// uuid returns a random (version 4) UUID in lower case, as V3 ids are.
func (g *Generator) uuid() string {
	var b [16]byte
	hi, lo := g.r.Uint64(), g.r.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
