package harness

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
)

// HistoryServiceName is the name the API server checks the history API's certificate
// for: that of its Service, funnel-history in funnel-system.
const HistoryServiceName = "funnel-history.funnel-system.svc"

// HistoryCert makes a self-signed serving certificate for a history API on loopback:
// tls.crt (the certificate and its CA, also the APIService's caBundle) and tls.key, the
// files --history-cert-dir reads.
func HistoryCert() (cert, key []byte, err error) {
	return certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost", HistoryServiceName})
}

// WriteHistoryCert writes HistoryCert's files into dir and returns the caBundle.
func WriteHistoryCert(dir string) ([]byte, error) {
	cert, key, err := HistoryCert()
	if err != nil {
		return nil, fmt.Errorf("harness: history API certificate: %w", err)
	}
	if err := certutil.WriteCert(dir+"/tls.crt", cert); err != nil {
		return nil, err
	}
	if err := keyutil.WriteKey(dir+"/tls.key", key); err != nil {
		return nil, err
	}
	return cert, nil
}

// RegisterHistoryAPI makes the API server proxy history.funnel.leasing.dev to a history
// API on localhost:port (config/history does it with a Service in front of the operator;
// there is no kube-proxy here, so the Service is an ExternalName for localhost), and
// waits until the API server reports the APIService Available.
func RegisterHistoryAPI(ctx context.Context, c client.Client, port int32, caBundle []byte, timeout time.Duration) error {
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": "funnel-system"}}}
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"namespace": "funnel-system", "name": "funnel-history"},
		"spec": map[string]any{"type": "ExternalName", "externalName": "localhost",
			"ports": []any{map[string]any{"name": "https", "port": int64(port)}}},
	}}
	name := historyv1.SchemeGroupVersion.Version + "." + historyv1.GroupName
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"group": historyv1.GroupName, "version": historyv1.SchemeGroupVersion.Version,
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(100), "caBundle": base64.StdEncoding.EncodeToString(caBundle),
			"service": map[string]any{"namespace": "funnel-system", "name": "funnel-history", "port": int64(port)}},
	}}
	for _, obj := range []*unstructured.Unstructured{ns, svc, apiService} {
		if err := c.Patch(ctx, obj, client.Apply, client.FieldOwner("harness"), client.ForceOwnership); err != nil {
			return fmt.Errorf("harness: applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetAPIVersion("apiregistration.k8s.io/v1")
		got.SetKind("APIService")
		if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, cond := range conds {
			if m, ok := cond.(map[string]any); ok && m["type"] == "Available" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("harness: the API server does not report APIService %s Available: %w", name, err)
	}
	return nil
}
