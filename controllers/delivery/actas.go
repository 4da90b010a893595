package delivery

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// fromWatchCache reads from the API server's watch cache rather than etcd.
func fromWatchCache() client.GetOption {
	return &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}}
}

// secretReader reads the Secrets of a subscription's actions as its ServiceAccount;
// without one, every read fails with the reason (never with the operator's identity).
func (r *Router) secretReader(sub *funnelv1.FunnelSubscription) client.Reader {
	c, err := r.Identity.For(sub)
	if err != nil {
		return refusingReader{err}
	}
	return c
}

// refusingReader fails every read with err.
type refusingReader struct{ err error }

func (r refusingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return r.err
}

func (r refusingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return r.err
}
