// Package sendtest is a stand-in for the operator's webhook receiver, for the tests of
// code that sends events.
package sendtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
)

// Request is one request the receiver got.
type Request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Receiver records every request and answers with its answer function, or 200,
// funnel.AckBody and the event's name (as the operator's receiver does) without one. The request body is read before the answer function runs.
type Receiver struct {
	*httptest.Server
	answer   func(http.ResponseWriter, *http.Request)
	mu       sync.Mutex
	requests []Request
}

// NewReceiver starts a receiver on loopback, closed when t ends.
func NewReceiver(t testing.TB, answer func(w http.ResponseWriter, r *http.Request)) *Receiver {
	t.Helper()
	rec := &Receiver{answer: answer}
	rec.Server = httptest.NewServer(http.HandlerFunc(rec.serve))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.requests = append(rec.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	rec.mu.Unlock()
	if rec.answer != nil {
		rec.answer(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	if name, err := funnel.EventName(path.Base(r.URL.Path), body, time.Now()); err == nil {
		w.Header().Set(funnel.EventNameHeader, name) // as the receiver does
	}
	_, _ = io.WriteString(w, funnel.AckBody)
}

// Requests returns the requests received so far, in order.
func (rec *Receiver) Requests() []Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Request(nil), rec.requests...)
}
