package harness

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SlowBody is a POST whose body stops after its first bytes: a client that holds one of
// the webhook receiver's slots without sending what it announced.
type SlowBody struct {
	conn  net.Conn
	start time.Time
}

// StartSlowBody sends to target (http://host:port/path) the head of a POST announcing a
// 1000-byte JSON body, with the extra header lines given ("Authorization: Bearer x"), and
// the first bytes of that body; the rest never comes.
func StartSlowBody(target string, header ...string) (*SlowBody, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("harness: slow body to %q: %w", target, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("harness: slow body to %s: %w", target, err)
	}
	b := &SlowBody{conn: conn, start: time.Now()}
	var extra strings.Builder
	for _, h := range header {
		extra.WriteString(h + "\r\n")
	}
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: 1000\r\n\r\n{\"event\":",
		u.RequestURI(), u.Host, extra.String()); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("harness: slow body to %s: %w", target, err)
	}
	return b, nil
}

// Answer waits up to 10 s for the answer and returns its status code (0 when the
// connection ended, or the wait did, without one) and when it came, from the start.
func (b *SlowBody) Answer() (int, time.Duration) {
	if err := b.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return 0, time.Since(b.start)
	}
	resp, err := http.ReadResponse(bufio.NewReader(b.conn), nil)
	if err != nil {
		return 0, time.Since(b.start)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, time.Since(b.start)
}

// Close ends the request.
func (b *SlowBody) Close() error { return b.conn.Close() }
