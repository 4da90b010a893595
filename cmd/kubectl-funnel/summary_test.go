package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

func TestWebhookURL(t *testing.T) {
	const path = "/webhooks/default/funnel"
	tests := []struct {
		base, path, want, wantErr string
	}{
		{base: "http://127.0.0.1:8080", path: path, want: "http://127.0.0.1:8080/webhooks/default/funnel"},
		{base: "http://127.0.0.1:8080/", path: path, want: "http://127.0.0.1:8080/webhooks/default/funnel"},
		{base: "https://funnel.example.com/hooks/x", path: path, want: "https://funnel.example.com/hooks/x"},
		{base: "https://funnel.example.com?probe=1", path: path, want: "https://funnel.example.com/webhooks/default/funnel?probe=1"},
		{base: "http://localhost:8080/webhooks/prod/leasing", path: "", want: "http://localhost:8080/webhooks/prod/leasing"},
		{base: "http://localhost:8080", path: "", wantErr: "has no path"},
		{base: "127.0.0.1:8080", path: path, wantErr: "e.g. http://127.0.0.1:8080"},
		{base: "localhost:8080", path: path, wantErr: "must be absolute"},
		{base: "ftp://example.com", path: path, wantErr: "must be absolute"},
		{base: "/webhooks/default/funnel", path: path, wantErr: "must be absolute"},
		{base: "http://[::1", path: path, wantErr: "invalid URL"},
	}
	for _, tt := range tests {
		got, err := webhookURL(tt.base, tt.path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("webhookURL(%q, %q) error = %v, want one containing %q", tt.base, tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("webhookURL(%q, %q) = %q, %v; want %q", tt.base, tt.path, got, err, tt.want)
		}
	}
}

func TestSummary(t *testing.T) {
	ack := func(d time.Duration) send.Result {
		return send.Result{Attempts: []send.Attempt{{Code: 200, Body: funnel.AckBody, Duration: d}}}
	}
	rep := send.NewReport()
	rep.Add(ack(10 * time.Millisecond))
	rep.Add(ack(30 * time.Millisecond))
	rep.Add(send.Result{Attempts: []send.Attempt{{Code: 429, Body: "rate limited", Duration: 20 * time.Millisecond}}})
	rep.Add(send.Result{Attempts: []send.Attempt{{Err: errors.New("connection refused"), Duration: time.Millisecond}}})
	var out strings.Builder
	if err := writeSummary(&out, rep, send.Stats{Started: 2, Elapsed: 2 * time.Second}, "http://x/webhooks/a/b", 2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Target:", "http://x/webhooks/a/b",
		"Sent:", "4 requests (2 events × 2 copies)",
		"Acknowledged:", "Not acknowledged:",
		"200×2  429×1",
		"Errors (no answer):",
		"1.0 events/s, 2.0 requests/s over 2s",
		"p50 20ms  p95 30ms  p99 30ms  max 30ms",
		"Failures:", "1×  429 Too Many Requests: rate limited", "1×  connection refused",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
