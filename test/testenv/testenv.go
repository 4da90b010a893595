// Package testenv starts the test control plane (kube-apiserver and etcd built from
// source by `make envtest-assets`) with the operator's CRDs installed, and holds what the
// envtest suites share: the scheme, a namespace per spec, kubectl.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/mod/modfile"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Root is the repository root, found from this file's location so tests work from any
// package directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is where the control plane binaries are: $KUBEBUILDER_ASSETS (set by the
// Makefile: the newest supported Kubernetes, or the oldest for the suites `make test` runs
// against both) or else the newest in the Makefile's cache directory, so plain `go test`
// works too.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("locating the cache directory: %w", err)
		}
		version, err := newestK8sVersion()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(cache, "funnel-operator", "k8s", version)
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make envtest-assets` first", bin, dir)
		}
	}
	return dir, nil
}

// newestK8sVersion is the Kubernetes release `make envtest-assets` builds as the newest,
// without the "v": the k8s.io/kubernetes that hack/envtest/kubernetes requires (one place
// to change on an upgrade).
func newestK8sVersion() (string, error) {
	path := filepath.Join(Root(), "hack", "envtest", "kubernetes", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the control plane's version: %w", err)
	}
	f, err := modfile.ParseLax(path, data, nil)
	if err != nil {
		return "", fmt.Errorf("reading the control plane's version: %w", err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == "k8s.io/kubernetes" {
			return strings.TrimPrefix(r.Mod.Version, "v"), nil
		}
	}
	return "", fmt.Errorf("%s requires no k8s.io/kubernetes", path)
}

// Scheme knows the built-in kinds and ours.
func Scheme() *kruntime.Scheme {
	s := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(funnelv1.AddToScheme(s))
	return s
}

// Start starts a control plane with the CRDs from config/crd/bases installed, and
// returns it with a direct (uncached) admin client, the way specs should act and observe.
// env.Stop stops it and removes its files.
func Start() (*envtest.Environment, *rest.Config, client.Client, error) {
	cp, err := StartControlPlane(ControlPlaneOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	return cp.env, cp.Config, cp.Client, nil
}

// NewNamespace creates a uniquely named namespace, so each test has its own.
func NewNamespace(ctx context.Context, c client.Client, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating a namespace: %w", err)
	}
	return ns.Name, nil
}

// ServiceAccount creates ServiceAccount name in ns and, with rules, a Role of them bound
// to it (both named after it): the account a subscription acts as, or a tenant.
func ServiceAccount(ctx context.Context, c client.Client, ns, name string, rules ...rbacv1.PolicyRule) error {
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		return fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, name, err)
	}
	if len(rules) == 0 {
		return nil
	}
	return Bind(ctx, c, ns, name, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}, rules...)
}

// Bind creates a Role named name in ns with rules, bound to subject by a RoleBinding of
// the same name.
func Bind(ctx context.Context, c client.Client, ns, name string, subject rbacv1.Subject, rules ...rbacv1.PolicyRule) error {
	if err := c.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}); err != nil {
		return fmt.Errorf("creating Role %s/%s: %w", ns, name, err)
	}
	if err := c.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{subject}}); err != nil {
		return fmt.Errorf("creating RoleBinding %s/%s: %w", ns, name, err)
	}
	return nil
}

// Kubectl runs the kubectl built with the control plane against env and returns its
// combined output: tests see exactly what a user would.
func Kubectl(env *envtest.Environment, args ...string) (string, error) {
	assets, err := AssetsDir()
	if err != nil {
		return "", err
	}
	kubeconfig, err := os.CreateTemp("", "kubeconfig-*")
	if err != nil {
		return "", fmt.Errorf("writing a kubeconfig: %w", err)
	}
	defer func() { _ = os.Remove(kubeconfig.Name()) }()
	if _, err := kubeconfig.Write(env.KubeConfig); err != nil {
		return "", fmt.Errorf("writing a kubeconfig: %w", err)
	}
	if err := kubeconfig.Close(); err != nil {
		return "", fmt.Errorf("writing a kubeconfig: %w", err)
	}
	// KUBECONFIG rather than --kubeconfig: kubectl refuses flags before a plugin's name.
	cmd := exec.Command(filepath.Join(assets, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
