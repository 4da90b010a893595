package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// watchSecretsOf makes a controller wake the objects that reference a Secret when the
// Secret changes: it indexes obj's kind by the Secret names refs returns, and maps each
// Secret event through the index. Receivers and subscriptions both use it.
func watchSecretsOf(ctx context.Context, mgr ctrl.Manager, b *builder.Builder, obj client.Object, newList func() client.ObjectList,
	refs func(client.Object) []string) (*builder.Builder, error) {
	index := fmt.Sprintf("%T.secretNames", obj)
	if err := mgr.GetFieldIndexer().IndexField(ctx, obj, index, func(o client.Object) []string {
		names := slices.Clone(refs(o))
		slices.Sort(names)
		return slices.Compact(names)
	}); err != nil {
		return nil, fmt.Errorf("indexing %T by Secret: %w", obj, err)
	}
	c := mgr.GetClient()
	return b.Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, secret client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(secret.GetNamespace()), client.MatchingFields{index: secret.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing objects that reference a Secret", "secret", client.ObjectKeyFromObject(secret))
			return nil
		}
		var reqs []reconcile.Request
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			if m, err := meta.Accessor(o); err == nil {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}})
			}
			return nil
		})
		return reqs
	})), nil
}
