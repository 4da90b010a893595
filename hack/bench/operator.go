package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/funnel-operator/funnel-operator/test/harness"
)

// operator is bin/manager run as a child process on free loopback ports (test/harness),
// with the bench's flags.
type operator struct {
	*harness.Operator
}

// newOperator picks free ports and checks the binary. The operator watches only
// namespaces (--namespaces) and elects a leader with a Lease in nsOperator.
func newOperator(o options, kubeconfig, dir string, namespaces []string) (*operator, error) {
	bin, err := filepath.Abs(o.manager)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the operator binary: %w (make bench builds it; or set --manager)", err)
	}
	args := []string{
		"--kube-api-qps=" + strconv.Itoa(o.operatorQPS),
		"--kube-api-burst=" + strconv.Itoa(o.operatorBurst),
		"--leader-elect",
		"--leader-election-namespace=" + nsOperator,
		"--namespaces=" + strings.Join(namespaces, ","),
		"--zap-log-level=error",
		// Restarts need not wait for the default 30 s.
		"--graceful-shutdown-timeout=5s",
		// The e2e step's sink is on loopback, which deliveries may not reach unless allowed.
		"--delivery-allow-cidrs=127.0.0.1",
	}
	// pprof: profiles on request, and a forced GC before memory readings.
	op, err := harness.NewOperator(harness.OperatorOptions{Binary: bin, Kubeconfig: kubeconfig,
		LogPath: filepath.Join(dir, "operator.log"), Args: append(args, o.operatorArgs...), Pprof: true})
	if err != nil {
		return nil, err
	}
	return &operator{op}, nil
}

// stop sends SIGTERM and waits; after 20 s it kills the process group.
func (op *operator) stop() { op.Stop(20 * time.Second) }

// waitReady polls /readyz until it answers 200.
func (op *operator) waitReady(ctx context.Context) error { return op.WaitReady(ctx, 90*time.Second) }

// metrics scrapes the operator's /metrics.
func (op *operator) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	return op.Metrics(ctx)
}

// keepLog copies the operator's log to file (when the run keeps profiles).
func (op *operator) keepLog(file string) {
	b, err := op.Log()
	if err == nil {
		err = os.WriteFile(file, b, 0o644)
	}
	if err != nil {
		logf("keeping the operator log: %v", err)
		return
	}
	logf("operator log kept in %s", file)
}
