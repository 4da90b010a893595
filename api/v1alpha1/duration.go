package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Duration is a length of time in a spec, written the way Go writes one, without days:
// decimal numbers with the units ms, s, m and h ("500ms", "1m30s", "720h"). The format is
// declared here once for every such field; a field adds its own bounds. It is a
// metav1.Duration (same JSON), named so that the schema markers can sit on the type.
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
type Duration struct {
	metav1.Duration
}

// NewDuration returns d as the value of a Duration field.
func NewDuration(d time.Duration) *Duration {
	return &Duration{Duration: metav1.Duration{Duration: d}}
}

// Or is the duration, or def when the field is unset.
func (d *Duration) Or(def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration.Duration
}
