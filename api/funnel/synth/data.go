package synth

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
)

// data returns the data object of one event of eventType. It fills the
// event structs of package funnel, the ones the reconcilers decode into, so
// the field names sent are by construction the ones validated.
func (g *Generator) data(eventType string, now time.Time) any {
	switch eventType {
	case funnel.TypeUnitReserved:
		return g.unitReserved()
	case funnel.TypeUnitReleased:
		// Its (partly captured) table most likely equals unit_reserved's.
		return funnel.UnitReleased(g.unitReserved())
	case funnel.TypeStatusUpdated:
		return g.statusUpdated()
	case funnel.TypeLeaseTransactionUpdated:
		return g.leaseTransactionUpdated()
	case funnel.TypeTermsUpdated, funnel.TypeFeesUpdated, funnel.TypeQuoteCreated,
		funnel.TypeRentableItemSelected, funnel.TypeRentableItemDeselected,
		funnel.TypeResidentMoveIn, funnel.TypeResidentMoveInCanceled:
		// Their fields are NOT DOCUMENTED: only the ids the documented
		// lease-transaction events share are sent, never invented fields.
		return g.transactionRef()
	case funnel.TypeMoveIn:
		return g.moveIn(now)
	case funnel.TypeMoveInCanceled:
		return funnel.MoveInCanceled{
			MoveInDate:             g.moveInDate(now),
			PMSIdentifier:          g.pmsID("t"),
			CommunityPMSIdentifier: g.digits(1, 4),
		}
	case funnel.TypeRenterCreated:
		return g.renterCreated(now)
	case funnel.TypeRenterStatusChange:
		return funnel.RenterStatusChange{
			FunnelRenterID: g.renterID(),
			FunnelTeamID:   g.communityID(),
			Status:         pick(g, renterStatuses),
		}
	case funnel.TypeAppointmentUpdated:
		return g.appointmentUpdated(now)
	default:
		return genericData{
			CommunityID: g.communityID(),
			ClientID:    g.clientID(),
			Reference:   fmt.Sprintf("ref-%08x", g.r.Uint32()),
			CreatedAt:   now.Format(time.RFC3339),
		}
	}
}

// Values the docs show or name, used as the pools values are drawn from.
var (
	// transactionTypes is the documented lease_transaction_type list,
	// Application weighted as the common case.
	transactionTypes = []string{
		"Application", "Application", "Application", "Application",
		"Lease Revision", "Renewal", "Renewal", "Notice to Vacate", "Lease Confirmation", "Transfer",
	}
	// statusChanges are previous → current pairs. Only Submitted and
	// Approved are documented; the others are plausible neighbours.
	statusChanges = [][2]string{
		{"Submitted", "Approved"}, {"Submitted", "Approved"}, {"Submitted", "Approved"},
		{"In Progress", "Submitted"}, {"In Progress", "Submitted"},
		{"Submitted", "Denied"},
		{"Approved", "Canceled"},
	}
	// updateTypes are the update_type values the docs name.
	updateTypes = []string{
		"Dependent added", "CoApplicant invited", "Guarantor invited",
		"Occupant invited", "Applicant Signed Lease",
	}
	renterStatuses = []string{"Prospect", "Applicant", "Applicant", "Resident", "Lost"}
	// appointmentPast and appointmentFuture split the documented status
	// enum by whether the tour's start has passed.
	appointmentPast   = []string{"completed", "completed", "completed", "no-show", "cancelled"}
	appointmentFuture = []string{"unknown", "unknown", "cancelled"}
	leadSources       = []string{"apartments.com", "zillow.com", "rent.com", "apartmentlist.com", "Community Website", "Walk-in"}
	layouts           = []string{"studio", "1-bedroom", "2-bedroom", "3-bedroom"}
	firstNames        = []string{"John", "Jane", "Maria", "James", "Aisha", "Wei", "Carlos", "Emily", "Noah", "Priya", "Olivia", "Mateo"}
	lastNames         = []string{"Doe", "Smith", "Garcia", "Johnson", "Nguyen", "Patel", "Kim", "Brown", "Lopez", "Okafor", "Rossi"}
	emailDomains      = []string{"example.com", "example.net", "example.org"}
	areaCodes         = []string{"212", "312", "415", "510", "617", "646", "718", "773"}
	streets           = []string{"First St", "Main St", "Oak Ave", "Park Pl", "Elm St", "Lake Shore Dr", "Mission St"}
	messages          = []string{
		"Hi am i interested in seeing apt %s.",
		"Is unit %s still available? I would like to schedule a tour.",
		"Hello, do you allow pets in %s? Looking to move next month.",
	}
)

func (g *Generator) unitReserved() funnel.UnitReserved {
	return funnel.UnitReserved{
		LeaseTransactionID: g.transactionID(),
		// A unit is reserved by an application or a transfer, not a renewal.
		LeaseTransactionType: pick(g, []string{"Application", "Application", "Application", "Transfer"}),
		ClientID:             g.clientID(),
		// Null when the guest card or tenant has not reached the PMS yet.
		GuestcardPMSIdentifier: g.maybe(0.8, g.pmsID("p")),
		TenantPMSIdentifier:    g.maybe(0.6, g.pmsID("t")),
		UnitID:                 g.unitID(),
		UnitPMSIdentifier:      g.maybe(0.9, g.pmsID("u")),
		CommunityID:            g.communityID(),
		CommunityPMSIdentifier: g.maybe(0.95, g.pmsID("c")),
	}
}

func (g *Generator) statusUpdated() funnel.StatusUpdated {
	change := pick(g, statusChanges)
	return funnel.StatusUpdated{
		LeaseTransactionID:   g.transactionID(),
		LeaseTransactionType: pick(g, transactionTypes),
		CurrentStatus:        change[1],
		PreviousStatus:       change[0],
		ClientID:             g.clientID(),
		CommunityID:          g.communityID(),
	}
}

func (g *Generator) leaseTransactionUpdated() funnel.LeaseTransactionUpdated {
	d := funnel.LeaseTransactionUpdated{
		LeaseTransactionID:     g.transactionID(),
		LeaseTransactionType:   pick(g, transactionTypes),
		ClientID:               g.clientID(),
		CommunityID:            g.communityID(),
		UnitID:                 g.unitID(),
		UpdateType:             pick(g, updateTypes),
		TenantPMSIdentifier:    g.maybe(0.6, g.pmsID("t")),
		UnitPMSIdentifier:      g.maybe(0.9, g.pmsID("u")),
		CommunityPMSIdentifier: g.maybe(0.95, g.pmsID("c")),
	}
	if d.UpdateType == "Applicant Signed Lease" || g.hasLease(d.LeaseTransactionType) {
		id := g.leaseID()
		d.LeaseID = &id
	}
	return d
}

// hasLease decides whether a transaction of txType already has a lease,
// and so a non-null lease_id: every kind but an Application presupposes
// one; an application has one once it was signed.
func (g *Generator) hasLease(txType string) bool {
	return txType != "Application" || g.chance(0.3)
}

// transactionRef is the shared ids of a lease transaction; lease_id is
// null (as in lease_transaction.updated) until a lease exists.
func (g *Generator) transactionRef() funnel.TransactionRef {
	r := funnel.TransactionRef{
		LeaseTransactionID:   g.transactionID(),
		LeaseTransactionType: pick(g, transactionTypes),
		ClientID:             g.clientID(),
		UnitID:               g.unitID(),
		CommunityID:          g.communityID(),
	}
	if g.hasLease(r.LeaseTransactionType) {
		r.LeaseID = g.leaseID()
	}
	return r
}

const dateLayout = "2006-01-02"

// moveInDate is a lease start on or a few days before today: the event
// fires when the renter should be marked as moved in.
func (g *Generator) moveInDate(now time.Time) funnel.Date {
	return funnel.Date(now.AddDate(0, 0, -g.r.IntN(4)).Format(dateLayout))
}

// moveIn draws the rent and the usual monthly extras. Only "Monthly" is a
// documented charge_type, so only it is sent; amounts are in cents.
func (g *Generator) moveIn(now time.Time) funnel.MoveIn {
	start := g.moveInDate(now)
	startTime, _ := time.Parse(dateLayout, string(start))
	term := pick(g, []int{12, 12, 12, 6, 13, 15})
	end := funnel.Date(startTime.AddDate(0, term, -1).Format(dateLayout))
	monthly := func(code, description string, cents int64) funnel.Charge {
		return funnel.Charge{ChargeType: "Monthly", PMSIdentifier: code, StartDate: start,
			EndDate: end, Amount: funnel.Cents(strconv.FormatInt(cents, 10)), Description: description}
	}
	// Rent from $950 to $4,500, in steps of $5.
	charges := []funnel.Charge{monthly("rent", "Rent", 95_000+g.r.Int64N(712)*500)}
	if g.chance(0.4) {
		if g.chance(0.6) {
			charges = append(charges, monthly("pet", "Dog Rent", 5_000))
		} else {
			charges = append(charges, monthly("pet", "Cat Rent", 3_500))
		}
	}
	if g.chance(0.3) {
		charges = append(charges, monthly("parking", "Parking", 7_500+g.r.Int64N(16)*500))
	}
	if g.chance(0.15) {
		charges = append(charges, monthly("storage", "Storage Unit", 4_500))
	}
	return funnel.MoveIn{
		MoveInDate:             start,
		PMSIdentifier:          g.pmsID("t"),
		CommunityPMSIdentifier: g.digits(1, 4),
		Charges:                charges,
	}
}

// partnerTimeLayout is Partner v2's zone-less local date-time.
const partnerTimeLayout = "2006-01-02T15:04:05"

func (g *Generator) renterCreated(now time.Time) funnel.RenterCreated {
	people := []funnel.Person{g.person("")}
	if g.chance(0.3) {
		// A co-renter, often of the same household.
		last := ""
		if g.chance(0.5) {
			last = people[0].LastName
		}
		people = append(people, g.person(last))
	}
	var chosen []string
	for _, l := range layouts {
		if g.chance(0.35) {
			chosen = append(chosen, l)
		}
	}
	if len(chosen) == 0 {
		chosen = append(chosen, pick(g, layouts))
	}
	listings := []funnel.Listing{g.listing()}
	if g.chance(0.25) {
		listings = append(listings, g.listing())
	}
	msgs := []funnel.Message{}
	if g.chance(0.7) {
		apt := fmt.Sprintf("%d%c", 1+g.r.IntN(12), 'A'+rune(g.r.IntN(6)))
		msgs = append(msgs, funnel.Message{
			Message:     fmt.Sprintf(pick(g, messages), apt),
			ReceivedAt:  funnel.DateTime(now.Add(-time.Duration(g.r.IntN(600)) * time.Second).Format(partnerTimeLayout)),
			MessageType: "ILS",
		})
	}
	return funnel.RenterCreated{
		FunnelRenterID:    g.renterID(),
		FunnelCommunityID: g.communityID(),
		Status:            "Prospect",
		People:            people,
		LeadSource:        pick(g, leadSources),
		MoveInDate:        funnel.Date(now.AddDate(0, 0, 14+g.r.IntN(76)).Format(dateLayout)),
		CreatedAt:         funnel.DateTime(now.Format(partnerTimeLayout)),
		Layouts:           chosen,
		Listings:          listings,
		Messages:          msgs,
	}
}

// person returns a fictional person with a reserved-domain email and a
// 555-01xx phone number; lastName "" picks one.
func (g *Generator) person(lastName string) funnel.Person {
	first := pick(g, firstNames)
	if lastName == "" {
		lastName = pick(g, lastNames)
	}
	p := funnel.Person{
		FirstName: first,
		LastName:  lastName,
		Email:     fmt.Sprintf("%s%s%d@%s", strings.ToLower(first), strings.ToLower(lastName), g.r.IntN(100), pick(g, emailDomains)),
		SMSOptIn:  g.chance(0.5),
	}
	if g.chance(0.85) {
		p.Phone1 = g.phone()
	}
	if g.chance(0.15) {
		p.Phone2 = g.phone()
	}
	return p
}

func (g *Generator) phone() string {
	return fmt.Sprintf("%s-555-01%02d", pick(g, areaCodes), g.r.IntN(100))
}

func (g *Generator) listing() funnel.Listing {
	id := make([]byte, 4)
	for i := range id {
		id[i] = byte('A' + g.r.IntN(26))
	}
	return funnel.Listing{
		FunnelUnitID:       g.unitID(),
		PropertyAddress:    fmt.Sprintf("%d %s", 1+g.r.IntN(2999), pick(g, streets)),
		PropertyInternalID: string(id),
	}
}

// appointmentTimeLayout is the documented "YYYY-MM-DD HH:MM:SS", no zone.
const appointmentTimeLayout = "2006-01-02 15:04:05"

func (g *Generator) appointmentUpdated(now time.Time) funnel.AppointmentUpdated {
	// A half-hour slot between 09:00 and 17:30, from two days ago to two
	// weeks ahead.
	day := now.Truncate(24*time.Hour).AddDate(0, 0, g.r.IntN(17)-2)
	start := day.Add(9*time.Hour + time.Duration(g.r.IntN(18))*30*time.Minute)
	status := pick(g, appointmentFuture)
	if start.Before(now) {
		status = pick(g, appointmentPast)
	}
	units := make([]string, 1+g.r.IntN(3))
	for i := range units {
		units[i] = g.digits(3, 4)
	}
	return funnel.AppointmentUpdated{
		FunnelRenterID:    g.renterID(),
		FunnelTourID:      g.id(100, 10_000_000),
		FunnelCommunityID: g.communityID(),
		PMSUnitIDs:        units,
		TourType:          "Guided",
		Start:             funnel.DateTime(start.Format(appointmentTimeLayout)),
		End:               funnel.DateTime(start.Add(30 * time.Minute).Format(appointmentTimeLayout)),
		Status:            status,
	}
}

// genericData is the data of an event type the docs do not list: an object
// with the shared subject ids, so it is still labelled and findable.
type genericData struct {
	CommunityID funnel.ID `json:"community_id"`
	ClientID    funnel.ID `json:"client_id"`
	Reference   string    `json:"reference"`
	CreatedAt   string    `json:"created_at"`
}

// Funnel ids, in the ranges of the docs' examples.
func (g *Generator) transactionID() funnel.ID { return g.id(10_000, 1_000_000) }
func (g *Generator) clientID() funnel.ID      { return g.id(10_000, 100_000_000) }
func (g *Generator) unitID() funnel.ID        { return g.id(1_000, 100_000) }
func (g *Generator) communityID() funnel.ID   { return g.id(1_000, 1_000_000) }
func (g *Generator) leaseID() funnel.ID       { return g.id(1_000, 1_000_000) }
func (g *Generator) renterID() funnel.ID      { return g.id(100_000, 10_000_000) }

// id returns an id in [lo, hi).
func (g *Generator) id(lo, hi int64) funnel.ID {
	return funnel.ID(strconv.FormatInt(lo+g.r.Int64N(hi-lo), 10))
}

// pmsID returns a PMS identifier such as "t12345": a letter for the kind
// of record (p guest card, t tenant, u unit, c community) and 4 to 7 digits.
func (g *Generator) pmsID(prefix string) string { return prefix + g.digits(4, 7) }

// digits returns a decimal number of lo to hi digits, without a leading
// zero.
func (g *Generator) digits(lo, hi int) string {
	n := lo + g.r.IntN(hi-lo+1)
	b := make([]byte, n)
	b[0] = byte('1' + g.r.IntN(9))
	for i := 1; i < n; i++ {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

// chance reports true with probability p.
func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }

// maybe returns &s with probability p, else nil (JSON null). s is drawn
// either way, so the sequence of draws does not depend on the outcome.
func (g *Generator) maybe(p float64, s string) *string {
	if g.chance(p) {
		return &s
	}
	return nil
}

// pick returns a random element of list, which must not be empty.
func pick[T any](g *Generator, list []T) T { return list[g.r.IntN(len(list))] }
