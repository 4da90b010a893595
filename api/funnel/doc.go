// Package funnel reads Funnel Leasing's webhook wire formats: the three
// envelopes (Classic, V3, Partner v2), the data of each documented event type,
// and the identity, digest and labels the operator derives from them.
//
// It is pure Go with no Kubernetes client so that everything the receiver and
// the reconcilers decide about a payload can be table-tested and fuzzed.
// Funnel's public documentation is incomplete and inconsistent (what it says
// and where it disagrees: docs/architecture.md, What Funnel sends), so the
// package is strict about the envelope, which names and deduplicates an
// event, and tolerant about the data: unknown event types and unknown fields
// are always accepted.
package funnel
