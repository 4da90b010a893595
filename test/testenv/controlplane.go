package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// Dir, when set, holds etcd's data (kept: a later start on the same Dir finds it), the
	// API server's certificates (new at every start) and an admin kubeconfig; the caller
	// removes it. Empty: temporary directories that Stop removes, and no kubeconfig file.
	Dir string
	// CRDDirs are installed at start; config/crd/bases when empty.
	CRDDirs []string
	// APIServerFlags are extra kube-apiserver flags (name without dashes → value), e.g.
	// {"enable-admission-plugins": "OwnerReferencesPermissionEnforcement"}.
	APIServerFlags map[string]string
}

// ControlPlane is a running etcd and kube-apiserver on loopback.
type ControlPlane struct {
	// Config is an admin configuration without client-side rate limits.
	Config *rest.Config
	// Client is an uncached admin client on Config.
	Client client.Client
	// Kubeconfig is the path of an admin kubeconfig ("" without Dir).
	Kubeconfig string
	// Host is the API server's https://host:port; the same when the API server is
	// restarted (envtest keeps the port it picked).
	Host string

	env *envtest.Environment
}

// StartControlPlane starts etcd and kube-apiserver (the binaries in AssetsDir) and
// installs the CRDs. It is the project's one way to start a control plane: the envtest
// suites (Start), test/harness, `make run` and `make bench` all come through here.
func StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	crds := opts.CRDDirs
	if len(crds) == 0 {
		crds = []string{filepath.Join(Root(), "config", "crd", "bases")}
	}
	api := &envtest.APIServer{}
	etcd := &envtest.Etcd{}
	cp := &ControlPlane{}
	if opts.Dir != "" {
		api.CertDir, etcd.DataDir = filepath.Join(opts.Dir, "apiserver"), filepath.Join(opts.Dir, "etcd")
		// Certificates left by an earlier run would not match the CA envtest makes now.
		if err := os.RemoveAll(api.CertDir); err != nil {
			return nil, fmt.Errorf("testenv: removing old certificates: %w", err)
		}
		for _, d := range []string{api.CertDir, etcd.DataDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("testenv: %w", err)
			}
		}
		cp.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	}
	args := api.Configure()
	for k, v := range opts.APIServerFlags {
		args.Set(k, v)
	}
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory:   assets,
		CRDDirectoryPaths:       crds,
		ErrorIfCRDPathMissing:   true,
		Scheme:                  Scheme(),
		ControlPlaneStopTimeout: 30 * time.Second,
		// envtest's 20 s is too short when several test runs share two cores.
		ControlPlaneStartTimeout: 90 * time.Second,
	}
	cp.env.ControlPlane.APIServer, cp.env.ControlPlane.Etcd = api, etcd
	cfg, err := cp.env.Start()
	if err != nil {
		_ = cp.env.Stop()
		return nil, fmt.Errorf("testenv: starting the control plane: %w", err)
	}
	cp.Config = rest.CopyConfig(cfg)
	cp.Config.QPS, cp.Config.Burst = -1, 0
	cp.Host = cfg.Host
	if cp.Client, err = client.New(cp.Config, client.Options{Scheme: cp.env.Scheme}); err != nil {
		_ = cp.env.Stop()
		return nil, fmt.Errorf("testenv: creating the admin client: %w", err)
	}
	if cp.Kubeconfig != "" {
		if err := os.WriteFile(cp.Kubeconfig, cp.env.KubeConfig, 0o600); err != nil {
			_ = cp.env.Stop()
			return nil, fmt.Errorf("testenv: %w", err)
		}
	}
	return cp, nil
}

// Env is the underlying envtest environment (for Kubectl, and to restart the API server).
func (cp *ControlPlane) Env() *envtest.Environment { return cp.env }

// Stop stops the API server and etcd.
func (cp *ControlPlane) Stop() error { return cp.env.Stop() }
