package testenv

import (
	"context"
	"fmt"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// OperatorToken applies config/rbac (into namespace funnel-system, created when missing)
// and returns an hour-long token of the operator's ServiceAccount, funnel-operator: a
// client with it may do exactly what config/rbac grants — a token, not impersonation by
// the admin, because the operator impersonates its subscriptions' accounts itself.
func OperatorToken(ctx context.Context, env *envtest.Environment) (string, error) {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "funnel-system"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("testenv: creating namespace funnel-system: %w", err)
	}
	if out, err := Kubectl(env, "apply", "-k", filepath.Join(Root(), "config", "rbac")); err != nil {
		return "", fmt.Errorf("testenv: applying config/rbac: %w: %s", err, out)
	}
	tr, err := cs.CoreV1().ServiceAccounts("funnel-system").CreateToken(ctx, "funnel-operator",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("testenv: requesting a token of funnel-system/funnel-operator: %w", err)
	}
	return tr.Status.Token, nil
}
