package funnel

// Lease-transaction event types, from Funnel's Events List. Their data arrives
// in the Classic or the V3 envelope; the docs show both.
const (
	TypeUnitReserved            = "lease_transaction.unit_reserved"
	TypeUnitReleased            = "lease_transaction.unit_released"
	TypeStatusUpdated           = "lease_transaction.status_updated"
	TypeTermsUpdated            = "lease_transaction.terms_updated"
	TypeLeaseTransactionUpdated = "lease_transaction.updated"
	TypeFeesUpdated             = "lease_transaction.fees_updated"
	TypeRentableItemSelected    = "lease_transaction.rentable_item_selected"
	TypeRentableItemDeselected  = "lease_transaction.rentable_item_deselected"
)

// UnitReserved is the data of lease_transaction.unit_reserved, the one
// lease-transaction event whose field table is fully documented:
// the fields documented as not nullable are required.
type UnitReserved struct {
	LeaseTransactionID     ID      `json:"lease_transaction_id" funnel:"required"`
	LeaseTransactionType   string  `json:"lease_transaction_type" funnel:"required"`
	ClientID               ID      `json:"client_id" funnel:"required"`
	GuestcardPMSIdentifier *string `json:"guestcard_pms_identifier"`
	TenantPMSIdentifier    *string `json:"tenant_pms_identifier"`
	UnitID                 ID      `json:"unit_id" funnel:"required"`
	UnitPMSIdentifier      *string `json:"unit_pms_identifier"`
	CommunityID            ID      `json:"community_id" funnel:"required"`
	CommunityPMSIdentifier *string `json:"community_pms_identifier"`
}

func (d *UnitReserved) summary() string {
	return unitAction(d.UnitID, d.UnitPMSIdentifier, "reserved by", d.LeaseTransactionType, d.LeaseTransactionID)
}

// UnitReleased is the data of lease_transaction.unit_released. Its
// table comes from a lossy extract; the fields it lists as not nullable are
// required. unit_id and guestcard_pms_identifier are likely but unconfirmed,
// so they are optional.
type UnitReleased struct {
	LeaseTransactionID     ID      `json:"lease_transaction_id" funnel:"required"`
	LeaseTransactionType   string  `json:"lease_transaction_type" funnel:"required"`
	ClientID               ID      `json:"client_id" funnel:"required"`
	GuestcardPMSIdentifier *string `json:"guestcard_pms_identifier"`
	TenantPMSIdentifier    *string `json:"tenant_pms_identifier"`
	UnitID                 ID      `json:"unit_id"`
	UnitPMSIdentifier      *string `json:"unit_pms_identifier"`
	CommunityID            ID      `json:"community_id" funnel:"required"`
	CommunityPMSIdentifier *string `json:"community_pms_identifier"`
}

func (d *UnitReleased) summary() string {
	return unitAction(d.UnitID, d.UnitPMSIdentifier, "released by", d.LeaseTransactionType, d.LeaseTransactionID)
}

// unitAction writes "Unit 4352 reserved by Application 74824", naming the
// unit by its PMS id when the Funnel id is absent, and not at all when
// neither is there.
func unitAction(unitID ID, unitPMS *string, verb, txType string, txID ID) string {
	unit := "Unit"
	switch {
	case unitID != "":
		unit += " " + string(unitID)
	case unitPMS != nil && *unitPMS != "":
		unit += " " + *unitPMS
	}
	return unit + " " + verb + " " + transactionName(txType, txID)
}

// StatusUpdated is the data of lease_transaction.status_updated, known only
// from the Event Object page's example, which states no nullability:
// nothing is required. Status values are an open set.
type StatusUpdated struct {
	LeaseTransactionID   ID     `json:"lease_transaction_id"`
	LeaseTransactionType string `json:"lease_transaction_type"`
	CurrentStatus        string `json:"current_status"`
	PreviousStatus       string `json:"previous_status"`
	ClientID             ID     `json:"client_id"`
	CommunityID          ID     `json:"community_id"`
}

func (d *StatusUpdated) summary() string {
	name := capitalize(transactionName(d.LeaseTransactionType, d.LeaseTransactionID))
	switch {
	case d.CurrentStatus == "":
		return name + ": status updated"
	case d.PreviousStatus == "":
		return name + ": now " + d.CurrentStatus
	}
	return name + ": " + d.PreviousStatus + " → " + d.CurrentStatus
}

// LeaseTransactionUpdated is the data of lease_transaction.updated. Its
// table comes from a lossy extract shared with unit_released,
// so nothing is required. update_type is an open set ("Dependent added",
// "CoApplicant invited", ...).
type LeaseTransactionUpdated struct {
	LeaseTransactionID     ID      `json:"lease_transaction_id"`
	LeaseTransactionType   string  `json:"lease_transaction_type"`
	ClientID               ID      `json:"client_id"`
	CommunityID            ID      `json:"community_id"`
	UnitID                 ID      `json:"unit_id"`
	LeaseID                *ID     `json:"lease_id"`
	UpdateType             string  `json:"update_type"`
	TenantPMSIdentifier    *string `json:"tenant_pms_identifier"`
	UnitPMSIdentifier      *string `json:"unit_pms_identifier"`
	CommunityPMSIdentifier *string `json:"community_pms_identifier"`
}

func (d *LeaseTransactionUpdated) summary() string {
	s := capitalize(transactionName(d.LeaseTransactionType, d.LeaseTransactionID)) + " updated"
	if d.UpdateType != "" {
		s += ": " + d.UpdateType
	}
	return s
}

// TransactionRef holds the ids the lease-transaction events share. The event
// types whose fields are NOT DOCUMENTED are read through it: whichever of
// these ids they carry must be integers and name the event's subject;
// nothing else is required of them.
type TransactionRef struct {
	LeaseTransactionID   ID     `json:"lease_transaction_id"`
	LeaseTransactionType string `json:"lease_transaction_type"`
	LeaseID              ID     `json:"lease_id"`
	ClientID             ID     `json:"client_id"`
	UnitID               ID     `json:"unit_id"`
	CommunityID          ID     `json:"community_id"`
}

// describe writes action plus the most specific id present, e.g. "Fees
// updated for Application 74824" or "Quote created for lease 31".
func (r TransactionRef) describe(action string) string {
	var name string
	switch {
	case r.LeaseTransactionID != "":
		name = transactionName(r.LeaseTransactionType, r.LeaseTransactionID)
	case r.LeaseID != "":
		name = "lease " + string(r.LeaseID)
	case r.ClientID != "":
		name = "client " + string(r.ClientID)
	case r.UnitID != "":
		name = "unit " + string(r.UnitID)
	case r.CommunityID != "":
		name = "community " + string(r.CommunityID)
	default:
		return action
	}
	return action + " for " + name
}

// transactionName names a lease transaction by its type and id
// ("Application 74824"), or generically when either is not known.
func transactionName(txType string, id ID) string {
	if txType == "" {
		txType = "lease transaction"
	}
	if id == "" {
		return txType
	}
	return txType + " " + string(id)
}

// TermsUpdated is the data of lease_transaction.terms_updated (fields NOT
// DOCUMENTED).
type TermsUpdated struct{ TransactionRef }

func (d *TermsUpdated) summary() string { return d.describe("Terms updated") }

// FeesUpdated is the data of lease_transaction.fees_updated (fields NOT
// DOCUMENTED).
type FeesUpdated struct{ TransactionRef }

func (d *FeesUpdated) summary() string { return d.describe("Fees updated") }

// RentableItemSelected is the data of
// lease_transaction.rentable_item_selected (fields NOT DOCUMENTED).
type RentableItemSelected struct{ TransactionRef }

func (d *RentableItemSelected) summary() string { return d.describe("Rentable item selected") }

// RentableItemDeselected is the data of
// lease_transaction.rentable_item_deselected (fields NOT DOCUMENTED).
type RentableItemDeselected struct{ TransactionRef }

func (d *RentableItemDeselected) summary() string { return d.describe("Rentable item deselected") }
