package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestStaleGuard(t *testing.T) {
	var g staleGuard
	now := time.Now()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	if g.stale(a, "1", now) {
		t.Fatal("nothing written, nothing stale")
	}
	g.wrote(a, "1", now) // the write replaced version 1
	if !g.stale(a, "1", now) || !g.stale(a, "1", now.Add(time.Second)) {
		t.Error("the replaced version must read as stale")
	}
	if g.stale(b, "1", now) {
		t.Error("another event is not stale")
	}
	if g.stale(a, "2", now) || g.stale(a, "1", now) {
		t.Error("once a newer version is seen, the write is forgotten")
	}
	g.wrote(a, "3", now)
	if g.stale(a, "3", now.Add(staleForget+time.Second)) {
		t.Error("a write older than staleForget is forgotten")
	}
	g.wrote(b, "1", now)
	g.wrote(a, "5", now.Add(2*staleForget)) // prunes b, unvisited since
	if len(g.written) != 1 {
		t.Errorf("%d writes remembered, want 1", len(g.written))
	}
}
