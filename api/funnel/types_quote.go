package funnel

// TypeQuoteCreated is sent when a leasing professional creates a quote (the
// Events List gives no field table).
const TypeQuoteCreated = "quote.created"

// QuoteCreated is the data of quote.created. Its fields are not documented,
// so only the shared lease-transaction ids are read.
type QuoteCreated struct{ TransactionRef }

func (d *QuoteCreated) summary() string { return d.describe("Quote created") }
