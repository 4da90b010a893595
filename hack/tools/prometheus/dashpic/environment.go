package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// scrapeInterval is Prometheus' scrape interval in the run; panels use four of them as
// $__rate_interval, as Grafana does.
const scrapeInterval = 5 * time.Second

// environment is the operator under `make run`'s dev environment, a Prometheus scraping
// it, and the HTTP targets of the scenario's subscriptions.
type environment struct {
	o                 options
	work, kubeconfig  string
	webhookURL        string
	prometheusURL     string
	prometheusVersion string
	procs             []*exec.Cmd
	targets           []*http.Server
}

// startEnvironment starts everything and applies the scenario's objects; stop undoes it.
func startEnvironment(ctx context.Context, o options, work string) (*environment, error) {
	env := &environment{o: o, work: work, kubeconfig: filepath.Join(work, "local", "kubeconfig")}
	ok := false
	defer func() {
		if !ok {
			env.stop()
		}
	}()
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	webhook, probes, metrics, sink, prom := ports[0], ports[1], ports[2], ports[3], ports[4]
	env.webhookURL = "http://" + webhook
	env.prometheusURL = "http://" + prom

	fmt.Println("dashpic: starting the dev environment (local control plane, operator)")
	if err := env.start("devenv", filepath.Join(o.bin, "devenv"), "--local", "--dir", filepath.Join(work, "local"),
		"--manager", filepath.Join(o.bin, "manager"), "--webhook-bind-address", webhook,
		"--health-probe-bind-address", probes, "--metrics-bind-address", metrics, "--sink-address", sink); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 5*time.Minute, "the sample receiver to be Ready", func() bool {
		_, err := env.kubectlOut("wait", "frcv/funnel", "--for=condition=Ready", "--timeout=5s")
		return err == nil
	}); err != nil {
		return nil, err
	}

	fmt.Println("dashpic: starting Prometheus")
	config := fmt.Sprintf("global: {scrape_interval: %s, evaluation_interval: %s}\nscrape_configs:\n- job_name: funnel-operator-metrics\n  static_configs: [{targets: [%q]}]\n",
		scrapeInterval, scrapeInterval, metrics)
	configPath := filepath.Join(work, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	version, err := exec.Command(o.prometheus, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("prometheus --version: %w", err)
	}
	env.prometheusVersion = strings.Fields(string(version) + " ? ? ?")[2]
	if err := env.start("prometheus", o.prometheus, "--config.file="+configPath, "--storage.tsdb.path="+filepath.Join(work, "prometheus"),
		"--web.listen-address="+prom); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, time.Minute, "Prometheus to be ready", func() bool {
		resp, err := http.Get(env.prometheusURL + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return nil, err
	}

	fmt.Println("dashpic: applying the scenario's receivers and subscriptions")
	flaky, err := env.target(func(n int64) int {
		if n%3 == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	if err != nil {
		return nil, err
	}
	deadLetters, err := env.target(func(int64) int { return http.StatusOK })
	if err != nil {
		return nil, err
	}
	refused, err := freePorts(1) // nothing listens there: connection refused
	if err != nil {
		return nil, err
	}
	if err := env.apply(fmt.Sprintf(scenario, flaky, refused[0], deadLetters)); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, time.Minute, "the scenario's receiver to be Ready", func() bool {
		_, err := env.kubectlOut("wait", "frcv/quiet", "--for=condition=Ready", "--timeout=5s")
		return err == nil
	}); err != nil {
		return nil, err
	}
	ok = true
	return env, nil
}

// scenario: a second receiver that Funnel will stop sending to; a subscription whose
// target fails one request in three (retries); one whose target is down (fails for good,
// into a dead letter). make run's console subscription takes every event as well.
const scenario = `
apiVersion: v1
kind: Secret
metadata: {name: quiet-token}
stringData: {token: quiet-token-value}
---
apiVersion: funnel.leasing.dev/v1alpha1
kind: FunnelReceiver
metadata: {name: quiet}
spec:
  auth:
    token: {secretRef: {name: quiet-token, key: token}}
---
apiVersion: funnel.leasing.dev/v1alpha1
kind: FunnelSubscription
metadata: {name: pms-sync}
spec:
  eventTypes: [lease_transaction.*]
  action: {http: {url: "http://%s/pms"}}
  delivery: {retries: 5, backoffDelay: 1s}
---
apiVersion: funnel.leasing.dev/v1alpha1
kind: FunnelSubscription
metadata: {name: crm}
spec:
  eventTypes: [renter.*, appointment.*]
  action: {http: {url: "http://%s/crm"}}
  delivery:
    retries: 2
    backoffDelay: 2s
    deadLetter: {http: {url: "http://%s/dead-letters"}}
`

// traffic sends Funnel-like events for d: a steady mix of types with a busier middle, a
// burst with duplicates, a receiver that stops receiving, a minute of bad tokens and a
// suspended receiver.
func (env *environment) traffic(ctx context.Context, d time.Duration) error {
	fmt.Printf("dashpic: sending traffic for %s\n", d)
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	at := func(frac float64) time.Duration { return time.Duration(frac * float64(d)) }
	suspended := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		t := time.Since(start)
		if t >= d {
			if suspended {
				return env.suspend("funnel", false)
			}
			return nil
		}
		// Busier in the middle of the run, like a working day.
		busy := 1 + int(3*min(t, d-t)/(d/2))
		env.send("funnel", "lease_transaction.status_updated", 2*busy, 2)
		env.send("funnel", "lease.move_in", busy, 1)
		env.send("funnel", "renter.created", busy, 1)
		env.send("funnel", "quote.created", 1, 1)
		if t < at(0.2) {
			env.send("quiet", "appointment.updated", 1, 1)
		}
		if t >= at(0.4) && t < at(0.4)+5*time.Second {
			env.send("funnel", "lease_transaction.unit_reserved", 300, 16, "--duplicate", "2")
		}
		if t >= at(0.6) && t < at(0.7) {
			env.send("funnel", "lease.move_in", 2, 1, "--token", "an-expired-token")
		}
		if want := t >= at(0.8) && t < at(0.85); want != suspended {
			if err := env.suspend("funnel", want); err != nil {
				return err
			}
			suspended = want
		}
	}
}

// send runs kubectl funnel send in the background; its failures (401s, 503s) are part
// of the picture.
func (env *environment) send(receiver, eventType string, count, concurrency int, extra ...string) {
	args := append([]string{"--kubeconfig", env.kubeconfig, "send", eventType, "--receiver", receiver,
		"--url", env.webhookURL, "--count", fmt.Sprint(count), "--concurrency", fmt.Sprint(concurrency), "-q"}, extra...)
	cmd := exec.Command(filepath.Join(env.o.bin, "kubectl-funnel"), args...)
	log, err := os.OpenFile(filepath.Join(env.work, "send.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		cmd.Stdout, cmd.Stderr = log, log
		defer log.Close()
	}
	if err := cmd.Start(); err == nil {
		go func() { _ = cmd.Wait() }()
	}
}

func (env *environment) suspend(receiver string, on bool) error {
	_, err := env.kubectlOut("patch", "frcv/"+receiver, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"suspend":%v}}`, on))
	return err
}

func (env *environment) apply(manifests string) error {
	cmd := exec.Command(env.o.kubectl, "--kubeconfig", env.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifests)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s", err, out)
	}
	return nil
}

func (env *environment) kubectlOut(args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(env.o.kubectl, append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// start runs a process in its own process group with its output in work/<name>.log.
func (env *environment) start(name, bin string, args ...string) error {
	log, err := os.Create(filepath.Join(env.work, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = env.o.repo
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	env.procs = append(env.procs, cmd)
	return nil
}

// target serves HTTP on a free loopback port, answering the nth request with code(n).
func (env *environment) target(code func(n int64) int) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var n atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code(n.Add(1)))
	})}
	go func() { _ = srv.Serve(ln) }()
	env.targets = append(env.targets, srv)
	return ln.Addr().String(), nil
}

// stop ends the processes (SIGTERM to each group, then SIGKILL) and the targets.
func (env *environment) stop() {
	for i := len(env.procs) - 1; i >= 0; i-- {
		cmd := env.procs[i]
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	for _, srv := range env.targets {
		_ = srv.Close()
	}
}

func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

func waitFor(ctx context.Context, timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), fmt.Errorf("waiting for %s", what))
		case <-time.After(time.Second):
		}
	}
	return nil
}
