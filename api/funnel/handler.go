package funnel

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Family groups event types by what they are about; the operator runs one
// reconciler per family, each with its own workers (--event-concurrency).
type Family string

// The event families.
const (
	FamilyLeaseTransaction Family = "lease_transaction"
	FamilyLease            Family = "lease"
	FamilyQuote            Family = "quote"
	FamilyProspect         Family = "prospect"
	// FamilyUnknown holds every event type this package does not know.
	FamilyUnknown Family = "unknown"
)

// Details is what a handler learns from an event's data.
type Details struct {
	// Summary is one human line, at most MaxSummaryRunes runes, e.g.
	// "Application 74824: Submitted → Approved".
	Summary string
	// Subjects are the event's subject labels (SubjectLabels).
	Subjects map[string]string
	// Issues lists how the data differs from what Funnel documents for its type.
	Issues []Issue
}

// Valid reports whether nothing contradicts what Funnel documents as required:
// no Issue is Invalid. Notes of undocumented shapes do not count.
func (d Details) Valid() bool {
	for _, i := range d.Issues {
		if i.Invalid {
			return false
		}
	}
	return true
}

// MaxSummaryRunes bounds Details.Summary, which is shown in a printer column.
const MaxSummaryRunes = 200

// Handler validates and summarises the data of one event type.
type Handler struct {
	// Type is the event type the handler was looked up for.
	Type string
	// Family is the type's family, FamilyUnknown when Known is false.
	Family Family
	// Known reports whether the type is one Funnel documents.
	Known bool
	// Decode reads data as the type's documented fields, as well as it can,
	// and returns the summary, the subjects and what differs from the docs.
	Decode func(data json.RawMessage) Details
}

// payload is implemented by each event struct: its one-line summary, from
// whatever DecodeData could read.
type payload interface {
	summary() string
}

type registration struct {
	family Family
	new    func() payload
}

// registry maps each known event type to its family and struct. It is only
// read after package initialisation.
var registry = map[string]registration{
	TypeUnitReserved:            {FamilyLeaseTransaction, func() payload { return new(UnitReserved) }},
	TypeUnitReleased:            {FamilyLeaseTransaction, func() payload { return new(UnitReleased) }},
	TypeStatusUpdated:           {FamilyLeaseTransaction, func() payload { return new(StatusUpdated) }},
	TypeTermsUpdated:            {FamilyLeaseTransaction, func() payload { return new(TermsUpdated) }},
	TypeLeaseTransactionUpdated: {FamilyLeaseTransaction, func() payload { return new(LeaseTransactionUpdated) }},
	TypeFeesUpdated:             {FamilyLeaseTransaction, func() payload { return new(FeesUpdated) }},
	TypeRentableItemSelected:    {FamilyLeaseTransaction, func() payload { return new(RentableItemSelected) }},
	TypeRentableItemDeselected:  {FamilyLeaseTransaction, func() payload { return new(RentableItemDeselected) }},
	TypeResidentMoveIn:          {FamilyLease, func() payload { return new(ResidentMoveIn) }},
	TypeResidentMoveInCanceled:  {FamilyLease, func() payload { return new(ResidentMoveInCanceled) }},
	TypeMoveIn:                  {FamilyLease, func() payload { return new(MoveIn) }},
	TypeMoveInCanceled:          {FamilyLease, func() payload { return new(MoveInCanceled) }},
	TypeQuoteCreated:            {FamilyQuote, func() payload { return new(QuoteCreated) }},
	TypeRenterCreated:           {FamilyProspect, func() payload { return new(RenterCreated) }},
	TypeRenterStatusChange:      {FamilyProspect, func() payload { return new(RenterStatusChange) }},
	TypeAppointmentUpdated:      {FamilyProspect, func() payload { return new(AppointmentUpdated) }},
}

// Lookup returns the handler for eventType, whose letter case does not count:
// the typed one for a known type (Type is then its documented spelling),
// otherwise a generic one (Known false, FamilyUnknown) that accepts any
// object, because Funnel may send types its docs do not list.
func Lookup(eventType string) Handler {
	known := strings.ToLower(eventType)
	reg, ok := registry[known]
	if !ok {
		return Handler{
			Type:   eventType,
			Family: FamilyUnknown,
			Decode: func(data json.RawMessage) Details { return decodeUnknown(eventType, data) },
		}
	}
	return Handler{
		Type:   known,
		Family: reg.family,
		Known:  true,
		Decode: func(data json.RawMessage) Details {
			p := reg.new()
			issues, _ := DecodeData(data, p) // p is always a pointer to a struct
			return Details{Summary: oneLine(p.summary()), Subjects: SubjectLabels(known, data), Issues: issues}
		},
	}
}

// decodeUnknown accepts any object and summarises it generically.
func decodeUnknown(eventType string, data json.RawMessage) Details {
	var d decoder
	var fields map[string]json.RawMessage
	if i := firstInvalidUTF8(data); i >= 0 {
		d.issue("data", fmt.Sprintf("is not valid UTF-8 (bad byte at offset %d)", i), true)
	} else {
		fields, _ = d.object("data", data, true)
	}
	name := eventType
	if name == "" {
		name = "without a type"
	}
	return Details{
		Summary:  oneLine(fmt.Sprintf("Event %s (%s)", name, plural(len(fields), "field", "fields"))),
		Subjects: SubjectLabels(eventType, data),
		Issues:   d.issues,
	}
}

// KnownTypes returns the documented event types, sorted.
func KnownTypes() []string {
	types := make([]string, 0, len(registry))
	for t := range registry {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// TypesOf returns the known event types of family f, sorted; none for
// FamilyUnknown.
func TypesOf(f Family) []string {
	var types []string
	for _, t := range KnownTypes() {
		if registry[t].family == f {
			types = append(types, t)
		}
	}
	return types
}

// FamilyOf returns the family of eventType (letter case ignored),
// FamilyUnknown for a type this package does not know.
func FamilyOf(eventType string) Family {
	if reg, ok := registry[strings.ToLower(eventType)]; ok {
		return reg.family
	}
	return FamilyUnknown
}

// oneLine makes s fit a printer column: control and line-separator
// characters become spaces, and it is cut to MaxSummaryRunes runes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= MaxSummaryRunes {
		return s
	}
	r := []rune(s)
	return string(r[:MaxSummaryRunes-1]) + "…"
}

// plural writes n with the singular or plural noun.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// capitalize upper-cases the first letter, for subjects that open a summary.
func capitalize(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[size:]
}

// dollars formats an amount in cents as US dollars with thousands
// separators, e.g. 255000 → "$2,550.00"; any size, exact.
func dollars(cents *big.Int) string {
	sign := ""
	abs := new(big.Int).Set(cents)
	if abs.Sign() < 0 {
		sign = "-"
		abs.Neg(abs)
	}
	whole, frac := new(big.Int).QuoRem(abs, big.NewInt(100), new(big.Int))
	digits := whole.String()
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return fmt.Sprintf("%s$%s.%02d", sign, b.String(), frac.Int64())
}
