package metawrite_test

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/metawrite"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var (
	ctx    context.Context
	env    *envtest.Environment
	cfg    *rest.Config
	direct client.Client
	mw     *metawrite.Client
)

func TestMetawrite(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "metawrite")
}

var _ = BeforeSuite(func() {
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	env, cfg, direct, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	mw, err = metawrite.New(cfg, direct)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		Expect(env.Stop()).To(Succeed())
	})
})

// event is a valid FunnelEvent in ns.
func event(ns, name string) *funnelv1.FunnelEvent {
	return &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "test"}},
		Spec: funnelv1.FunnelEventSpec{
			Receiver:   "funnel",
			Format:     funnelv1.FormatV3,
			EventID:    name,
			Type:       "lease.move_in",
			ReceivedAt: metav1.NewMicroTime(time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)),
			Data:       runtime.RawExtension{Raw: []byte(`{"lease_id":9007199254740993,"unit":"4B"}`)},
		},
	}
}

// warningFunc is a rest.WarningHandler.
type warningFunc func(msg string)

func (f warningFunc) HandleWarningHeader(_ int, _ string, msg string) { f(msg) }

var _ = Describe("metawrite.Client", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, direct, "mw")
		Expect(err).NotTo(HaveOccurred())
	})

	It("creates the object as sent and reads the server's metadata back into it", func() {
		ev := event(ns, "evt-1")
		Expect(mw.Create(ctx, ev)).To(Succeed())
		Expect(ev.UID).NotTo(BeEmpty())
		Expect(ev.ResourceVersion).NotTo(BeEmpty())
		Expect(ev.Generation).To(Equal(int64(1)))
		Expect(ev.CreationTimestamp.IsZero()).To(BeFalse())
		Expect(ev.ManagedFields).NotTo(BeEmpty())

		var stored funnelv1.FunnelEvent
		Expect(direct.Get(ctx, client.ObjectKeyFromObject(ev), &stored)).To(Succeed())
		Expect(stored.UID).To(Equal(ev.UID))
		Expect(stored.ResourceVersion).To(Equal(ev.ResourceVersion))
		Expect(stored.Labels).To(Equal(map[string]string{"app": "test"}))
		Expect(stored.Spec.Type).To(Equal("lease.move_in"))
		Expect(string(stored.Spec.Data.Raw)).To(ContainSubstring("9007199254740993"), "integers past float64 precision must survive exactly")
		// Defaults are not read back: the object keeps what was sent.
		Expect(stored.Status.Phase).To(Equal(funnelv1.PhasePending))
		Expect(ev.Status.Phase).To(BeEmpty())
	})

	It("fills in a generated name", func() {
		ev := event(ns, "")
		ev.GenerateName = "evt-"
		Expect(mw.Create(ctx, ev)).To(Succeed())
		Expect(ev.Name).To(HavePrefix("evt-"))
		Expect(direct.Get(ctx, client.ObjectKeyFromObject(ev), &funnelv1.FunnelEvent{})).To(Succeed())
	})

	It("returns the API server's errors as API errors", func() {
		Expect(mw.Create(ctx, event(ns, "evt-dup"))).To(Succeed())
		err := mw.Create(ctx, event(ns, "evt-dup"))
		Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "got %v", err)

		bad := event(ns, "evt-bad")
		bad.Spec.Format = "Carrier-pigeon"
		err = mw.Create(ctx, bad)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.format"))

		err = mw.Create(ctx, event("no-such-namespace", "evt-1"))
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("passes create options on: a dry run stores nothing", func() {
		Expect(mw.Create(ctx, event(ns, "evt-dry"), client.DryRunAll)).To(Succeed())
		err := direct.Get(ctx, types.NamespacedName{Namespace: ns, Name: "evt-dry"}, &funnelv1.FunnelEvent{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("skips the API server's unknown-field check unless asked for it", func() {
		var mu sync.Mutex
		var warnings []string
		warned := rest.CopyConfig(cfg)
		warned.WarningHandler = warningFunc(func(msg string) {
			mu.Lock()
			defer mu.Unlock()
			warnings = append(warnings, msg)
		})
		c, err := metawrite.New(warned, direct)
		Expect(err).NotTo(HaveOccurred())
		withUnknownField := func(name string) *unstructured.Unstructured {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(event(ns, name))
			Expect(err).NotTo(HaveOccurred())
			obj := &unstructured.Unstructured{Object: u}
			obj.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEvent"))
			Expect(unstructured.SetNestedField(obj.Object, "x", "spec", "color")).To(Succeed())
			return obj
		}

		Expect(c.Create(ctx, withUnknownField("evt-quiet"))).To(Succeed())
		Expect(warnings).To(BeEmpty())

		Expect(c.Create(ctx, withUnknownField("evt-warned"), client.FieldValidation(metav1.FieldValidationWarn))).To(Succeed())
		Expect(warnings).To(ContainElement(ContainSubstring(`unknown field "spec.color"`)))
	})

	It("creates core and cluster-scoped kinds at their own paths", func() {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cm"}, Data: map[string]string{"k": "v"}}
		Expect(mw.Create(ctx, cm)).To(Succeed())
		Expect(cm.UID).NotTo(BeEmpty())
		var got corev1.ConfigMap
		Expect(direct.Get(ctx, client.ObjectKeyFromObject(cm), &got)).To(Succeed())
		Expect(got.Data).To(Equal(map[string]string{"k": "v"}))

		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "mw-" + ns}}
		Expect(mw.Create(ctx, role)).To(Succeed())
		Expect(role.UID).NotTo(BeEmpty())
		DeferCleanup(func() { Expect(direct.Delete(ctx, role)).To(Succeed()) })
	})

	It("patches status and reads the new metadata back", func() {
		ev := event(ns, "evt-status")
		Expect(mw.Create(ctx, ev)).To(Succeed())
		created := ev.ResourceVersion

		base := ev.DeepCopy()
		ev.Status.Phase = funnelv1.PhaseSucceeded
		ev.Status.Summary = "Moved in"
		Expect(mw.Status().Patch(ctx, ev, client.MergeFrom(base))).To(Succeed())
		Expect(ev.ResourceVersion).NotTo(Equal(created))

		var stored funnelv1.FunnelEvent
		Expect(direct.Get(ctx, client.ObjectKeyFromObject(ev), &stored)).To(Succeed())
		Expect(stored.ResourceVersion).To(Equal(ev.ResourceVersion))
		Expect(stored.Status.Phase).To(Equal(funnelv1.PhaseSucceeded))
		Expect(stored.Status.Summary).To(Equal("Moved in"))
		Expect(stored.Spec.Type).To(Equal("lease.move_in"), "spec is untouched by a status patch")
	})

	It("refuses a status patch on a stale version with a conflict", func() {
		ev := event(ns, "evt-conflict")
		Expect(mw.Create(ctx, ev)).To(Succeed())
		stale := ev.DeepCopy()

		base := ev.DeepCopy()
		ev.Status.Summary = "first"
		Expect(mw.Status().Patch(ctx, ev, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))).To(Succeed())

		base = stale.DeepCopy()
		stale.Status.Summary = "second"
		err := mw.Status().Patch(ctx, stale, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)

		var stored funnelv1.FunnelEvent
		Expect(direct.Get(ctx, client.ObjectKeyFromObject(ev), &stored)).To(Succeed())
		Expect(stored.Status.Summary).To(Equal("first"))
	})

	It("answers a status patch of a missing object with NotFound", func() {
		ev := event(ns, "evt-missing")
		base := ev.DeepCopy()
		ev.Status.Summary = "x"
		err := mw.Status().Patch(ctx, ev, client.MergeFrom(base))
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})
})
