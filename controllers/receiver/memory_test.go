package receiver

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// maxHeldPerBodyByte bounds what handling a body allocates, as a multiple of its size:
// reading it, parsing, the digest, the labels, the object and its JSON encoding for the
// API server. Allocated is an upper bound of what is held at once.
const maxHeldPerBodyByte = 5

// bodyOf wraps data into a Partner v2 envelope of about size bytes, repeating item.
func bodyOf(size int, item func(i int) string) []byte {
	var b strings.Builder
	b.WriteString(`{"event":"renter.created","data":{"funnel_renter_id":1,"x":[`)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item(i))
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}

// TestHandlingHoldsAFewTimesTheBody: a 1 MiB body of any shape costs the receiver at
// most a few MiB, whatever its shape (it used to hold about 19 MiB while parsed).
func TestHandlingHoldsAFewTimesTheBody(t *testing.T) {
	const size = 1 << 20
	shapes := map[string][]byte{
		"tiny numbers":      bodyOf(size, func(int) string { return "1" }),
		"tiny objects":      bodyOf(size, func(int) string { return `{"a":1}` }),
		"many keys":         []byte(`{"event":"renter.created","data":{` + strings.TrimSuffix(strings.Repeat(`"k":0,`, size/6), ",") + `}}`),
		"distinct keys":     bodyOf(size, func(i int) string { return fmt.Sprintf(`{"k%d":%d}`, i, i) }),
		"escaped strings":   bodyOf(size, func(int) string { return `"\u00e9\n"` }),
		"one long string":   []byte(`{"event":"renter.created","data":{"s":"` + strings.Repeat("x", size) + `"}}`),
		"deep nesting":      bodyOf(size, func(int) string { return strings.Repeat(`[`, 60) + strings.Repeat(`]`, 60) }),
		"big numbers":       bodyOf(size, func(int) string { return "123456789012345678901234567890.5e-3" }),
		"long idempotency":  []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":"` + strings.Repeat("k", size-100) + `","event_data":{}}`),
		"top-level members": []byte(`{"event":"x","data":{},` + strings.TrimSuffix(strings.Repeat(`"e":[],`, size/7), ",") + `}`),
	}
	rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "funnel"}}
	sealer := testSealer(t, time.Time{})
	for name, body := range shapes {
		t.Run(name, func(t *testing.T) {
			handle := func() {
				env, err := funnel.Parse(body)
				if err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				ev := NewEvent(rcv, env, funnel.Naming{Receiver: rcv.Name}.Identify(env, now), now)
				if err := sealer.Seal(ev); err != nil {
					t.Fatal(err)
				}
				if _, err := json.Marshal(ev); err != nil { // what the client sends the API server
					t.Fatal(err)
				}
			}
			handle() // warm up lazily initialised state
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			handle()
			runtime.ReadMemStats(&after)
			perByte := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(body))
			t.Logf("%d bytes: %.1f bytes allocated per body byte", len(body), perByte)
			if perByte > maxHeldPerBodyByte*raceAllocFactor {
				t.Errorf("handling allocates %.1f× the body, want at most %d×", perByte, maxHeldPerBodyByte*raceAllocFactor)
			}
		})
	}
}
