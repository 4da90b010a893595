package tenancy_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// Roles the platform team gives tenants.
var (
	// subscriber: a team that may manage its receivers and subscriptions and read its
	// events, but not Jobs, Pods or Secrets.
	subscriber = []rbacv1.PolicyRule{
		{APIGroups: []string{funnelv1.GroupVersion.Group}, Resources: []string{"funnelreceivers", "funnelsubscriptions"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{funnelv1.GroupVersion.Group}, Resources: []string{"funnelevents"}, Verbs: []string{"get", "list", "watch", "patch"}},
	}
	// eventCreator may create FunnelEvents and nothing else.
	eventCreator = []rbacv1.PolicyRule{
		{APIGroups: []string{funnelv1.GroupVersion.Group}, Resources: []string{"funnelevents"}, Verbs: []string{"create"}},
	}
)

// mayImpersonate lets a tenant act as the named ServiceAccounts of its namespace.
func mayImpersonate(accounts ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, ResourceNames: accounts, Verbs: []string{"impersonate"}}
}

// tenant is one team's namespace, set up by the platform team: a user with a Role of
// the given rules, and a client acting as that user.
type tenant struct {
	ns, user string
	client   client.Client
}

// newTenant creates a namespace and a user bound to a Role of rules in it, and waits
// until the authorizer applies the Role.
func newTenant(prefix string, rules ...rbacv1.PolicyRule) *tenant {
	GinkgoHelper()
	ns, err := testenv.NewNamespace(ctx, k8s, prefix)
	Expect(err).NotTo(HaveOccurred())
	t := &tenant{ns: ns, user: "tenant@" + ns}
	Expect(testenv.Bind(ctx, k8s, ns, "tenant", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: t.user}, rules...)).To(Succeed())
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: t.user, Groups: []string{"system:authenticated"}}
	t.client, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	r := rules[0]
	Eventually(func(g Gomega) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: t.user, Groups: []string{"system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Group: r.APIGroups[0], Resource: r.Resources[0], Verb: r.Verbs[0]}}}
		g.Expect(k8s.Create(ctx, sar)).To(Succeed())
		return sar.Status.Allowed
	}).Should(BeTrue(), "the tenant's Role applies")
	return t
}

// clusterAdminAccount creates a ServiceAccount in ns bound to cluster-admin: what many
// namespaces have (a CI deployer, an operator's own account).
func clusterAdminAccount(ns, name string) {
	GinkgoHelper()
	Expect(testenv.ServiceAccount(ctx, k8s, ns, name)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}})).To(Succeed())
}

// startOperator runs the operator binary for namespace ns, as its ServiceAccount, with
// extra flags; it is killed at the end of the spec.
func startOperator(ns string, args ...string) *harness.Operator {
	GinkgoHelper()
	return startOperatorFor([]string{ns}, args...)
}

// startOperatorFor is startOperator for several tenants' namespaces.
func startOperatorFor(namespaces []string, args ...string) *harness.Operator {
	GinkgoHelper()
	op, err := harness.NewOperator(harness.OperatorOptions{Binary: operatorBin, Kubeconfig: operatorKubeconfig,
		LogPath: filepath.Join(workDir, strings.Join(namespaces, "+")+"-operator.log"),
		// The specs' HTTP targets listen on 127.0.0.1, which deliveries may not reach by default.
		Args: append([]string{"--namespaces=" + strings.Join(namespaces, ","), "--graceful-shutdown-timeout=5s", "--delivery-allow-cidrs=127.0.0.1"}, args...),
		// As config/manager sets it: the seal key is kept in the operator's namespace.
		Env: []string{"POD_NAMESPACE=funnel-system"}})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("--- %s, last lines:\n%s\n", op.LogPath, op.LogTail(40))
		}
		op.Kill()
	})
	Expect(op.Start()).To(Succeed())
	Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
	return op
}

// openReceiver creates (as the admin) a token Secret and a FunnelReceiver "funnel" in ns,
// and returns the token.
func openReceiver(ns string) string {
	GinkgoHelper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-token"},
		StringData: map[string]string{"token": token}})).To(Succeed())
	Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
		Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
			SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "token"}}}}})).To(Succeed())
	return token
}

// post sends one of api/funnel's example bodies to the operator's receiver "funnel" of
// ns, as Funnel would (once), and returns the status code.
func post(op *harness.Operator, ns, token, example string) int {
	GinkgoHelper()
	return postBody(op, ns, send.Auth{Token: token}, exampleBody(example))
}

// postBody sends body to the operator's receiver "funnel" of ns, authenticated with auth,
// once, and returns the status code.
func postBody(op *harness.Operator, ns string, auth send.Auth, body []byte) int {
	GinkgoHelper()
	a := (&send.Sender{Auth: auth}).Post(ctx, op.WebhookURL(ns, "funnel"), body, nil)
	Expect(a.Err).NotTo(HaveOccurred())
	return a.Code
}

// exampleBody is one of api/funnel's example bodies.
func exampleBody(example string) []byte {
	GinkgoHelper()
	body, err := os.ReadFile(filepath.Join(testenv.Root(), "api", "funnel", "testdata", example))
	Expect(err).NotTo(HaveOccurred())
	return body
}

// moveInNumber is api/funnel's example lease.move_in event with another id: event i of a
// series.
func moveInNumber(i int) []byte {
	GinkgoHelper()
	const id = "3eb29a92-e480-40ee-9a9f-61fff5e3f3d5"
	body := exampleBody("v3-lease.move_in.json")
	Expect(string(body)).To(ContainSubstring(id))
	return []byte(strings.Replace(string(body), id, fmt.Sprintf("%s%012d", id[:24], i), 1))
}

// exampleName is the name the receiver "funnel" gives one of api/funnel's example bodies
// (they have ids: the name does not depend on the time).
func exampleName(example string) string {
	GinkgoHelper()
	return eventName(exampleBody(example))
}

// eventName is the name the receiver "funnel" gives body, which has an id.
func eventName(body []byte) string {
	GinkgoHelper()
	name, err := funnel.EventName("funnel", body, time.Now())
	Expect(err).NotTo(HaveOccurred())
	return name
}

// forgedEvent is a FunnelEvent as the receiver would create it, made by someone else.
func forgedEvent(ns, name string) *funnelv1.FunnelEvent {
	return &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			funnelv1.LabelReceiver: "funnel", funnelv1.LabelEventType: "lease.move_in", funnelv1.LabelFormat: "V3"}},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, Type: "lease.move_in", EventID: name,
			ReceivedAt: metav1.NewMicroTime(time.Now()), Data: runtime.RawExtension{Raw: []byte(`{"lease_id":1}`)}},
	}
}

// event reads a FunnelEvent as the admin.
func event(ns, name string) func(Gomega) funnelv1.FunnelEvent {
	return func(g Gomega) funnelv1.FunnelEvent {
		var ev funnelv1.FunnelEvent
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ev)).To(Succeed())
		return ev
	}
}

// subscriptionReady reads a subscription's Ready condition for its current generation.
func subscriptionReady(ns, name string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var sub funnelv1.FunnelSubscription
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sub)).To(Succeed())
		c := meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)
		g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
		g.Expect(c.ObservedGeneration).To(Equal(sub.Generation), "Ready condition is stale")
		return *c
	}
}
