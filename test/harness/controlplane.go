package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// Dir holds the etcd data, the API server's certificates, the audit log and the admin
	// kubeconfig. Required; the caller removes it.
	Dir string
	// CRDDirs are installed at start; config/crd/bases when empty.
	CRDDirs []string
	// AuditPolicy, when set, is written to Dir/audit-policy.yaml and the API server logs
	// to AuditLog (JSON lines).
	AuditPolicy string
	// APIServerFlags are extra kube-apiserver flags (name without dashes → value), e.g.
	// {"enable-admission-plugins": "OwnerReferencesPermissionEnforcement"}.
	APIServerFlags map[string]string
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// Config is an admin configuration without client-side rate limits.
	Config *rest.Config
	// Client is an uncached admin client on Config.
	Client client.Client
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// AuditLog is the audit log's path ("" without AuditPolicy).
	AuditLog string
	// Host is the API server's https://host:port, the same across restarts.
	Host string

	dir string
	env *envtest.Environment
}

// StartControlPlane starts etcd and kube-apiserver on loopback and installs the CRDs.
func StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	if opts.Dir == "" {
		return nil, errors.New("harness: ControlPlaneOptions.Dir is required")
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return nil, err
	}
	crds := opts.CRDDirs
	if len(crds) == 0 {
		crds = []string{filepath.Join(testenv.Root(), "config", "crd", "bases")}
	}
	certDir, etcdDir := filepath.Join(opts.Dir, "apiserver"), filepath.Join(opts.Dir, "etcd")
	for _, d := range []string{certDir, etcdDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// A fixed port: a restarted API server must come back where its clients look for it.
	addrs, err := FreeAddrs(1)
	if err != nil {
		return nil, fmt.Errorf("harness: finding a free port for the API server: %w", err)
	}
	api := &envtest.APIServer{CertDir: certDir}
	api.SecureServing.Address, api.SecureServing.Port, _ = net.SplitHostPort(addrs[0])
	args := api.Configure()
	cp := &ControlPlane{dir: opts.Dir, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
	if opts.AuditPolicy != "" {
		policy := filepath.Join(opts.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(opts.AuditPolicy), 0o600); err != nil {
			return nil, err
		}
		cp.AuditLog = filepath.Join(opts.Dir, "audit.log")
		args.Set("audit-policy-file", policy)
		args.Set("audit-log-path", cp.AuditLog)
		args.Set("audit-log-format", "json")
		// Written as requests finish, so a test can read what it just did.
		args.Set("audit-log-mode", "blocking")
	}
	for k, v := range opts.APIServerFlags {
		args.Set(k, v)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:   assets,
		CRDDirectoryPaths:       crds,
		ErrorIfCRDPathMissing:   true,
		Scheme:                  testenv.Scheme(),
		ControlPlaneStopTimeout: 30 * time.Second,
	}
	env.ControlPlane.APIServer = api
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: etcdDir}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("harness: starting the control plane: %w", err)
	}
	cp.env = env
	cp.Config = rest.CopyConfig(cfg)
	cp.Config.QPS, cp.Config.Burst = -1, 0
	cp.Host = cfg.Host
	if cp.Client, err = client.New(cp.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("harness: creating the admin client: %w", err)
	}
	if err := os.WriteFile(cp.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cp, nil
}

// Env is the underlying envtest environment (for testenv.Kubectl and the like).
func (cp *ControlPlane) Env() *envtest.Environment { return cp.env }

// StopAPIServer kills kube-apiserver (SIGKILL: a crash, and no graceful drain that could
// take longer than the outage a test wants) and waits until it is gone; etcd keeps running.
func (cp *ControlPlane) StopAPIServer() error {
	certDir := cp.env.ControlPlane.APIServer.CertDir
	pid, err := findProcess(func(args []string) bool {
		return filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, "--cert-dir="+certDir)
	})
	if err != nil {
		return fmt.Errorf("harness: finding kube-apiserver: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("harness: killing kube-apiserver: %w", err)
	}
	// Gone once envtest has reaped it; then its Stop only resets its state.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: kube-apiserver (pid %d) still there 30 s after SIGKILL", pid)
		}
	}
	if err := cp.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("harness: stopping kube-apiserver: %w", err)
	}
	return nil
}

// findProcess returns the pid of the one process whose command line matches.
func findProcess(match func(args []string) bool) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	found := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			if found != 0 {
				return 0, errors.New("more than one process matches")
			}
			found = pid
		}
	}
	if found == 0 {
		return 0, errors.New("no such process")
	}
	return found, nil
}

// StartAPIServer starts kube-apiserver again on the same address with the same
// certificates and waits until it is healthy.
func (cp *ControlPlane) StartAPIServer() error {
	if err := cp.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("harness: starting kube-apiserver again: %w", err)
	}
	return nil
}

// Stop stops the API server and etcd.
func (cp *ControlPlane) Stop() error { return cp.env.Stop() }

// WriteTokenKubeconfig writes a kubeconfig for the API server that authenticates with a
// bearer token (e.g. a ServiceAccount's, from the TokenRequest API).
func (cp *ControlPlane) WriteTokenKubeconfig(path, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}

// WaitHealthy polls the API server's /readyz until it answers 200 or ctx ends.
func (cp *ControlPlane) WaitHealthy(ctx context.Context) error {
	hc, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		return err
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.Host+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: the API server is not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreeAddrs returns n distinct 127.0.0.1:port addresses free right now.
func FreeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}
