package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// objectSize is what a processed FunnelEvent weighs as JSON (what kubectl and every
// client read, and what etcd stores), on average over a list of them, by part.
type objectSize struct {
	Objects int `json:"objects"`
	// Bytes is the whole object; the others are its parts, each as its own JSON.
	Bytes              float64 `json:"bytes"`
	MetadataBytes      float64 `json:"metadata_bytes"`
	ManagedFieldsBytes float64 `json:"managed_fields_bytes"`
	LabelsBytes        float64 `json:"labels_bytes"`
	AnnotationsBytes   float64 `json:"annotations_bytes"`
	SpecBytes          float64 `json:"spec_bytes"`
	DataBytes          float64 `json:"data_bytes"`
	StatusBytes        float64 `json:"status_bytes"`
}

// objectSizes lists the events of ns (of the variant's CRD) as JSON and averages their
// parts' sizes.
func (b *bench) objectSizes(ctx context.Context, v *variant, ns string) (*objectSize, error) {
	url := fmt.Sprintf("%s/apis/%s/namespaces/%s/funnelevents", strings.TrimSuffix(b.cp.Host, "/"), v.apiVersion(), ns)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.api.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing FunnelEvents in %s: %w", ns, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("listing FunnelEvents in %s: %w", ns, err)
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("listing FunnelEvents in %s: %w", ns, err)
	}
	s := &objectSize{Objects: len(list.Items)}
	if s.Objects == 0 {
		return nil, fmt.Errorf("no FunnelEvent in %s to weigh", ns)
	}
	for _, item := range list.Items {
		var obj struct {
			Metadata map[string]json.RawMessage `json:"metadata"`
			Spec     map[string]json.RawMessage `json:"spec"`
			Status   json.RawMessage            `json:"status"`
		}
		if err := json.Unmarshal(item, &obj); err != nil {
			return nil, err
		}
		meta, _ := json.Marshal(obj.Metadata)
		spec, _ := json.Marshal(obj.Spec)
		s.Bytes += float64(len(item))
		s.MetadataBytes += float64(len(meta))
		s.ManagedFieldsBytes += float64(len(obj.Metadata["managedFields"]))
		s.LabelsBytes += float64(len(obj.Metadata["labels"]))
		s.AnnotationsBytes += float64(len(obj.Metadata["annotations"]))
		s.SpecBytes += float64(len(spec))
		s.DataBytes += float64(len(obj.Spec["data"]))
		s.StatusBytes += float64(len(obj.Status))
	}
	n := float64(s.Objects)
	for _, f := range []*float64{&s.Bytes, &s.MetadataBytes, &s.ManagedFieldsBytes, &s.LabelsBytes, &s.AnnotationsBytes, &s.SpecBytes, &s.DataBytes, &s.StatusBytes} {
		*f = round3(*f / n)
	}
	return s, nil
}

// etcdBytes is what etcd holds per stored FunnelEvent.
type etcdBytes struct {
	// Events were added between the two readings, each created and given the controllers'
	// status.
	Events int `json:"events"`
	// DBBytesBefore and DBBytesAfter are etcd's database size after compaction and
	// defragmentation, before and after.
	DBBytesBefore int64 `json:"db_bytes_before"`
	DBBytesAfter  int64 `json:"db_bytes_after"`
	// BytesPerEvent is the growth over the events added.
	BytesPerEvent float64 `json:"bytes_per_event"`
	// APIServerEstimateBytes is the API server's own estimate of a stored FunnelEvent's
	// size (apiserver_resource_size_estimate_bytes ÷ apiserver_resource_objects), 0 when it
	// did not report one.
	APIServerEstimateBytes float64 `json:"apiserver_estimate_bytes"`
}

// measureEtcdBytes adds events processed the controllers' way and returns etcd's growth
// per event, each reading after compaction and defragmentation (a size before them counts
// old revisions and free pages).
func (b *bench) measureEtcdBytes(ctx context.Context, ns string, n int, src *source) (*etcdBytes, error) {
	endpoint := b.cp.Env().ControlPlane.Etcd.URL.String()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd: %w", err)
	}
	defer cli.Close()
	compacted := func() (int64, error) {
		// Settle: the API server writes its own objects (leases, events) now and then.
		get, err := cli.Get(ctx, "compact-revision")
		if err != nil {
			return 0, fmt.Errorf("reading etcd's revision: %w", err)
		}
		if _, err := cli.Compact(ctx, get.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !strings.Contains(err.Error(), "compacted") {
			return 0, fmt.Errorf("compacting etcd: %w", err)
		}
		if _, err := cli.Defragment(ctx, endpoint); err != nil {
			return 0, fmt.Errorf("defragmenting etcd: %w", err)
		}
		st, err := cli.Status(ctx, endpoint)
		if err != nil {
			return 0, fmt.Errorf("reading etcd's status: %w", err)
		}
		return st.DbSize, nil
	}
	res := &etcdBytes{Events: n}
	if res.DBBytesBefore, err = compacted(); err != nil {
		return nil, err
	}
	real := b.variants["real"]
	evs := make([]*funnelv1.FunnelEvent, n)
	for i := range evs {
		if evs[i], err = src.object(ns); err != nil {
			return nil, err
		}
	}
	if _, err := b.measure(ctx, evs, func(ctx context.Context, ev *funnelv1.FunnelEvent) error {
		if err := real.mw.Create(ctx, ev); err != nil {
			return err
		}
		return controllersWrite(ctx, real, ev)
	}, ""); err != nil {
		return nil, fmt.Errorf("storing events to weigh: %w", err)
	}
	if res.DBBytesAfter, err = compacted(); err != nil {
		return nil, err
	}
	res.BytesPerEvent = round3(float64(res.DBBytesAfter-res.DBBytesBefore) / float64(n))
	fams, err := b.apiMetrics(ctx)
	if err != nil {
		return nil, err
	}
	isEvents := func(l map[string]string) bool {
		return l["group"] == funnelv1.GroupVersion.Group && l["resource"] == "funnelevents"
	}
	size, objects := harness.Sum(fams, "apiserver_resource_size_estimate_bytes", isEvents), harness.Sum(fams, "apiserver_resource_objects", isEvents)
	if size > 0 && objects > 0 {
		res.APIServerEstimateBytes = round3(size / objects)
	}
	return res, nil
}
