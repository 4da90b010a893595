package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
)

// Seal gives ev the seal the receiver would, with the key of the operator that keeps
// it in keyNamespace (the default Secret name): for specs that create FunnelEvents
// directly and want them processed as received. The operator must have started (it
// creates the key).
func Seal(ctx context.Context, c client.Reader, keyNamespace string, ev *funnelv1.FunnelEvent) error {
	ref := types.NamespacedName{Namespace: keyNamespace, Name: receiver.DefaultSealKeySecret}
	var s corev1.Secret
	if err := c.Get(ctx, ref, &s); err != nil {
		return fmt.Errorf("testenv: reading the seal key: %w", err)
	}
	r, err := receiver.NewSealer(s.Data[receiver.SealKeyField], s.CreationTimestamp.Time)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return r.Seal(ev)
}
