package harness

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SinkRequest is one request the sink received.
type SinkRequest struct {
	// Path is the request's URL path (give each subscription its own).
	Path string
	// Key is the Idempotency-Key header.
	Key string
	// Event is X-Funnel-Event-Name; Attempt X-Funnel-Delivery-Attempt.
	Event, Attempt string
	Header         http.Header
	Body           []byte
	Time           time.Time
	// Code is what the sink answered.
	Code int
}

// Sink is an HTTP target for FunnelSubscription actions on loopback. It answers 200
// unless told otherwise (SetCode), or not at all while held (Hold), and records every
// request.
type Sink struct {
	// URL is http://<address>:port (http://127.0.0.1:port from NewSink).
	URL string

	srv  *http.Server
	code atomic.Int32

	holdMu sync.Mutex
	// hold, while not nil, is what held requests wait for.
	hold chan struct{}
	held atomic.Int32

	mu       sync.Mutex
	requests []SinkRequest
}

// NewSink starts a sink on a free loopback port.
func NewSink() (*Sink, error) { return NewSinkOn("127.0.0.1:0") }

// NewSinkOn starts a sink listening on addr (host:port; port 0 picks a free one).
func NewSinkOn(addr string) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{URL: "http://" + ln.Addr().String()}
	s.code.Store(http.StatusOK)
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *Sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	code := int(s.code.Load())
	s.mu.Lock()
	s.requests = append(s.requests, SinkRequest{
		Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Event: r.Header.Get("X-Funnel-Event-Name"),
		Attempt: r.Header.Get("X-Funnel-Delivery-Attempt"), Header: r.Header.Clone(), Body: body,
		Time: time.Now(), Code: code,
	})
	s.mu.Unlock()
	s.holdMu.Lock()
	hold := s.hold
	s.holdMu.Unlock()
	if hold != nil {
		s.held.Add(1)
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		s.held.Add(-1)
	}
	w.WriteHeader(code)
}

// Hold makes the sink a target that hangs: the next requests are recorded, then wait for
// Release (or for their client to give up) before they are answered.
func (s *Sink) Hold() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
}

// Release answers the held requests and ends Hold.
func (s *Sink) Release() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// Held counts the requests waiting for Release.
func (s *Sink) Held() int { return int(s.held.Load()) }

// SetCode sets the status code of the next answers (200 by default).
func (s *Sink) SetCode(code int) { s.code.Store(int32(code)) }

// Requests returns a copy of what was received so far, in arrival order.
func (s *Sink) Requests() []SinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkRequest(nil), s.requests...)
}

// Len is the number of requests received so far.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// ByKey counts the requests per Idempotency-Key.
func (s *Sink) ByKey() map[string]int {
	out := map[string]int{}
	for _, r := range s.Requests() {
		out[r.Key]++
	}
	return out
}

// Close stops the sink.
func (s *Sink) Close() error {
	s.Release()
	return s.srv.Close()
}
