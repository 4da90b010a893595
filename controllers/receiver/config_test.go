package receiver

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

func TestResolveReadiness(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tok"}, Data: map[string][]byte{"token": []byte("t")}}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(secret).Build()
	token := funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{SecretRef: funnelv1.SecretKeyRef{Name: "tok", Key: "token"}}}
	insecure := funnelv1.ReceiverAuth{InsecureSkipAuth: true}

	for _, tc := range []struct {
		name   string
		auth   funnelv1.ReceiverAuth
		policy Policy
		want   string
	}{
		{"no authentication", funnelv1.ReceiverAuth{}, Policy{AllowInsecure: true}, funnelv1.ReasonNoAuth},
		{"insecureSkipAuth without the operator's consent", insecure, Policy{}, funnelv1.ReasonInsecureNotAllowed},
		{"insecureSkipAuth with --allow-insecure-receivers", insecure, Policy{AllowInsecure: true}, funnelv1.ReasonAccepting},
		{"a token needs no consent", token, Policy{}, funnelv1.ReasonAccepting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "funnel"},
				Spec: funnelv1.FunnelReceiverSpec{Auth: tc.auth}}
			cfg, err := Resolve(context.Background(), reader, rcv, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Ready.Reason != tc.want {
				t.Errorf("Ready reason = %s (%s), want %s", cfg.Ready.Reason, cfg.Ready.Message, tc.want)
			}
		})
	}
}
