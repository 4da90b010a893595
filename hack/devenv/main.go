// Command devenv is what `make run` runs: it finds a cluster (or starts a local control
// plane from the binaries `make envtest-assets` built), installs the CRDs and the samples,
// runs the operator in the foreground and tells the user what to try. Ctrl-C stops
// everything it started.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// options are the command line.
type options struct {
	local       bool
	dir         string
	manager     string
	crds        string
	samples     string
	sinkAddr    string
	namespace   string
	webhookAddr string
	probeAddr   string
	metricsAddr string
	historyAddr string
}

func main() {
	var o options
	flag.BoolVar(&o.local, "local", false, "Always start a local control plane, even if a cluster is reachable.")
	flag.StringVar(&o.dir, "dir", ".local", "Directory for the local control plane's data and kubeconfig.")
	flag.StringVar(&o.manager, "manager", "bin/manager", "The operator binary to run.")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "Directory of CRD manifests to install.")
	flag.StringVar(&o.samples, "samples", "config/samples/funnel_v1alpha1_funnelreceiver.yaml", "Sample manifests to apply (comma-separated files). The other samples need in-cluster Services; make run adds a console subscription instead.")
	flag.StringVar(&o.sinkAddr, "sink-address", "127.0.0.1:8090", "Address of the console sink that prints deliveries of the dev subscription.")
	flag.StringVar(&o.namespace, "namespace", "default", "Namespace to apply the samples in.")
	flag.StringVar(&o.webhookAddr, "webhook-bind-address", "127.0.0.1:8080", "Address of the webhook receiver.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "Address of the health probes.")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", "127.0.0.1:8082", "Address of the metrics endpoint.")
	flag.StringVar(&o.historyAddr, "history-bind-address", "127.0.0.1:8443", "Address of the history API, with a local control plane and PostgreSQL.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Stop like on Ctrl-C when make itself is terminated (SIGTERM reaches make, not us):
	// nothing this started may outlive it. If make is gone already, stop at once.
	parent := os.Getppid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "make run: asking to be stopped with make: %v\n", errno)
	} else if os.Getppid() != parent {
		stop()
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "make run: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	cfg, kubeconfig, local, stopPlane, err := controlPlane(ctx, o)
	if err != nil {
		return err
	}
	defer stopPlane()
	hist, err := startHistory(ctx, o, local)
	if err != nil {
		return err
	}
	defer hist.stop()

	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	token, err := ensureTokenSecret(ctx, c, o.namespace)
	if err != nil {
		return err
	}
	if err := applySamples(ctx, c, strings.Split(o.samples, ","), o.namespace); err != nil {
		return err
	}
	stopSink, err := startConsoleSink(o.sinkAddr)
	if err != nil {
		return err
	}
	defer stopSink()
	if err := applyConsoleSubscription(ctx, c, o.namespace, "http://"+o.sinkAddr+"/deliveries"); err != nil {
		return err
	}

	mgr, err := startManager(o, kubeconfig, hist)
	if err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()

	ready := make(chan error, 1)
	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	go func() {
		err := waitReady(readyCtx, c, o)
		if err == nil && hist.on() {
			err = harness.RegisterHistoryAPI(readyCtx, c, hist.port, hist.caBundle, time.Minute)
		}
		ready <- err
	}()

	for {
		select {
		case err := <-ready:
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "make run: the operator did not become ready: %v\n", err)
				continue
			}
			if err == nil {
				printBanner(o, kubeconfig, token, hist.on())
			}
			ready = nil
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("the operator exited: %w", err)
			}
			return errors.New("the operator exited")
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "make run: stopping the operator")
			_ = mgr.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(40 * time.Second):
				_ = mgr.Process.Kill()
				<-exited
			}
			return nil
		}
	}
}

// controlPlane returns the cluster to use: the reachable one from $KUBECONFIG unless
// --local, else a local kube-apiserver and etcd whose data persists in o.dir.
func controlPlane(ctx context.Context, o options) (*rest.Config, string, bool, func(), error) {
	if !o.local {
		if cfg, path, ok := reachableCluster(ctx); ok {
			fmt.Fprintf(os.Stderr, "make run: using the cluster from %s (%s); LOCAL=1 starts a local one instead\n", path, cfg.Host)
			if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{o.crds}, ErrorIfPathMissing: true}); err != nil {
				return nil, "", false, nil, fmt.Errorf("installing CRDs: %w", err)
			}
			return cfg, path, false, func() {}, nil
		}
	}

	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, "", false, nil, err
	}
	fmt.Fprintf(os.Stderr, "make run: starting a local control plane (data in %s)\n", dir)
	// The aggregation layer on, for the history API.
	flags, err := harness.AggregationFlags(filepath.Join(dir, "front-proxy"))
	if err != nil {
		return nil, "", false, nil, err
	}
	// etcd's data stays in dir: the next make run finds what this one stored.
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{Dir: dir, CRDDirs: []string{o.crds}, APIServerFlags: flags})
	if err != nil {
		return nil, "", false, nil, err
	}
	stop := func() {
		fmt.Fprintln(os.Stderr, "make run: stopping the local control plane")
		if err := cp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "make run: stopping the local control plane: %v\n", err)
		}
	}
	return cp.Config, cp.Kubeconfig, true, stop, nil
}

// history is make run's archive and history API: a PostgreSQL in o.dir/postgres (kept
// across runs, like etcd's data) and the history API's certificate; off (zero) without
// a local control plane or without PostgreSQL's binaries.
type history struct {
	pg       *harness.Postgres
	certDir  string
	caBundle []byte
	port     int32
}

func (h history) on() bool { return h.pg != nil }

func (h history) stop() {
	if h.pg != nil {
		fmt.Fprintln(os.Stderr, "make run: stopping PostgreSQL")
		if err := h.pg.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "make run: stopping PostgreSQL: %v\n", err)
		}
	}
}

func startHistory(ctx context.Context, o options, local bool) (history, error) {
	if !local {
		return history{}, nil
	}
	if _, err := harness.PostgresBinDir(); err != nil {
		fmt.Fprintf(os.Stderr, "make run: no archive and history API: %v\n", err)
		return history{}, nil
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return history{}, err
	}
	_, port, err := net.SplitHostPort(o.historyAddr)
	if err != nil {
		return history{}, fmt.Errorf("--history-bind-address: %w", err)
	}
	h := history{certDir: filepath.Join(dir, "history-tls")}
	if _, err := fmt.Sscan(port, &h.port); err != nil {
		return history{}, fmt.Errorf("--history-bind-address: %w", err)
	}
	if err := os.MkdirAll(h.certDir, 0o700); err != nil {
		return history{}, err
	}
	if h.caBundle, err = harness.WriteHistoryCert(h.certDir); err != nil {
		return history{}, err
	}
	// PostgreSQL runs as the user postgres (as root, we may not run it), which must be
	// able to pass through dir to reach its own directory in it; listing stays ours.
	if err := os.Chmod(dir, 0o711); err != nil {
		return history{}, err
	}
	fmt.Fprintf(os.Stderr, "make run: starting PostgreSQL for the archive (data in %s)\n", filepath.Join(dir, "postgres"))
	if h.pg, err = harness.StartPostgres(ctx, harness.PostgresOptions{Dir: filepath.Join(dir, "postgres")}); err != nil {
		return history{}, err
	}
	return h, nil
}

// reachableCluster loads the user's kubeconfig and checks that its API server answers.
func reachableCluster(ctx context.Context) (*rest.Config, string, bool) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, "", false
	}
	probe := rest.CopyConfig(cfg)
	probe.Timeout = 3 * time.Second
	rc, err := rest.UnversionedRESTClientFor(withCodec(probe))
	if err != nil {
		return nil, "", false
	}
	if err := rc.Get().AbsPath("/version").Do(ctx).Error(); err != nil {
		return nil, "", false
	}
	path := rules.GetDefaultFilename()
	if p := rules.GetExplicitFile(); p != "" {
		path = p
	} else if env := os.Getenv("KUBECONFIG"); env != "" {
		path = env
	}
	return cfg, path, true
}

func withCodec(cfg *rest.Config) *rest.Config {
	cfg.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	return cfg
}

const tokenSecret = "funnel-receiver-token"

// ensureTokenSecret creates the sample receiver's token Secret with a random token, once;
// an existing Secret (from an earlier run) is kept so the token stays stable.
func ensureTokenSecret(ctx context.Context, c client.Client, ns string) (string, error) {
	var s corev1.Secret
	err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: tokenSecret}, &s)
	if err == nil {
		return string(s.Data["token"]), nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("reading Secret %s/%s: %w", ns, tokenSecret, err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	token := hex.EncodeToString(b)
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tokenSecret},
		StringData: map[string]string{"token": token},
	}
	if err := c.Create(ctx, &s); err != nil {
		return "", fmt.Errorf("creating Secret %s/%s: %w", ns, tokenSecret, err)
	}
	return token, nil
}

// applySamples server-side applies every object in the given manifest files.
func applySamples(ctx context.Context, c client.Client, files []string, ns string) error {
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for doc := range strings.SplitSeq(string(raw), "\n---") {
			obj := map[string]any{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(obj) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			u.SetNamespace(ns)
			if err := c.Patch(ctx, u, client.Apply, client.FieldOwner("make-run"), client.ForceOwnership); err != nil {
				return fmt.Errorf("applying %s: %w", f, err)
			}
		}
	}
	return nil
}

// startConsoleSink serves the dev subscription's deliveries and prints one line for each,
// so `kubectl funnel send` shows the whole path in the make run console.
func startConsoleSink(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting the console sink on %s: %w", addr, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Summary string `json:"summary"`
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		_ = json.Unmarshal(body, &ev)
		fmt.Printf("delivered: %s %s (%s) attempt %s, Idempotency-Key %s\n", ev.Name, ev.Type, ev.Summary,
			r.Header.Get("X-Funnel-Delivery-Attempt"), r.Header.Get("Idempotency-Key"))
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// applyConsoleSubscription routes every event to the console sink.
func applyConsoleSubscription(ctx context.Context, c client.Client, ns, url string) error {
	sub := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": funnelv1.GroupVersion.String(), "kind": "FunnelSubscription",
		"metadata": map[string]any{"name": "console", "namespace": ns},
		"spec":     map[string]any{"eventTypes": []any{"*"}, "action": map[string]any{"http": map[string]any{"url": url}}},
	}}
	if err := c.Patch(ctx, sub, client.Apply, client.FieldOwner("make-run"), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the console subscription: %w", err)
	}
	return nil
}

// startManager starts the operator binary in its own process group, so the terminal's
// Ctrl-C reaches only us and we stop it in order.
func startManager(o options, kubeconfig string, hist history) (*exec.Cmd, error) {
	// The console sink is on loopback, which deliveries may not reach unless allowed.
	sinkHost, _, err := net.SplitHostPort(o.sinkAddr)
	if err != nil {
		return nil, fmt.Errorf("--sink-address %q: %w", o.sinkAddr, err)
	}
	args := []string{
		"--delivery-allow-cidrs=" + sinkHost,
		"--webhook-bind-address=" + o.webhookAddr,
		"--health-probe-bind-address=" + o.probeAddr,
		"--metrics-bind-address=" + o.metricsAddr,
		"--external-url=http://" + o.webhookAddr,
		"--zap-devel",
	}
	env := append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if hist.on() {
		args = append(args, "--history-bind-address="+o.historyAddr, "--history-cert-dir="+hist.certDir)
		env = append(env, "FUNNEL_ARCHIVE_DATABASE_URL="+hist.pg.URL)
	}
	cmd := exec.Command(o.manager, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.manager, err)
	}
	return cmd, nil
}

// waitReady waits for the operator's readiness probe and the sample receiver's Ready condition.
func waitReady(ctx context.Context, c client.Client, o options) error {
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://" + o.probeAddr + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("the operator's /readyz: %w", err)
	}
	return harness.WaitReceiverReady(ctx, c, types.NamespacedName{Namespace: o.namespace, Name: harness.ReceiverName}, time.Minute)
}

// kubectlPath is the kubectl to show in the banner: the user's, else the one built with
// the control plane.
func kubectlPath() string {
	if _, err := exec.LookPath("kubectl"); err == nil {
		return "kubectl"
	}
	return filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
}

func printBanner(o options, kubeconfig, token string, history bool) {
	k := kubectlPath() + " --kubeconfig " + kubeconfig
	historyLines := ""
	if history {
		historyLines = fmt.Sprintf(`
History (the PostgreSQL archive, %[3]s/postgres; events are archived once finished):
  %[1]s get archivedevents -n %[2]s -o wide
  %[1]s get archivedevents -n %[2]s -l funnel.leasing.dev/lease-transaction-id=74824   # the curl above
  %[4]s --kubeconfig %[5]s -n %[2]s history --lease-transaction 74824
`, k, o.namespace, o.dir, filepath.Join(filepath.Dir(o.manager), "kubectl-funnel"), kubeconfig)
	}
	fmt.Printf(`
================================================================================
funnel-operator is ready

  Receiver URL:  http://%[1]s/webhooks/%[2]s/funnel
  Token:         Secret %[2]s/%[3]s, key "token"; show it with
                 %[4]s get secret %[3]s -n %[2]s -o jsonpath='{.data.token}' | base64 -d
  Kubeconfig:    %[5]s

Try:
  %[4]s get funnelreceivers -n %[2]s
  %[4]s get funnelevents -n %[2]s
  %[4]s get funnelsubscriptions -n %[2]s   # "console" delivers every event to this terminal
  %[4]s explain funnelevent.spec
  %[7]s --kubeconfig %[5]s -n %[2]s send lease_transaction.status_updated
  %[7]s --kubeconfig %[5]s -n %[2]s send renter.created --count 50 --concurrency 4 --duplicate 2
  curl -sS -H 'Authorization: Bearer %[6]s' -H 'Content-Type: application/json' \
    --data '{"id":8932127,"event_type":"lease_transaction.status_updated","event_timestamp":1680064028,"idempotency_key":null,"event_data":{"lease_transaction_id":74824,"lease_transaction_type":"Application","current_status":"Approved","previous_status":"Submitted","client_id":12453,"community_id":43522}}' \
    http://%[1]s/webhooks/%[2]s/funnel
%[8]s
Ctrl-C stops the operator and the local control plane.
================================================================================
`, o.webhookAddr, o.namespace, tokenSecret, k, kubeconfig, token, filepath.Join(filepath.Dir(o.manager), "kubectl-funnel"), historyLines)
}
