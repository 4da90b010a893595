package controllers_test

import (
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// actionsAccount is the ServiceAccount specs' subscriptions act as when their actions
// need the cluster; actionRules are what it may do.
const actionsAccount = "actions"

var actionRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
}

// serviceAccount creates a ServiceAccount in ns with a Role of rules bound to it, and
// waits until the authorizer applies the Role.
func serviceAccount(ns, name string, rules ...rbacv1.PolicyRule) {
	GinkgoHelper()
	Expect(testenv.ServiceAccount(ctx, k8s, ns, name, rules...)).To(Succeed())
	if len(rules) > 0 {
		r := rules[0]
		Eventually(mayDo(ns, name, r.APIGroups[0], r.Resources[0], r.Verbs[0])).Should(BeTrue())
	}
}

// mayDo asks the API server's authorizer whether ServiceAccount name of ns may do verb on
// resource in ns.
func mayDo(ns, name, group, resource, verb string) func(Gomega) bool {
	return func(g Gomega) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               identity.Username(ns, name),
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Group: group, Resource: resource, Verb: verb},
		}}
		g.Expect(k8s.Create(ctx, sar)).To(Succeed())
		return sar.Status.Allowed
	}
}

// jobAction is a valid Job action.
func jobAction() funnelv1.Action {
	return funnelv1.Action{Job: &funnelv1.JobAction{Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1"}}}}}}}}
}

// warnings lists the reasons of the Warning Events about a subscription.
func warnings(ns, name string) func(Gomega) []string {
	return func(g Gomega) []string {
		var out []string
		for _, e := range kubeEvents(ns, name)(g) {
			if e.Regarding.Kind == "FunnelSubscription" && e.Type == corev1.EventTypeWarning {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

var _ = Describe("Subscriptions act as their ServiceAccount", func() {
	var ns, path string

	BeforeEach(func() {
		ns, path = openReceiverNamespace("identity")
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crm"},
			StringData: map[string]string{"api-key": "k-4417"}})).To(Succeed())
	})

	create := func(name string, spec funnelv1.FunnelSubscriptionSpec) {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
	}
	withKey := func(url string) funnelv1.Action {
		return funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: url,
			HeadersFrom: []funnelv1.HTTPHeaderFromSecret{{Name: "X-Api-Key", SecretRef: funnelv1.SecretKeyRef{Name: "crm", Key: "api-key"}}}}}
	}

	It("needs a ServiceAccount for Jobs and Secrets, and none for plain HTTP calls", func() {
		target := newSink(http.StatusOK)
		create("job", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: jobAction()})
		create("keyed", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: withKey(target.URL)})
		create("plain", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}})
		Eventually(subscriptionReady(ns, "job")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonServiceAccountRequired),
			HaveField("Message", ContainSubstring("A ServiceAccount is needed (for spec.action.job)"))))
		Eventually(subscriptionReady(ns, "keyed")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonServiceAccountRequired),
			HaveField("Message", ContainSubstring("spec.action.http.headersFrom[0]"))))
		Eventually(subscriptionReady(ns, "plain")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Eventually(warnings(ns, "job")).Should(ConsistOf(funnelv1.ReasonServiceAccountRequired))

		Expect(post(webhookURL, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusOK))
		waiting := SatisfyAll(HaveField("Phase", funnelv1.DeliveryPending), HaveField("Attempts", int32(0)),
			HaveField("Reason", funnelv1.WaitSubscriptionNotReady), HaveField("Message", ContainSubstring(funnelv1.ReasonServiceAccountRequired)))
		Eventually(getEvent(ns, exampleName("v3-lease.move_in.json"))).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseProcessing),
			HaveField("Status.Deliveries", ConsistOf(
				SatisfyAll(HaveField("Subscription", "job"), waiting),
				SatisfyAll(HaveField("Subscription", "keyed"), waiting),
				SatisfyAll(HaveField("Subscription", "plain"), HaveField("Phase", funnelv1.DeliverySucceeded))))),
			"the deliveries that need an account wait for one")
		Expect(target.got()).To(HaveLen(1))
		Expect(target.got()[0].header.Get("X-Api-Key")).To(BeEmpty())
		var jobs batchv1.JobList
		Expect(k8s.List(ctx, &jobs, client.InNamespace(ns))).To(Succeed())
		Expect(jobs.Items).To(BeEmpty())
	})

	It("is Forbidden, with the API server's message and one Event, where its account may not act, and Ready once it may", func() {
		serviceAccount(ns, "runner")
		create("job", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "runner", Action: jobAction()})
		Eventually(subscriptionReady(ns, "job")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonForbidden),
			HaveField("Message", ContainSubstring(`User "system:serviceaccount:`+ns+`:runner" cannot create resource "jobs"`))))
		Eventually(warnings(ns, "job")).Should(ConsistOf(funnelv1.ReasonForbidden))
		Consistently(warnings(ns, "job"), "1s").Should(HaveLen(1), "one Event per change, not per recheck")

		Expect(testenv.Bind(ctx, k8s, ns, "runner", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "runner"}, actionRules[:1]...)).To(Succeed())
		Eventually(subscriptionReady(ns, "job")).Should(HaveField("Reason", funnelv1.ReasonReady))
	})

	It("tells an account that may not read Secrets nothing about which exist", func() {
		serviceAccount(ns, "runner", actionRules[0])
		missing := withKey("http://crm.example")
		missing.HTTP.HeadersFrom[0].SecretRef.Name = "nope"
		create("exists", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "runner", Action: withKey("http://crm.example")})
		create("missing", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "runner", Action: missing})
		Eventually(subscriptionReady(ns, "exists")).Should(HaveField("Reason", funnelv1.ReasonForbidden))
		Eventually(subscriptionReady(ns, "missing")).Should(HaveField("Reason", funnelv1.ReasonForbidden))
		exists, gone := subscriptionReady(ns, "exists")(Default), subscriptionReady(ns, "missing")(Default)
		Expect(strings.ReplaceAll(gone.Message, `"nope"`, `"crm"`)).To(Equal(exists.Message))
	})

	It("never falls back to the operator's identity when its account loses a permission", func() {
		target := newSink(http.StatusServiceUnavailable)
		serviceAccount(ns, "crm-reader", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
		create("crm", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "crm-reader", Action: withKey(target.URL),
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(100)), BackoffDelay: funnelv1.NewDuration(100 * time.Millisecond),
				MaxBackoff: funnelv1.NewDuration(300 * time.Millisecond)}})
		Eventually(subscriptionReady(ns, "crm")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Expect(post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil).code).To(Equal(http.StatusOK))
		Eventually(target.got).ShouldNot(BeEmpty())
		Expect(target.got()[0].header.Get("X-Api-Key")).To(Equal("k-4417"))

		Expect(k8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crm-reader"}})).To(Succeed())
		Eventually(mayDo(ns, "crm-reader", "", "secrets", "get")).Should(BeFalse())
		Eventually(getEvent(ns, exampleName("classic-lease_transaction.status_updated.json"))).Should(HaveField("Status.Deliveries",
			ConsistOf(HaveField("LastError", ContainSubstring(`cannot get resource "secrets"`)))))
		calls := len(target.got())
		approved := exampleName("classic-lease_transaction.status_updated.json")
		attempts := getEvent(ns, approved)(Default).Status.Deliveries[0].Attempts
		Eventually(func(g Gomega) int32 { return getEvent(ns, approved)(g).Status.Deliveries[0].Attempts }).
			Should(BeNumerically(">=", attempts+3), "retries go on")
		Expect(target.got()).To(HaveLen(calls), "no request left without the account's permission")
	})
})

var _ = DescribeTable("identity.Needs: what needs a ServiceAccount",
	func(spec funnelv1.FunnelSubscriptionSpec, want []string) {
		Expect(identity.Needs(&funnelv1.FunnelSubscription{Spec: spec})).To(Equal(want))
	},
	Entry("an HTTP call without Secrets", funnelv1.FunnelSubscriptionSpec{Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://x"}}}, nil),
	Entry("a Job", funnelv1.FunnelSubscriptionSpec{Action: jobAction()}, []string{"spec.action.job"}),
	Entry("Secret headers and signing key, and a Job dead letter", funnelv1.FunnelSubscriptionSpec{
		Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://x",
			HeadersFrom: []funnelv1.HTTPHeaderFromSecret{{Name: "A"}, {Name: "B"}}, SigningSecretRef: &funnelv1.SecretKeyRef{Name: "s", Key: "k"}}},
		Delivery: funnelv1.DeliveryPolicy{DeadLetter: ptr(jobAction())}},
		[]string{"spec.action.http.headersFrom[0]", "spec.action.http.headersFrom[1]", "spec.action.http.signingSecretRef", "spec.delivery.deadLetter.job"}),
	Entry("a signed HTTP call and a signed HTTP dead letter", funnelv1.FunnelSubscriptionSpec{
		Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://x", Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "s", Key: "k"}}}}},
		Delivery: funnelv1.DeliveryPolicy{DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://y",
			Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "s", Key: "k"}}}}}}},
		[]string{"spec.action.http.signing", "spec.delivery.deadLetter.http.signing"}),
	Entry("an HTTP dead letter without Secrets", funnelv1.FunnelSubscriptionSpec{Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://x"}},
		Delivery: funnelv1.DeliveryPolicy{DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://y"}}}}, nil),
)
