// Package send posts webhook events to a funnel-operator receiver the way Funnel does:
// POST, application/json, one event per request, the receiver's token and HMAC signature,
// a 5 s deadline per request, and (as an option) Funnel's retries. An event counts as
// acknowledged only when the answer is 200 with exactly funnel.AckBody, Funnel's own
// criterion; anything else is a failure it would retry.
//
// It is the one sender of the project: `kubectl funnel send`, the test harness and the
// benchmark all use it. Run drives load runs (closed loops of a given concurrency, or
// open loops at a fixed arrival rate) and Report sums up their outcomes. Pure Go, no
// Kubernetes client.
package send
