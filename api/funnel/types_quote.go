package funnel

// TypeQuoteCreated is sent when a leasing professional creates a quote
// (webhooks.md §2.1, fields NOT DOCUMENTED).
const TypeQuoteCreated = "quote.created"

// QuoteCreated is the data of quote.created. Its fields are not documented,
// so only the shared lease-transaction ids are read.
type QuoteCreated struct{ TransactionRef }

func (d *QuoteCreated) summary() string { return d.describe("Quote created") }
