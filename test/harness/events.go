package harness

import (
	"math/rand/v2"

	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
)

// Events returns n realistic bodies, cycling through the documented event types in their
// natural envelopes; the same seed gives the same bodies (times aside).
func Events(seed uint64, n int) ([][]byte, error) {
	g := synth.New(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
	types := synth.Types()
	out := make([][]byte, 0, n)
	for i := range n {
		b, err := g.Event(types[i%len(types)], "")
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
