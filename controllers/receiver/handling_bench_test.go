package receiver

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// BenchmarkHandling is the receiver's own work on one realistic event, apart from the
// API server: parse, identify, build, seal and encode the FunnelEvent (every documented
// type in turn). go test -run X -bench Handling -benchmem ./controllers/receiver/
func BenchmarkHandling(b *testing.B) {
	gen := synth.New(rand.New(rand.NewPCG(1, 2)))
	var bodies [][]byte
	for _, t := range synth.Types() {
		body, err := gen.Event(t, "")
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "funnel"}}
	sealer, err := NewSealer(make([]byte, MinSealKeyBytes), time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		env, err := funnel.Parse(bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		ev := NewEvent(rcv, env, funnel.Naming{Receiver: rcv.Name}.Identify(env, now), now)
		if err := sealer.Seal(ev); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}
