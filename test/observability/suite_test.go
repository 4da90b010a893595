// Package observability_test checks what the operator ships for monitoring against the
// running operator: every metric the alert rules (config/prometheus) and the Grafana
// dashboards (config/grafana) query is exported by the manager binary, scraped over HTTP
// after exercising it enough that every series exists; and the binary configured only by
// OTEL_* variables exports one trace per event over OTLP.
package observability_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/funnel-operator/funnel-operator/test/harness"
)

var (
	ctx         context.Context
	cp          *harness.ControlPlane
	operatorBin string
	workDir     string
)

func TestObservability(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	RunSpecs(t, "Observability")
}

var _ = BeforeSuite(func() {
	ctx = context.Background()
	var err error
	workDir, err = os.MkdirTemp("", "funnel-observability-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, workDir)

	By("building the operator")
	operatorBin, err = harness.BuildOperator(workDir)
	Expect(err).NotTo(HaveOccurred())

	By("starting the control plane")
	cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: filepath.Join(workDir, "cluster")})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
})
