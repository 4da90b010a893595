package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// Dir holds the etcd data, the API server's certificates, the audit log and the admin
	// kubeconfig. Required (restarting the API server needs its certificates); the caller
	// removes it.
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

// ControlPlane is a running etcd and kube-apiserver (testenv.ControlPlane: Config, Client,
// Kubeconfig, Host, Env, Stop) that tests can audit and take down.
type ControlPlane struct {
	*testenv.ControlPlane
	// AuditLog is the audit log's path ("" without AuditPolicy).
	AuditLog string
}

// StartControlPlane starts etcd and kube-apiserver on loopback (testenv.StartControlPlane)
// and installs the CRDs.
func StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	if opts.Dir == "" {
		return nil, errors.New("harness: ControlPlaneOptions.Dir is required")
	}
	flags := maps.Clone(opts.APIServerFlags)
	if flags == nil {
		flags = map[string]string{}
	}
	auditLog := ""
	if opts.AuditPolicy != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, err
		}
		policy := filepath.Join(opts.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(opts.AuditPolicy), 0o600); err != nil {
			return nil, err
		}
		auditLog = filepath.Join(opts.Dir, "audit.log")
		flags["audit-policy-file"] = policy
		flags["audit-log-path"] = auditLog
		flags["audit-log-format"] = "json"
		// Written as requests finish, so a test can read what it just did.
		flags["audit-log-mode"] = "blocking"
	}
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{Dir: opts.Dir, CRDDirs: opts.CRDDirs, APIServerFlags: flags})
	if err != nil {
		return nil, err
	}
	return &ControlPlane{ControlPlane: cp, AuditLog: auditLog}, nil
}

// StopAPIServer kills kube-apiserver (SIGKILL: a crash, and no graceful drain that could
// take longer than the outage a test wants) and waits until it is gone; etcd keeps running.
func (cp *ControlPlane) StopAPIServer() error {
	api := cp.Env().ControlPlane.APIServer
	certDir := api.CertDir
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
	if err := api.Stop(); err != nil {
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
	if err := cp.Env().ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("harness: starting kube-apiserver again: %w", err)
	}
	return nil
}

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
