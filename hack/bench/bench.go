package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// The namespaces of the phases; each has its own FunnelReceiver, so that every phase's
// events can be listed and verified on their own.
const (
	// nsRaw is the one namespace the operator does not watch (--namespaces leaves it out):
	// the baselines' events there are never processed.
	nsRaw = "bench-raw"
	// nsOperator holds the leader election Lease; it is in --namespaces too, so that the
	// list is never empty.
	nsOperator = "bench-operator"
	nsIngest   = "bench-ingest"
	nsE2E      = "bench-e2e"
	nsE2ESub   = "bench-e2e-subscription"
	nsScaling  = "bench-scaling"
	nsMemory   = "bench-memory"
)

// The operator's leader election Lease (cmd/manager), and who holds it while the bench
// keeps the operator a follower.
const (
	leaseName     = "funnel-operator.funnel.leasing.dev"
	benchIdentity = "funnel-bench"
)

// bench is one run.
type bench struct {
	o   options
	cp  *harness.ControlPlane
	c   client.WithWatch
	api *http.Client
	op  *harness.Operator
	// receivers are the watched namespaces' receivers.
	receivers map[string]*harness.Receiver
	res       *results
	// variants are the FunnelEvent CRDs of the costs phase, by name ("real" is ours).
	variants map[string]*variant
	// background is the CPU per second the API server and etcd use when idle.
	background map[string]float64
	// postmaster is the PostgreSQL server of the archive step while it runs (0: none).
	postmaster int
	// operatorComm is the operator's command name in /proc (operatorComm).
	operatorComm string
	// disturbed lists the measurements during which other processes used the CPU.
	disturbed []string
}

// procs is what sampleCPU needs to know of the operator's and PostgreSQL's processes.
func (b *bench) procs() cpuProcs { return cpuProcs{operator: b.operatorComm, postmaster: b.postmaster} }

// run starts everything, runs the phases, and writes the results.
func run(ctx context.Context, o options) error {
	started := time.Now()
	crds, err := filepath.Abs(o.crds)
	if err != nil {
		return err
	}
	if _, err := os.Stat(crds); err != nil {
		return fmt.Errorf("CRD directory: %w (run from the repository root, or set --crds)", err)
	}
	manager, err := filepath.Abs(o.manager)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "funnel-bench-")
	if err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	b := &bench{o: o, res: newResults(o), receivers: map[string]*harness.Receiver{}, operatorComm: operatorComm(manager)}
	logf("starting a local control plane (data in %s)", dir)
	var flags map[string]string
	if o.cbor {
		flags = map[string]string{"feature-gates": "CBORServingAndStorage=true"}
	}
	if b.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir, CRDDirs: []string{crds}, APIServerFlags: flags}); err != nil {
		return err
	}
	defer func() {
		if err := b.cp.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}()
	if b.c, err = client.NewWithWatch(b.cp.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return fmt.Errorf("creating the client: %w", err)
	}
	if b.api, err = rest.HTTPClientFor(b.cp.Config); err != nil {
		return fmt.Errorf("creating the API server's HTTP client: %w", err)
	}
	for _, ns := range []string{nsRaw, nsOperator, nsCosts, nsBytes} {
		if err := b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	for _, ns := range b.watched()[1:] {
		if b.receivers[ns], err = harness.NewReceiver(ctx, b.c, ns, false); err != nil {
			return err
		}
	}

	args := append([]string{"--kube-api-qps=10000", "--kube-api-burst=20000", // the client-side limit is not what is measured
		"--leader-elect", "--leader-election-namespace=" + nsOperator, "--namespaces=" + strings.Join(b.watched(), ","),
		"--zap-log-level=error", "--graceful-shutdown-timeout=5s",
		// The e2e step's sink is on loopback, which deliveries may not reach unless allowed.
		"--delivery-allow-cidrs=127.0.0.1"}, o.operatorArgs...)
	// pprof: a forced GC before memory readings.
	if b.op, err = harness.NewOperator(harness.OperatorOptions{Binary: manager, Kubeconfig: b.cp.Kubeconfig,
		LogPath: filepath.Join(dir, "operator.log"), Args: args, Pprof: true}); err != nil {
		return err
	}
	logf("starting the operator: %s", manager)
	if err := b.startOperator(ctx); err != nil {
		return err
	}
	defer b.op.Stop(20 * time.Second)
	for ns, r := range b.receivers {
		if err := r.WaitReady(ctx, b.c, time.Minute); err != nil {
			return errors.Join(fmt.Errorf("namespace %s: %w", ns, err), b.op.Alive())
		}
	}

	steps := []struct {
		phase string
		run   func(context.Context) error
	}{
		{phaseMemory, b.memorySmall},
		{phaseCosts, b.costs},
		{phaseIngest, b.ingest},
		{phaseE2E, b.e2e},
		{phaseScaling, b.scaling},
		{phaseMemory, b.memoryLarge},
	}
	for _, s := range steps {
		if !o.has(s.phase) {
			continue
		}
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s phase: %w", s.phase, errors.Join(err, b.op.Alive()))
		}
		if err := b.op.Alive(); err != nil {
			return fmt.Errorf("after the %s phase: %w", s.phase, err)
		}
	}

	if len(b.disturbed) > 0 {
		b.note("other processes (not this run's) used at least 0.25 of the %d cores during %d measurements, whose figures are disturbed: %s",
			b.res.Machine.NProc, len(b.disturbed), strings.Join(b.disturbed, ", "))
	}
	b.res.DurationSeconds = round3(time.Since(started).Seconds())
	b.res.summarize()
	md := renderResults(b.res)
	fmt.Print("\n" + md)
	if o.out == "" {
		logf("results not written (a --quick or --phases run writes only with --out DIR)")
		return nil
	}
	return b.res.write(o.out, md)
}

// watched are the namespaces the operator watches (--namespaces): nsOperator, then one
// per phase that runs.
func (b *bench) watched() []string {
	out := []string{nsOperator}
	for _, p := range []struct {
		phase string
		ns    []string
	}{{phaseIngest, []string{nsIngest}}, {phaseE2E, []string{nsE2E, nsE2ESub, nsE2EArchive}}, {phaseScaling, []string{nsScaling}}, {phaseMemory, []string{nsMemory}}} {
		if b.o.has(p.phase) {
			out = append(out, p.ns...)
		}
	}
	return out
}

func (b *bench) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.res.Notes = append(b.res.Notes, msg)
	logf("note: %s", msg)
}

// checkOther notes when processes outside the run used a noticeable share of the CPU
// during a measurement: on a shared machine its figures are disturbed.
func (b *bench) checkOther(what string, cores map[string]float64) {
	if cores[otherKey] >= 0.25 {
		b.disturbed = append(b.disturbed, fmt.Sprintf("%s (%.2f)", what, cores[otherKey]))
	}
}

func (b *bench) startOperator(ctx context.Context) error {
	if err := b.op.Start(); err != nil {
		return err
	}
	return b.op.WaitReady(ctx, 90*time.Second)
}

// follow restarts the operator as a follower: stopped (it releases the Lease on the way
// out), the bench takes the Lease, the operator starts again and waits for it while its
// receiver serves — a non-leader replica of the 2-replica Deployment. A leader cannot be
// demoted in place: controller-runtime exits when it loses its Lease.
func (b *bench) follow(ctx context.Context) error {
	b.op.Stop(20 * time.Second)
	// An hour-long Lease needs no renewal: the operator, a candidate, waits for it to run
	// out or go.
	now := metav1.NowMicro()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: nsOperator, Name: leaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptrTo(benchIdentity), LeaseDurationSeconds: ptrTo(int32(3600)), AcquireTime: &now, RenewTime: &now}}
	if err := client.IgnoreNotFound(b.c.Delete(ctx, lease.DeepCopy())); err != nil {
		return fmt.Errorf("taking the Lease: %w", err)
	}
	if err := b.c.Create(ctx, lease); err != nil {
		return fmt.Errorf("taking the Lease: %w", err)
	}
	return b.startOperator(ctx)
}

// leadAndDrain ends a follower measurement: the bench deletes its Lease, the operator
// takes it (it retries every 2 s) and its controllers work off the backlog the follower
// left in ns. It returns the seconds from the release until the backlog was done.
func (b *bench) leadAndDrain(ctx context.Context, ns, after string) (float64, error) {
	start := time.Now()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: nsOperator, Name: leaseName}}
	if err := client.IgnoreNotFound(b.c.Delete(ctx, lease)); err != nil {
		return 0, fmt.Errorf("releasing the Lease: %w", err)
	}
	if err := b.poll(ctx, 30*time.Second, "the operator taking the released Lease", func() (bool, error) {
		err := b.c.Get(ctx, client.ObjectKeyFromObject(lease), lease)
		if apierrors.IsNotFound(err) {
			return false, b.op.Alive()
		}
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != benchIdentity, err
	}); err != nil {
		return 0, err
	}
	if err := b.drain(ctx, after, ns); err != nil {
		return 0, err
	}
	return round3(time.Since(start).Seconds()), nil
}

// errTimedOut is what poll returns when the time is up.
var errTimedOut = errors.New("timed out")

// poll calls done every 100 ms until it reports true or an error, or timeout passes.
func (b *bench) poll(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: waited %s for %s", errTimedOut, timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// drain waits until the controllers have finished every event of the namespaces; a
// timeout is noted, not fatal.
func (b *bench) drain(ctx context.Context, after string, namespaces ...string) error {
	timeout := pick(&b.o, 120*time.Second, 60*time.Second)
	err := b.poll(ctx, timeout, "the backlog", func() (bool, error) {
		for _, ns := range namespaces {
			found := false
			err := b.eachEventPage(ctx, ns, funnelv1.UnfinishedEvents(), 1, func(items []metav1.PartialObjectMetadata) bool {
				found = len(items) > 0
				return false
			})
			if err != nil || found {
				return false, err
			}
		}
		return true, nil
	})
	if errors.Is(err, errTimedOut) {
		b.note("after %s the controllers had not finished the backlog in %s within %s; the next step starts with it", after, strings.Join(namespaces, ", "), timeout)
		return nil
	}
	return err
}

// verify lists the events of ns and returns how many of names do not exist.
func (b *bench) verify(ctx context.Context, ns string, names []string) (int, error) {
	have := map[string]bool{}
	err := b.eachEventPage(ctx, ns, nil, 2000, func(items []metav1.PartialObjectMetadata) bool {
		for _, it := range items {
			have[it.Name] = true
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	var missing []string
	for _, n := range names {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		b.note("%d acknowledged events missing in %s, e.g. %v", len(missing), ns, missing[:min(5, len(missing))])
	}
	return len(missing), nil
}

// countEvents counts the FunnelEvents of the namespaces.
func (b *bench) countEvents(ctx context.Context, namespaces ...string) (int, error) {
	n := 0
	for _, ns := range namespaces {
		if err := b.eachEventPage(ctx, ns, nil, 5000, func(items []metav1.PartialObjectMetadata) bool {
			n += len(items)
			return true
		}); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// eachEventPage lists the FunnelEvents of ns (metadata only) matching sel, limit at a
// time, while fn asks for more.
func (b *bench) eachEventPage(ctx context.Context, ns string, sel fields.Selector, limit int64, fn func([]metav1.PartialObjectMetadata) bool) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
	opts := []client.ListOption{client.InNamespace(ns), client.Limit(limit)}
	if sel != nil {
		opts = append(opts, client.MatchingFieldsSelector{Selector: sel})
	}
	for {
		if err := b.c.List(ctx, list, opts...); err != nil {
			return fmt.Errorf("listing FunnelEvents in %s: %w", ns, err)
		}
		if !fn(list.Items) || list.Continue == "" {
			return nil
		}
		opts = append(opts, client.Continue(list.Continue))
	}
}

// apiMetrics scrapes the API server's own /metrics (as admin).
func (b *bench) apiMetrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(b.cp.Host, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.api.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the API server's /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	if err != nil {
		return nil, fmt.Errorf("the API server's /metrics: %w", err)
	}
	return harness.ParseMetrics(body)
}

// families are the event controllers' names.
var families = map[string]bool{
	string(funnel.FamilyLeaseTransaction): true, string(funnel.FamilyLease): true, string(funnel.FamilyQuote): true,
	string(funnel.FamilyProspect): true, string(funnel.FamilyUnknown): true,
}

// reconciles is how many reconciles the event controllers have done so far: a follower
// does none.
func (b *bench) reconciles(ctx context.Context) (float64, error) {
	fams, err := b.op.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return harness.Sum(fams, "controller_runtime_reconcile_total", func(l map[string]string) bool { return families[l["controller"]] }), nil
}

// operatorGauge is the operator's value of an unlabelled metric.
func (b *bench) operatorGauge(ctx context.Context, name string) (float64, error) {
	fams, err := b.op.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	if _, ok := fams[name]; !ok {
		return 0, fmt.Errorf("the operator's /metrics has no %s", name)
	}
	return harness.Sum(fams, name, nil), nil
}

// apiCode is the HTTP status of an API error (0 when it has none).
func apiCode(err error) int {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return int(s.Status().Code)
	}
	return 0
}

func fmtCores(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"apiserver", "etcd", "operator", "postgres", "bench", otherKey} {
		if _, ok := m[k]; !ok && k == "postgres" {
			continue
		}
		parts = append(parts, k+" "+strconv.FormatFloat(m[k], 'f', 2, 64))
	}
	return strings.Join(parts, ", ")
}
