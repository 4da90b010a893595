// Package statuspatch writes the status of the operator's objects the one way every
// controller does: one merge patch of the status subresource, and none when nothing
// changed.
package statuspatch

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Apply applies change to obj and, when that changed anything, writes it with one merge
// patch of the status subresource. It reports whether it wrote. With
// client.MergeFromWithOptimisticLock{} the patch carries obj's resourceVersion, so that a
// write made since obj was read fails with a conflict instead of being overwritten.
func Apply[T client.Object](ctx context.Context, c client.StatusClient, obj T, change func(T), opts ...client.MergeFromOption) (bool, error) {
	base := obj.DeepCopyObject().(client.Object)
	change(obj)
	return Patch(ctx, c, base, obj, opts...)
}

// ApplyLatest reads obj again, applies change and writes it as Apply does with the lock,
// reading again after a conflict: for status that another writer shares, such as the
// conditions list, which a merge patch replaces whole. change may stop it with an error,
// which is returned as is, as are the reader's (NotFound when obj is gone).
func ApplyLatest[T client.Object](ctx context.Context, c client.Client, obj T, change func(T) error) (bool, error) {
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		base := obj.DeepCopyObject().(client.Object)
		if err := change(obj); err != nil {
			return err
		}
		var err error
		wrote, err = Patch(ctx, c, base, obj, client.MergeFromWithOptimisticLock{})
		return err
	})
	return wrote, err
}

// Patch writes what changed in obj since base (a copy taken when obj was read) with one
// merge patch of the status subresource, and nothing when nothing changed; it reports
// whether it wrote. For callers whose pass changes obj before deciding what to record
// (the event controllers); the others use Apply.
//
// The patch is computed once: the comparison is a deep equality of the statuses first
// (cheap, and many passes of a busy controller change nothing), then the JSON diff,
// which is also the body sent. With client.MergeFromWithOptimisticLock{} the body carries base's
// resourceVersion, as that option does with controller-runtime's patch.
func Patch(ctx context.Context, c client.StatusClient, base, obj client.Object, opts ...client.MergeFromOption) (bool, error) {
	if equality.Semantic.DeepEqual(status(base), status(obj)) {
		return false, nil
	}
	data, err := client.MergeFrom(base).Data(obj)
	if err != nil {
		return false, fmt.Errorf("computing the status patch of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	if string(data) == "{}" {
		return false, nil // equal as stored (e.g. times that differ below a second)
	}
	var o client.MergeFromOptions
	for _, opt := range opts {
		opt.ApplyToMergeFrom(&o)
	}
	if o.OptimisticLock {
		if data, err = withResourceVersion(data, base.GetResourceVersion()); err != nil {
			return false, fmt.Errorf("locking the status patch of %s: %w", client.ObjectKeyFromObject(obj), err)
		}
	}
	if err := c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, data)); err != nil {
		return false, err
	}
	return true, nil
}

// withResourceVersion adds metadata.resourceVersion to a merge patch: the API server
// then refuses it with a conflict if the object changed since that version.
func withResourceVersion(data []byte, rv string) ([]byte, error) {
	if rv == "" {
		return nil, fmt.Errorf("no resourceVersion to lock on")
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(data, &patch); err != nil {
		return nil, fmt.Errorf("decoding the patch: %w", err)
	}
	var md map[string]json.RawMessage
	if raw, ok := patch["metadata"]; ok {
		if err := json.Unmarshal(raw, &md); err != nil {
			return nil, fmt.Errorf("decoding the patch's metadata: %w", err)
		}
	}
	if md == nil {
		md = map[string]json.RawMessage{}
	}
	var err error
	if md["resourceVersion"], err = json.Marshal(rv); err != nil {
		return nil, err
	}
	if patch["metadata"], err = json.Marshal(md); err != nil {
		return nil, err
	}
	return json.Marshal(patch)
}

// status is obj's Status field, what a write of the status subresource can change (the
// API server ignores the rest); obj itself if it has none.
func status(obj client.Object) any {
	v := reflect.Indirect(reflect.ValueOf(obj))
	if f := v.FieldByName("Status"); f.IsValid() {
		return f.Interface()
	}
	return obj
}
