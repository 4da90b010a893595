package v1alpha1_test

import (
	"encoding/json"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// TestDurationIsAString: a Duration field reads and writes the string users put in
// their manifests, through encoding/json and the unstructured converter (server-side
// apply, kubectl's diff) alike.
func TestDurationIsAString(t *testing.T) {
	p := funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(90 * time.Second)}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"backoffDelay":"1m30s"}`; string(b) != want {
		t.Fatalf("json %s, want %s", b, want)
	}
	var back funnelv1.DeliveryPolicy
	if err := json.Unmarshal([]byte(`{"backoffDelay":"1.5h","maxBackoff":"500ms"}`), &back); err != nil {
		t.Fatal(err)
	}
	if back.BackoffDelay.Or(0) != 90*time.Minute || back.MaxBackoff.Or(0) != 500*time.Millisecond {
		t.Fatalf("read %v and %v", back.BackoffDelay, back.MaxBackoff)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&p)
	if err != nil {
		t.Fatal(err)
	}
	if u["backoffDelay"] != "1m30s" {
		t.Fatalf("unstructured %v", u)
	}
	var fromU funnelv1.DeliveryPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"backoffDelay": "2s"}, &fromU); err != nil {
		t.Fatal(err)
	}
	if fromU.BackoffDelay.Or(0) != 2*time.Second {
		t.Fatalf("from unstructured %v", fromU.BackoffDelay)
	}
}

func TestDurationOr(t *testing.T) {
	tests := []struct {
		d    *funnelv1.Duration
		want time.Duration
	}{
		{nil, time.Minute},
		{funnelv1.NewDuration(0), 0},
		{funnelv1.NewDuration(3 * time.Second), 3 * time.Second},
	}
	for _, tt := range tests {
		if got := tt.d.Or(time.Minute); got != tt.want {
			t.Errorf("%v.Or(1m) = %v, want %v", tt.d, got, tt.want)
		}
	}
}
