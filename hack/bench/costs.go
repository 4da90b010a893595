package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor/direct"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// costsConcurrency is the workers of each operation: enough to keep the API server busy,
// few enough that the bench's own client is not what is measured.
const costsConcurrency = 8

// nsCosts holds the costs phase's objects; the operator does not watch it.
const nsCosts = "bench-costs"

// nsBytes holds the events weighed (kept: they count as stored events).
const nsBytes = "bench-bytes"

// costArm is one way of writing an event's status (or reading it) that the costs phase
// measures: on fresh objects of a CRD variant, each first created the receiver's way.
type costArm struct {
	name    string
	variant string
	// bare objects have no labels and no annotations.
	bare bool
	// create: op creates the object (it is not created first).
	create bool
	// op runs on an object just created; it may change ev.
	op func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error
}

// createKey names the creates an arm's objects take: its variant, bare or not.
func (a costArm) createKey() string {
	if a.bare {
		return a.variant + ", bare"
	}
	return a.variant
}

// costArms are the costs phase's measurements, the controllers' own status write on the
// real CRD first (status_write_cost_ratio itself comes from statusWritePairs).
func costArms() []costArm {
	merge := func(status func(*funnelv1.FunnelEvent)) func(context.Context, *variant, *funnelv1.FunnelEvent) error {
		return func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			base := ev.DeepCopy()
			status(ev)
			return v.mw.Status().Patch(ctx, ev, client.MergeFrom(base))
		}
	}
	processed := func(ev *funnelv1.FunnelEvent) { processedStatus(ev, time.Now()) }
	return []costArm{
		{name: "the controllers' status write", variant: "real", op: controllersWrite},
		{name: "status merge patch, optimistic lock", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			base := ev.DeepCopy()
			processed(ev)
			return v.mw.Status().Patch(ctx, ev, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		}},
		{name: "status JSON patch", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			processed(ev)
			body, err := jsonPatchOf(&ev.Status)
			if err != nil {
				return err
			}
			return v.send(ctx, http.MethodPatch, ev, string(types.JSONPatchType), body, nil)
		}},
		{name: "status apply", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			processed(ev)
			body, err := json.Marshal(map[string]any{"apiVersion": v.apiVersion(), "kind": "FunnelEvent",
				"metadata": map[string]string{"name": ev.Name, "namespace": ev.Namespace}, "status": ev.Status})
			if err != nil {
				return err
			}
			return v.send(ctx, http.MethodPatch, ev, string(types.ApplyPatchType), body, map[string]string{"fieldManager": "bench", "force": "true"})
		}},
		{name: "status update", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			processed(ev)
			ev.APIVersion, ev.Kind = v.apiVersion(), "FunnelEvent"
			body, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			return v.send(ctx, http.MethodPut, ev, "application/json", body, nil)
		}},
		{name: "status merge patch, Ready condition only", variant: "real", op: merge(func(ev *funnelv1.FunnelEvent) {
			processed(ev)
			ev.Status.Conditions = ev.Status.Conditions[2:]
		})},
		{name: "status merge patch, phase only", variant: "real", op: phaseOnlyWrite},
		{name: "the controllers' status write", variant: "real", bare: true, op: controllersWrite},
		{name: "the controllers' status write", variant: variantShipped, op: controllersWrite},
		{name: "the controllers' status write", variant: variantNoRule, op: controllersWrite},
		{name: "the controllers' status write", variant: variantPolicy, op: controllersWrite},
		{name: "the controllers' status write", variant: variantGranular, op: controllersWrite},
		{name: "get", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			return v.c.Get(ctx, client.ObjectKeyFromObject(ev), &funnelv1.FunnelEvent{})
		}},
	}
}

// controllersWrite is the event controllers' status write of a processed event.
func controllersWrite(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
	base := ev.DeepCopy()
	processedStatus(ev, time.Now())
	return v.mw.Status().Patch(ctx, ev, client.MergeFrom(base))
}

// costs measures what one API operation on a FunnelEvent costs the API server and etcd in
// CPU time, to say where the end-to-end and ingest ratios go, and what each part of a
// status write costs. Every arm creates its objects (the receiver's, made by
// receiver.NewEvent, created like the receiver does) and then runs its operation on each;
// the arms run in turn, in a rotating order, round after round, so that the machine's
// drift falls on each alike. A status write is compared with the creates of the same CRD.
func (b *bench) costs(ctx context.Context) error {
	variants, err := b.installVariants(ctx)
	if err != nil {
		return err
	}
	b.variants = variants
	if b.background, err = b.idleCPU(ctx); err != nil {
		return err
	}
	src := newSource(b.o.seed, 300, 0)
	// 26 measurements a round: 500 objects each keeps the phase to a few minutes. Five
	// rounds, as one arm's figure moves by ±0.2 of a create between rounds.
	count, rounds := pick(&b.o, 500, 200), pick(&b.o, 5, 1)
	arms := costArms()
	if b.o.cbor {
		arms = append(arms, cborArms()...)
	}
	writes := make([]opCost, len(arms))
	creates := map[string]*opCost{}
	var createKeys []string
	sizes := map[string]*objectSize{}
	for _, a := range arms {
		if creates[a.createKey()] == nil {
			creates[a.createKey()] = &opCost{Op: "create", Variant: a.variant, Bare: a.bare}
			createKeys = append(createKeys, a.createKey())
		}
	}
	for round := range rounds {
		for k := range arms {
			i := (k + round) % len(arms)
			a := arms[i]
			v := variants[a.variant]
			evs := make([]*funnelv1.FunnelEvent, count)
			for j := range evs {
				if evs[j], err = src.object(nsCosts); err != nil {
					return err
				}
				if a.bare {
					evs[j].Labels, evs[j].Annotations = nil, nil
				}
			}
			profile := func(op string) string {
				if b.o.profileDir == "" {
					return ""
				}
				return filepath.Join(b.o.profileDir, fmt.Sprintf("costs-%s-%d.pprof", fileName(op), round+1))
			}
			if !a.create {
				used, err := b.measure(ctx, evs, func(ctx context.Context, ev *funnelv1.FunnelEvent) error { return v.mw.Create(ctx, ev) },
					profile("create-"+a.createKey()+"-for-"+a.name))
				if err != nil {
					return fmt.Errorf("costs: creating %s: %w", a.createKey(), err)
				}
				creates[a.createKey()].add(round, len(evs), used)
			}
			used, err := b.measure(ctx, evs, func(ctx context.Context, ev *funnelv1.FunnelEvent) error { return a.op(ctx, v, ev) },
				profile(a.variant+"-"+a.name))
			if err != nil {
				return fmt.Errorf("costs: %s (%s): %w", a.name, a.variant, err)
			}
			writes[i].add(round, len(evs), used)
		}
		if err := b.c.DeleteAllOf(ctx, &funnelv1.FunnelEvent{}, client.InNamespace(nsCosts)); err != nil {
			return fmt.Errorf("costs: deleting the round's events: %w", err)
		}
		for name, v := range variants {
			if round == rounds-1 && name != "real" {
				if sizes[name], err = b.objectSizes(ctx, v, nsCosts); err != nil {
					return err
				}
				logf("costs: %s: %.0f bytes of JSON, managedFields %.0f", name, sizes[name].Bytes, sizes[name].ManagedFieldsBytes)
			}
			if name != "real" {
				if err := v.deleteAll(ctx); err != nil {
					return err
				}
			}
		}
		logf("costs: round %d of %d done (%d objects per arm)", round+1, rounds, count)
	}
	res := &costsResult{Concurrency: costsConcurrency, Rounds: rounds}
	res.Variants = sizes
	// A create takes the same path whatever the CRD copy (none of the changes touches it),
	// so every arm's creates of the same objects (bare or not) together are "a create":
	// each variant's own creates vary by more than the parts measured.
	pooled := map[bool]*opCost{false: {}, true: {}}
	for _, k := range createKeys {
		pooled[creates[k].Bare].pool(creates[k])
	}
	for _, k := range createKeys {
		c := creates[k]
		c.finish(pooled[c.Bare])
		res.Ops = append(res.Ops, *c)
	}
	for i, a := range arms {
		c := &writes[i]
		c.Op, c.Variant, c.Bare = a.name, a.variant, a.bare
		c.finish(pooled[a.bare])
		res.Ops = append(res.Ops, *c)
		logf("costs: %-40s %-32s apiserver %.2f ms, etcd %.2f ms CPU per operation: %.2f× a create (apiserver + etcd; rounds %s)",
			a.name, a.createKey(), c.APIServerMsPerOp, c.EtcdMsPerOp, c.TimesCreate, c.spread())
	}
	for _, op := range []struct {
		name string
		op   func(context.Context, *variant, *funnelv1.FunnelEvent) error
	}{
		{"the controllers' status write", controllersWrite},
		{"the smallest status write (phase and processedTime)", phaseOnlyWrite},
	} {
		p, err := b.pairs(ctx, variants["real"], op.name, op.op, pick(&b.o, 24, 3), pick(&b.o, 250, 100))
		if err != nil {
			return err
		}
		res.Pairs = append(res.Pairs, p)
		logf("costs: %s, %d pairs: median %.2f× a create (quartiles %.2f–%.2f)", op.name, len(p.Ratios), p.Median, p.Q1, p.Q3)
	}
	res.StatusWriteCostRatio = ptrTo(res.Pairs[0].Median)
	b.res.Costs = res

	if res.Etcd, err = b.measureEtcdBytes(ctx, nsBytes, pick(&b.o, 2000, 300), newSource(b.o.seed, 301, 0)); err != nil {
		return err
	}
	if res.Object, err = b.objectSizes(ctx, variants["real"], nsBytes); err != nil {
		return err
	}
	logf("costs: a processed FunnelEvent is %.0f bytes of JSON (metadata %.0f, managedFields %.0f of it; spec %.0f, data %.0f of it; status %.0f); etcd grows by %.0f bytes per event (API server estimate %.0f)",
		res.Object.Bytes, res.Object.MetadataBytes, res.Object.ManagedFieldsBytes, res.Object.SpecBytes, res.Object.DataBytes, res.Object.StatusBytes,
		res.Etcd.BytesPerEvent, res.Etcd.APIServerEstimateBytes)
	return nil
}

// pairs measures one write against creates as many short pairs: count fresh objects
// created, then the write of each. The arms above compare many things over a few long
// rounds, and one arm's round moved by more than half a create between rounds on a
// 2-core VM; a pair's two halves follow each other within a second or two, so drift
// mostly cancels, and the median leaves out the pairs a burst of other work landed in.
func (b *bench) pairs(ctx context.Context, v *variant, name string, op func(context.Context, *variant, *funnelv1.FunnelEvent) error, pairs, count int) (pairedOp, error) {
	src := newSource(b.o.seed, 302, 0)
	var out []float64
	for p := range pairs {
		evs := make([]*funnelv1.FunnelEvent, count)
		for j := range evs {
			var err error
			if evs[j], err = src.object(nsCosts); err != nil {
				return pairedOp{}, err
			}
		}
		created, err := b.measure(ctx, evs, func(ctx context.Context, ev *funnelv1.FunnelEvent) error { return v.mw.Create(ctx, ev) }, "")
		if err != nil {
			return pairedOp{}, fmt.Errorf("costs: %s, pair %d, creating: %w", name, p+1, err)
		}
		written, err := b.measure(ctx, evs, func(ctx context.Context, ev *funnelv1.FunnelEvent) error { return op(ctx, v, ev) }, "")
		if err != nil {
			return pairedOp{}, fmt.Errorf("costs: %s, pair %d: %w", name, p+1, err)
		}
		if r := ratio(apiCPU(written), apiCPU(created)); r != nil {
			out = append(out, *r)
		}
	}
	if err := b.c.DeleteAllOf(ctx, &funnelv1.FunnelEvent{}, client.InNamespace(nsCosts)); err != nil {
		return pairedOp{}, fmt.Errorf("costs: deleting the pairs' events: %w", err)
	}
	if len(out) == 0 {
		return pairedOp{}, fmt.Errorf("costs: %s: no pair measured", name)
	}
	slices.Sort(out)
	return pairedOp{Op: name, Ratios: out, Median: median(out), Q1: quantile(out, 0.25), Q3: quantile(out, 0.75)}, nil
}

// phaseOnlyWrite is the smallest status write there is: phase and processedTime.
func phaseOnlyWrite(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
	base := ev.DeepCopy()
	t := metav1.Now()
	ev.Status.Phase, ev.Status.ProcessedTime = funnelv1.PhaseSucceeded, &t
	return v.mw.Status().Patch(ctx, ev, client.MergeFrom(base))
}

// quantile of sorted values, the nearest rank; NaN of none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return round3((sorted[n/2-1] + sorted[n/2]) / 2)
}

// idleCPU is the CPU the API server and etcd use per second with nothing asked of them
// (the operator's leases and watches): subtracted from every measurement.
func (b *bench) idleCPU(ctx context.Context) (map[string]float64, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Second):
	}
	cpu := sampleCPU(b.procs())
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(3 * time.Second):
	}
	used := sampleCPU(b.procs()).secondsSince(cpu)
	out := map[string]float64{}
	for _, k := range []string{"apiserver", "etcd"} {
		out[k] = used[k] / 3
	}
	logf("costs: idle, the API server uses %.3f cores and etcd %.3f", out["apiserver"], out["etcd"])
	return out, nil
}

// measure runs op on every object, costsConcurrency at a time, and returns the CPU the
// API server and etcd used meanwhile. With profile, it also writes a CPU profile of the
// API server taken while op runs.
func (b *bench) measure(ctx context.Context, evs []*funnelv1.FunnelEvent, op func(context.Context, *funnelv1.FunnelEvent) error, profile string) (map[string]float64, error) {
	var mu sync.Mutex
	var firstErr error
	next := 0
	var prof sync.WaitGroup
	var profErr error
	if profile != "" {
		prof.Go(func() { profErr = b.apiProfile(ctx, profile, 5*time.Second) })
	}
	cpu := sampleCPU(b.procs())
	_, err := send.Run(ctx, send.Load{Concurrency: costsConcurrency, Count: len(evs)}, func() (*funnelv1.FunnelEvent, error) {
		next++
		return evs[next-1], nil
	}, func(ctx context.Context, ev *funnelv1.FunnelEvent) {
		if err := op(ctx, ev); err != nil {
			mu.Lock()
			firstErr = cmp.Or(firstErr, err)
			mu.Unlock()
		}
	})
	after := sampleCPU(b.procs())
	used := after.secondsSince(cpu)
	for k, rate := range b.background {
		used[k] -= rate * after.at.Sub(cpu.at).Seconds()
	}
	prof.Wait()
	return used, cmp.Or(err, firstErr, ctx.Err(), profErr)
}

// apiProfile writes a CPU profile of the API server over d to path.
func (b *bench) apiProfile(ctx context.Context, path string, d time.Duration) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(b.cp.Host, "/"), int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := b.api.Do(req)
	if err != nil {
		return fmt.Errorf("profiling the API server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiling the API server: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("profiling the API server: %w", err)
	}
	return f.Close()
}

// fileName turns a label into a file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// add counts n operations of a round that used the CPU seconds of used.
func (c *opCost) add(round, n int, used map[string]float64) {
	c.Count += n
	c.APIServerSeconds += used["apiserver"]
	c.EtcdSeconds += used["etcd"]
	c.addRound(round, opTotal{n: n, secs: apiCPU(used)})
}

// addRound adds t to round r's total.
func (c *opCost) addRound(r int, t opTotal) {
	for len(c.rounds) <= r {
		c.rounds = append(c.rounds, opTotal{})
	}
	c.rounds[r].n += t.n
	c.rounds[r].secs += t.secs
}

// pool adds the operations of o to c, round by round.
func (c *opCost) pool(o *opCost) {
	c.Count += o.Count
	c.APIServerSeconds += o.APIServerSeconds
	c.EtcdSeconds += o.EtcdSeconds
	for r, t := range o.rounds {
		c.addRound(r, t)
	}
}

// finish computes the per-operation figures, relative to the creates of create, over
// all rounds and round by round.
func (c *opCost) finish(create *opCost) {
	per := func(c *opCost) float64 { return (c.APIServerSeconds + c.EtcdSeconds) / float64(c.Count) }
	c.APIServerMsPerOp = round3(c.APIServerSeconds / float64(c.Count) * 1000)
	c.EtcdMsPerOp = round3(c.EtcdSeconds / float64(c.Count) * 1000)
	c.TimesCreate = valueOr(ratio(per(c), per(create)))
	c.TimesCreateByRound = nil
	for r, t := range c.rounds {
		if r < len(create.rounds) && t.n > 0 && create.rounds[r].n > 0 {
			c.TimesCreateByRound = append(c.TimesCreateByRound, valueOr(ratio(t.secs/float64(t.n), create.rounds[r].secs/float64(create.rounds[r].n))))
		}
	}
}

// spread is "lowest–highest" of the rounds' figures.
func (c *opCost) spread() string {
	if len(c.TimesCreateByRound) == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f–%.2f", slices.Min(c.TimesCreateByRound), slices.Max(c.TimesCreateByRound))
}

// jsonPatchOf is a JSON patch that sets each field of st the controllers write.
func jsonPatchOf(st *funnelv1.FunnelEventStatus) ([]byte, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	ops := []op{{"add", "/status/phase", st.Phase}, {"add", "/status/conditions", st.Conditions},
		{"add", "/status/summary", st.Summary}, {"add", "/status/processedTime", st.ProcessedTime}}
	if st.Attempts != 0 {
		ops = append(ops, op{"add", "/status/attempts", st.Attempts})
	}
	return json.Marshal(ops)
}

// apiVersion is the variant's group/version.
func (v *variant) apiVersion() string { return v.group + "/" + funnelv1.GroupVersion.Version }

// send sends body to ev's status subresource (to the collection for a POST), answered
// with metadata, and keeps the new resourceVersion.
func (v *variant) send(ctx context.Context, verb string, ev *funnelv1.FunnelEvent, contentType string, body []byte, params map[string]string) error {
	path := []string{"/apis", v.group, funnelv1.GroupVersion.Version, "namespaces", ev.Namespace, "funnelevents"}
	if verb != http.MethodPost {
		path = append(path, ev.Name, "status")
	}
	req := v.rest.Verb(verb).AbsPath(path...).
		SetHeader("Content-Type", contentType).SetHeader("Accept", acceptMetadata).Param("fieldValidation", "Ignore").Body(body)
	for k, val := range params {
		req = req.Param(k, val)
	}
	res := req.Do(ctx)
	if err := res.Error(); err != nil {
		return err
	}
	raw, err := res.Get()
	if err != nil {
		return err
	}
	m, ok := raw.(*metav1.PartialObjectMetadata)
	if !ok {
		return fmt.Errorf("answered with %T, not metadata", raw)
	}
	ev.ResourceVersion = m.ResourceVersion
	return nil
}

// cborArms are measured when the API server serves CBOR (--cbor): the writes whose
// request body can be CBOR (a merge patch cannot).
func cborArms() []costArm {
	encode := func(v *variant, ev *funnelv1.FunnelEvent) ([]byte, error) {
		gv := schema.GroupVersion{Group: v.group, Version: funnelv1.GroupVersion.Version}
		return runtime.Encode(runtime.WithVersionEncoder{Version: gv, Encoder: cbor.NewSerializer(v.c.Scheme(), v.c.Scheme()), ObjectTyper: v.c.Scheme()}, ev)
	}
	return []costArm{
		{name: "create, CBOR body", variant: "real", create: true, op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			body, err := encode(v, ev)
			if err != nil {
				return err
			}
			return v.send(ctx, http.MethodPost, ev, runtime.ContentTypeCBOR, body, nil)
		}},
		{name: "status update, CBOR body", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			processedStatus(ev, time.Now())
			body, err := encode(v, ev)
			if err != nil {
				return err
			}
			return v.send(ctx, http.MethodPut, ev, runtime.ContentTypeCBOR, body, nil)
		}},
		{name: "status apply, CBOR body", variant: "real", op: func(ctx context.Context, v *variant, ev *funnelv1.FunnelEvent) error {
			processedStatus(ev, time.Now())
			st, err := json.Marshal(ev.Status)
			if err != nil {
				return err
			}
			var status map[string]any
			if err := json.Unmarshal(st, &status); err != nil {
				return err
			}
			body, err := direct.Marshal(map[string]any{"apiVersion": v.apiVersion(), "kind": "FunnelEvent",
				"metadata": map[string]any{"name": ev.Name, "namespace": ev.Namespace}, "status": status})
			if err != nil {
				return err
			}
			return v.send(ctx, http.MethodPatch, ev, string(types.ApplyCBORPatchType), body, map[string]string{"fieldManager": "bench", "force": "true"})
		}},
	}
}

// acceptMetadata asks for metadata only, as controllers/metawrite does.
const acceptMetadata = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

// deleteAll deletes the variant's events in nsCosts.
func (v *variant) deleteAll(ctx context.Context) error {
	if err := v.c.DeleteAllOf(ctx, &funnelv1.FunnelEvent{}, client.InNamespace(nsCosts)); err != nil {
		return fmt.Errorf("costs: deleting the %s events: %w", v.name, err)
	}
	return nil
}
