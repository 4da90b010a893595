// Package statuspatch writes the status of the operator's objects the one way every
// controller does: one merge patch of the status subresource, and none when nothing
// changed.
package statuspatch

import (
	"context"
	"fmt"

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
	return write(ctx, c, base, obj, opts)
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
		wrote, err = write(ctx, c, base, obj, []client.MergeFromOption{client.MergeFromWithOptimisticLock{}})
		return err
	})
	return wrote, err
}

// write patches obj's status from base unless the patch would be empty.
func write(ctx context.Context, c client.StatusClient, base, obj client.Object, opts []client.MergeFromOption) (bool, error) {
	diff, err := client.MergeFrom(base).Data(obj)
	if err != nil {
		return false, fmt.Errorf("computing the status patch of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	if string(diff) == "{}" {
		return false, nil
	}
	if err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, opts...)); err != nil {
		return false, err
	}
	return true, nil
}
