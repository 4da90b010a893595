package funnel

import "strings"

// Partner v2 prospect event types (webhooks.md §2.3). Their envelope has no
// id and no timestamp.
const (
	TypeRenterCreated      = "renter.created"
	TypeRenterStatusChange = "renter.status-change"
	TypeAppointmentUpdated = "appointment.updated"
)

// RenterCreated is the data of renter.created (§2.3.1). Types are inferred
// from the docs' example and no nullability is stated, so only the renter
// id is required.
type RenterCreated struct {
	FunnelRenterID    ID        `json:"funnel_renter_id" funnel:"required"`
	FunnelCommunityID ID        `json:"funnel_community_id"`
	Status            string    `json:"status"`
	People            []Person  `json:"people"`
	LeadSource        string    `json:"lead_source"`
	MoveInDate        Date      `json:"move_in_date"`
	CreatedAt         DateTime  `json:"created_at"`
	Layouts           []string  `json:"layouts"`
	Listings          []Listing `json:"listings"`
	Messages          []Message `json:"messages"`
}

// Person is one person of a renter. Phones may be "".
type Person struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Email     string `json:"email"`
	Phone1    string `json:"phone_1"`
	Phone2    string `json:"phone_2"`
	SMSOptIn  bool   `json:"sms_opt_in"`
}

// Listing is a unit a renter is interested in.
type Listing struct {
	FunnelUnitID       ID     `json:"funnel_unit_id"`
	PropertyAddress    string `json:"property_address"`
	PropertyInternalID string `json:"property_internal_id"`
}

// Message is a message the renter sent, e.g. through a listing site.
type Message struct {
	Message     string   `json:"message"`
	ReceivedAt  DateTime `json:"received_at"`
	MessageType string   `json:"message_type"`
}

func (d *RenterCreated) summary() string {
	var details []string
	if d.Status != "" {
		details = append(details, d.Status)
	}
	if len(d.People) > 0 {
		details = append(details, plural(len(d.People), "person", "people"))
	}
	if d.LeadSource != "" {
		details = append(details, "via "+d.LeadSource)
	}
	s := "Renter " + string(d.FunnelRenterID) + " created"
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	return s
}

// subjects has no unit: listings are units of interest, not the event's
// unit.
func (d *RenterCreated) subjects() map[string]string {
	return subjects(LabelRenterID, string(d.FunnelRenterID), LabelCommunityID, string(d.FunnelCommunityID))
}

// RenterStatusChange is the data of renter.status-change (§2.3.2). Its
// community is funnel_team_id, not funnel_community_id (§1.5.9). Status
// values are an open set.
type RenterStatusChange struct {
	FunnelRenterID ID     `json:"funnel_renter_id" funnel:"required"`
	FunnelTeamID   ID     `json:"funnel_team_id"`
	Status         string `json:"status" funnel:"required"`
}

func (d *RenterStatusChange) summary() string {
	return "Renter " + string(d.FunnelRenterID) + " is now " + d.Status
}

func (d *RenterStatusChange) subjects() map[string]string {
	return subjects(LabelRenterID, string(d.FunnelRenterID), LabelCommunityID, string(d.FunnelTeamID))
}

// AppointmentUpdated is the data of appointment.updated (§2.3.3), sent when
// a tour is created or updated. status is the one closed enum in the docs;
// both spellings of cancelled are accepted because Funnel's own names use
// "canceled" (§1.5.8).
type AppointmentUpdated struct {
	FunnelRenterID    ID       `json:"funnel_renter_id" funnel:"required"`
	FunnelTourID      ID       `json:"funnel_tour_id" funnel:"required"`
	FunnelCommunityID ID       `json:"funnel_community_id"`
	PMSUnitIDs        []string `json:"pms_unit_ids"`
	TourType          string   `json:"tour_type"`
	Start             DateTime `json:"start"`
	End               DateTime `json:"end"`
	Status            string   `json:"status" funnel:"oneof=completed no-show cancelled canceled unknown"`
}

func (d *AppointmentUpdated) summary() string {
	tour := "Tour"
	if d.TourType != "" {
		tour = d.TourType + " tour"
	}
	s := tour + " " + string(d.FunnelTourID) + " for renter " + string(d.FunnelRenterID)
	if t, err := d.Start.Time(); err == nil && d.Start != "" {
		s += " on " + t.Format("2006-01-02 15:04")
	}
	if d.Status != "" {
		s += ": " + d.Status
	}
	return s
}

// subjects has no unit: pms_unit_ids are PMS candidates, not a Funnel unit.
func (d *AppointmentUpdated) subjects() map[string]string {
	return subjects(LabelRenterID, string(d.FunnelRenterID), LabelCommunityID, string(d.FunnelCommunityID))
}
