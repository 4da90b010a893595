package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// receiverName is the FunnelReceiver every bench namespace has.
const receiverName = harness.ReceiverName

// cluster is the local control plane and the clients the bench uses on it.
type cluster struct {
	cp *harness.ControlPlane
	// cfg is an admin configuration without client-side rate limits.
	cfg *rest.Config
	// c writes and reads without client-side rate limits (QPS -1).
	c client.WithWatch
	// http talks to the API server's own endpoints (/metrics, /debug/pprof) as admin.
	http *http.Client
}

// startCluster starts kube-apiserver and etcd (test/harness) with their data in dir (a
// fresh directory), installs the CRDs, and writes an admin kubeconfig to dir/kubeconfig.
func startCluster(o options, dir string) (*cluster, error) {
	if _, err := os.Stat(o.crds); err != nil {
		return nil, fmt.Errorf("CRD directory: %w (run from the repository root, or set --crds)", err)
	}
	logf("starting a local control plane (data in %s)", dir)
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir, CRDDirs: []string{o.crds}})
	if err != nil {
		return nil, err
	}
	cl := &cluster{cp: cp, cfg: cp.Config}
	if cl.c, err = client.NewWithWatch(cp.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		cl.stop()
		return nil, fmt.Errorf("creating the client: %w", err)
	}
	if cl.http, err = rest.HTTPClientFor(cp.Config); err != nil {
		cl.stop()
		return nil, fmt.Errorf("creating the API server's HTTP client: %w", err)
	}
	return cl, nil
}

// stop stops the control plane.
func (cl *cluster) stop() {
	if err := cl.cp.Stop(); err != nil {
		logf("stopping the local control plane: %v", err)
	}
}

// setupNamespace creates ns with a receiver (harness.NewReceiver) and returns its token.
func (cl *cluster) setupNamespace(ctx context.Context, ns string) (string, error) {
	r, err := harness.NewReceiver(ctx, cl.c, ns, false)
	if err != nil {
		return "", err
	}
	return r.Token, nil
}

// createNamespace creates ns unless it exists.
func (cl *cluster) createNamespace(ctx context.Context, ns string) error {
	if err := cl.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

// waitReceiverReady waits for the receiver's Ready condition (set by the operator).
func (cl *cluster) waitReceiverReady(ctx context.Context, ns string, timeout time.Duration) error {
	return harness.WaitReceiverReady(ctx, cl.c, client.ObjectKey{Namespace: ns, Name: receiverName}, timeout)
}

// eventNames lists the names of the FunnelEvents in ns (metadata only, in pages).
func (cl *cluster) eventNames(ctx context.Context, ns string) (map[string]struct{}, error) {
	names := map[string]struct{}{}
	err := cl.eachEventPage(ctx, ns, nil, 2000, func(items []metav1.PartialObjectMetadata) bool {
		for _, it := range items {
			names[it.Name] = struct{}{}
		}
		return true
	})
	return names, err
}

// countEvents counts the FunnelEvents in ns ("" for all namespaces).
func (cl *cluster) countEvents(ctx context.Context, ns string) (int, error) {
	n := 0
	err := cl.eachEventPage(ctx, ns, nil, 5000, func(items []metav1.PartialObjectMetadata) bool {
		n += len(items)
		return true
	})
	return n, err
}

// anyUnfinished reports whether some FunnelEvent in ns ("" for all) has no final phase:
// the field selector of the operator's cache (controllers.UnfinishedEvents).
func (cl *cluster) anyUnfinished(ctx context.Context, ns string) (bool, error) {
	found := false
	err := cl.eachEventPage(ctx, ns, controllers.UnfinishedEvents(), 1, func(items []metav1.PartialObjectMetadata) bool {
		found = len(items) > 0
		return false
	})
	return found, err
}

func (cl *cluster) eachEventPage(ctx context.Context, ns string, sel fields.Selector, limit int64, fn func([]metav1.PartialObjectMetadata) bool) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
	opts := []client.ListOption{client.Limit(limit)}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	if sel != nil {
		opts = append(opts, client.MatchingFieldsSelector{Selector: sel})
	}
	for {
		if err := cl.c.List(ctx, list, opts...); err != nil {
			return fmt.Errorf("listing FunnelEvents: %w", err)
		}
		if !fn(list.Items) || list.Continue == "" {
			return nil
		}
		opts = append(opts, client.Continue(list.Continue))
	}
}

// waitDrained waits until no FunnelEvent in the namespaces has to be processed any
// more, and returns how long that took; after timeout it returns with drained false.
func (cl *cluster) waitDrained(ctx context.Context, namespaces []string, timeout time.Duration) (time.Duration, bool, error) {
	start := time.Now()
	for {
		busy := false
		for _, ns := range namespaces {
			b, err := cl.anyUnfinished(ctx, ns)
			if err != nil {
				return time.Since(start), false, err
			}
			if busy = b; busy {
				break
			}
		}
		if !busy {
			return time.Since(start), true, nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), false, nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// hasResource reports whether the API server serves resource in funnel.leasing.dev/v1alpha1.
func (cl *cluster) hasResource(resource string) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cl.cfg)
	if err != nil {
		return false, err
	}
	list, err := dc.ServerResourcesForGroupVersion(funnelv1.GroupVersion.String())
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("discovery of %s: %w", funnelv1.GroupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}

// get fetches path from the API server (as admin) and returns the body.
func (cl *cluster) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cl.cfg.Host, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := cl.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s from the API server: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s from the API server: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s from the API server: %s: %s", path, resp.Status, firstLine(string(body)))
	}
	return body, nil
}

// metrics scrapes the API server's own /metrics.
func (cl *cluster) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	body, err := cl.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return harness.ParseMetrics(body)
}

// killChildren SIGKILLs every process (and its process group) whose parent is this
// process: the control plane and the operator. Used only when a second Ctrl-C abandons
// the orderly clean-up.
func killChildren() {
	self := os.Getpid()
	var killed []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = append(killed, pid)
		}
	}
	// A large process takes a moment to go; wait (briefly) so that nothing writes to the
	// temporary directory while it is removed.
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range killed {
		for time.Now().Before(deadline) {
			var ws syscall.WaitStatus
			if p, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); p == pid {
				break
			}
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
