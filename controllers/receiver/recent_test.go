package receiver

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestRecentNamesForgetsTheOldestWhenFull(t *testing.T) {
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }
	r := newRecentNames(3)
	for _, n := range []string{"a", "b", "c", "b", "d"} {
		r.add(key(n))
	}
	for name, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true, "e": false} {
		if got := r.has(key(name)); got != want {
			t.Errorf("has(%s) = %v, want %v", name, got, want)
		}
	}
	if len(r.set) != 3 {
		t.Errorf("%d names kept, want 3", len(r.set))
	}
	if r.has(types.NamespacedName{Namespace: "other", Name: "b"}) {
		t.Error("a name in another namespace counts as recent")
	}
}
