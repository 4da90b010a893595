package controllers_test

import (
	"context"
	"errors"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// A follower (a replica that is not the leader) answers Funnel and nothing else: it must
// not watch or hold the unfinished events, whose every change would otherwise cost the API
// server a watch event per replica.
var _ = Describe("A follower replica", func() {
	It("stores what Funnel sends without watching FunnelEvents", func() {
		ns, path := openReceiverNamespace("follower")

		By("holding the Lease for another replica, so this one stays a follower")
		const leaseName = "funnel-operator-follower-spec"
		Expect(k8s.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: leaseName},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("the-leader"), LeaseDurationSeconds: ptr[int32](3600),
				AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}},
		})).To(Succeed())

		// A read of a kind the follower's cache has no informer for fails instead of
		// starting one: what the follower watches is what the operator's code started.
		opts := controllers.CacheOptions([]string{ns})
		opts.ReaderFailOnMissingInformer = true
		follower, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:                  testenv.Scheme(),
			Metrics:                 metricsserver.Options{BindAddress: "0"},
			Cache:                   opts,
			LeaderElection:          true,
			LeaderElectionID:        leaseName,
			LeaderElectionNamespace: ns,
			// The suite's manager runs controllers of the same names in this process.
			Controller: config.Controller{SkipNameValidation: ptr(true)},
		})
		Expect(err).NotTo(HaveOccurred())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		Expect(controllers.Setup(ctx, follower, controllers.Options{
			SealKeySecret: sealKeySecret,
			Namespaces:    []string{ns},
			Webhook:       receiver.Options{Listener: ln, Policy: receiver.Policy{AllowInsecure: true}},
		})).To(Succeed())
		fctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(follower.Start(fctx)).To(Succeed())
		}()
		DeferCleanup(func() { stop(); <-done })

		By("sending an event to the follower's receiver")
		a := post("http://"+ln.Addr().String(), path, example("v3-lease.move_in.json"), nil)
		Expect(a.code).To(Equal(200), a.body)
		var stored funnelv1.FunnelEvent
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.event()}, &stored)).To(Succeed())
		again := post("http://"+ln.Addr().String(), path, example("v3-lease.move_in.json"), nil)
		Expect(again.code).To(Equal(200), again.body)
		Expect(again.event()).To(Equal(a.event()), "Funnel's retry is the same event")

		By("finding only receivers in the follower's cache")
		Expect(follower.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
		var events funnelv1.FunnelEventList
		err = follower.GetCache().List(ctx, &events, client.InNamespace(ns))
		var notCached *cache.ErrResourceNotCached
		Expect(errors.As(err, &notCached)).To(BeTrue(), "the follower watches FunnelEvents (its cache listed them: %v)", err)
		for _, list := range []client.ObjectList{&funnelv1.FunnelSubscriptionList{}, &batchv1.JobList{}, &corev1.SecretList{}} {
			err := follower.GetCache().List(ctx, list, client.InNamespace(ns))
			Expect(errors.As(err, &notCached)).To(BeTrue(), "the follower caches %T (its cache listed them: %v)", list, err)
		}
		Expect(follower.GetCache().List(ctx, &funnelv1.FunnelReceiverList{}, client.InNamespace(ns))).To(Succeed(),
			"the follower's receiver reads receivers from its cache")
	})
})
