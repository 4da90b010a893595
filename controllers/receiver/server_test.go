package receiver

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestWebhookKey(t *testing.T) {
	want := types.NamespacedName{Namespace: "ns", Name: "funnel"}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/webhooks/ns/funnel", true},
		{"//webhooks/ns/funnel", true},
		{"/webhooks//ns/funnel", true},
		{"/webhooks/ns//funnel", true},
		{"/webhooks/ns/funnel/", true},
		{"///webhooks///ns///funnel///", true},
		{"webhooks/ns/funnel", true},
		{"/webhooks/ns", false},
		{"/webhooks/ns/funnel/extra", false},
		{"/webhooks/./ns/funnel", false},
		{"/webhooks/ns/../funnel", false},
		{"/Webhooks/ns/funnel", false},
		{"/hooks/ns/funnel", false},
		{"/", false},
		{"", false},
		{"*", false},
	} {
		got, ok := webhookKey(tc.path)
		if ok != tc.ok || ok && got != want {
			t.Errorf("webhookKey(%q) = %v, %v; want ok=%v", tc.path, got, ok, tc.ok)
		}
	}
}
