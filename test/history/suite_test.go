// Package history_test runs the archive and the history API end to end with real
// processes: the operator binary with the archive and the history API on, a control
// plane with the aggregation layer, a PostgreSQL of its own. Slow (it builds the
// operator): make test-reliability runs it (HISTORY_E2E=1).
package history_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/test/harness"
)

var (
	ctx    context.Context
	cancel context.CancelFunc
	cp     *harness.ControlPlane
	k8s    client.Client
	pg     *harness.Postgres
	op     *harness.Operator
)

func TestHistoryEndToEnd(t *testing.T) {
	if os.Getenv("HISTORY_E2E") == "" {
		t.Skip("HISTORY_E2E=1 (make test-reliability) runs it")
	}
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(time.Minute)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	RunSpecs(t, "History end to end")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)
	dir, err := os.MkdirTemp("", "history-e2e-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = os.RemoveAll(dir) })

	pg, err = harness.StartPostgres(ctx, harness.PostgresOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(pg.Stop()).To(Succeed()) })

	flags, err := harness.AggregationFlags(filepath.Join(dir, "front-proxy"))
	Expect(err).NotTo(HaveOccurred())
	cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: filepath.Join(dir, "cluster"), APIServerFlags: flags})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	k8s = cp.Client

	bin, err := harness.BuildOperator(dir)
	Expect(err).NotTo(HaveOccurred())
	certDir := filepath.Join(dir, "history-tls")
	Expect(os.MkdirAll(certDir, 0o700)).To(Succeed())
	caBundle, err := harness.WriteHistoryCert(certDir)
	Expect(err).NotTo(HaveOccurred())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	port := ln.Addr().(*net.TCPAddr).Port
	Expect(ln.Close()).To(Succeed())
	op, err = harness.NewOperator(harness.OperatorOptions{Binary: bin, Kubeconfig: cp.Kubeconfig, LogPath: filepath.Join(dir, "operator.log"),
		Env: []string{"FUNNEL_ARCHIVE_DATABASE_URL=" + pg.URL},
		Args: []string{"--history-bind-address=127.0.0.1:" + strconv.Itoa(port), "--history-cert-dir=" + certDir,
			"--delivery-allow-cidrs=127.0.0.1"}}) // the backfill's sink is on loopback
	Expect(err).NotTo(HaveOccurred())
	Expect(op.Start()).To(Succeed())
	DeferCleanup(func() { op.Stop(30 * time.Second) })
	Expect(op.WaitReady(ctx, time.Minute)).To(Succeed(), "%s", op.LogTail(40))
	Expect(harness.RegisterHistoryAPI(ctx, k8s, int32(port), caBundle, time.Minute)).To(Succeed(), "%s", op.LogTail(40))
})
