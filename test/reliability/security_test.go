package reliability_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// Scenario 6: wrong or missing tokens and bad signatures never create anything; no secret
// reaches the logs at any verbosity. (That the checks take the same time for every wrong
// guess is a unit test of controllers/receiver.)
var _ = Describe("Security", func() {
	It("refuses bad credentials without creating anything, and never logs a secret", func() {
		f := newFixture("security", fixtureOptions{hmac: true, noStart: true, args: []string{"--zap-log-level=debug"}})
		// A subscription that sends a Secret header and signs its bodies.
		subSecret, signingKey := "sub-"+harness.RandomSecret(), "sign-"+harness.RandomSecret()
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "pms"},
			StringData: map[string]string{"api-key": "Bearer " + subSecret, "signing-key": signingKey}})).To(Succeed())
		// It reads them as its ServiceAccount, which may read that Secret.
		Expect(testenv.ServiceAccount(ctx, k8s, f.ns, "pms",
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"pms"}, Verbs: []string{"get"}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "pms"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "pms", Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{
				URL:              f.sink.URL + "/pms",
				HeadersFrom:      []funnelv1.HTTPHeaderFromSecret{{Name: "Authorization", SecretRef: funnelv1.SecretKeyRef{Name: "pms", Key: "api-key"}}},
				SigningSecretRef: &funnelv1.SecretKeyRef{Name: "pms", Key: "signing-key"},
			}}},
		})).To(Succeed())
		f.subs = []string{"pms"}
		start := time.Now()

		var all []send.Result
		refused := 0
		// One run per verbosity: debug, and the highest the logger has.
		for run, level := range []string{"debug", "10"} {
			op := f.ops[0]
			op.Args = append(slices.DeleteFunc(op.Args, func(a string) bool { return strings.HasPrefix(a, "--zap-log-level=") }),
				"--zap-log-level="+level)
			op.Stop(10 * time.Second)
			f.start()

			bs := bodies(8)
			good, bad := bs[:4], bs[4:]
			s := f.sender()
			s.Retries = 0
			// Every way to get it wrong, each with a body nobody sends correctly.
			sig := func(b []byte) string { return funnel.Signature(funnel.HMACSHA256, f.rcv.HMACKey, b) }
			attempts := []struct {
				what   string
				body   []byte
				header http.Header
			}{
				{"no token", bad[0], http.Header{"Authorization": nil}},
				{"wrong token", bad[0], http.Header{"Authorization": {"Bearer " + harness.RandomSecret()}}},
				{"token prefix", bad[0], http.Header{"Authorization": {"Bearer " + f.rcv.Token[:len(f.rcv.Token)-1]}}},
				{"token plus a byte", bad[0], http.Header{"Authorization": {"Bearer " + f.rcv.Token + "0"}}},
				{"empty bearer", bad[0], http.Header{"Authorization": {"Bearer "}}},
				{"no signature", bad[1], http.Header{"X-Funnel-Signature": nil}},
				{"signature of another body", bad[1], http.Header{"X-Funnel-Signature": {sig(bad[2])}}},
				{"signature with another key", bad[1], http.Header{"X-Funnel-Signature": {funnel.Signature(funnel.HMACSHA256, []byte("wrong"), bad[1])}}},
				{"truncated signature", bad[1], http.Header{"X-Funnel-Signature": {sig(bad[1])[:40]}}},
				{"sha512 label on a sha256 mac", bad[1], http.Header{"X-Funnel-Signature": {"sha512=" + hex.EncodeToString(funnel.MAC(funnel.HMACSHA256, f.rcv.HMACKey, bad[1]))}}},
				{"right signature, wrong token", bad[2], http.Header{"Authorization": {"Bearer x"}, "X-Funnel-Signature": {sig(bad[2])}}},
				{"token in another header", bad[3], http.Header{"Authorization": nil, "X-Api-Key": {f.rcv.Token}}},
			}
			for _, a := range attempts {
				res := s.Post(ctx, f.url(0), a.body, a.header)
				Expect(res.Code).To(Equal(http.StatusUnauthorized), "%s: %s", a.what, res)
				all = append(all, send.Result{Event: send.EventName(f.url(0), a.body), Attempts: []send.Attempt{res}})
				refused++
			}
			// The good ones, after the bad: once they are stored and delivered, nothing
			// of the bad ones can still be on its way.
			all = append(all, s.SendAll(ctx, good, 4)...)
			stored := f.events(Default)
			for _, b := range bad {
				Expect(stored).NotTo(HaveKey(send.EventName(f.url(0), b)), "created from a refused request")
			}
			f.waitFinal(len(stored), time.Minute)
			Expect(len(stored)).To(Equal(4*(run+1)), "stored events")
		}
		o := f.checkStored(all)
		f.checkDeliveries()
		for _, r := range f.sink.Requests() {
			Expect(r.Header.Get("Authorization")).To(Equal("Bearer "+subSecret), "the Secret header reached the target")
			Expect(r.Header.Get(funnelv1.SignatureHeader)).To(Equal(funnel.Signature(funnel.HMACSHA256, []byte(signingKey), r.Body)), "signed")
		}

		By("grepping the logs for the secrets")
		log, err := f.ops[0].Log()
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Count(log, []byte("\n"))).To(BeNumerically(">", 20), "the logs are not empty")
		Expect(log).To(ContainSubstring(`"level":"debug"`), "per-request debug lines were logged")
		expectNoSecrets(log, map[string]string{"receiver token": f.rcv.Token, "HMAC key": string(f.rcv.HMACKey),
			"subscription header secret": subSecret, "signing key": signingKey})

		record(o.row("6. security: bad credentials, secrets in logs", time.Since(start),
			fmt.Sprintf("%d requests refused with 401, 0 created; 4 secrets absent from %d log lines at --zap-log-level=debug and =10",
				refused, bytes.Count(log, []byte("\n")))))
	})
})

// expectNoSecrets fails if any secret, raw or base64 (as in a Secret's data), is in log.
func expectNoSecrets(log []byte, secrets map[string]string) {
	GinkgoHelper()
	for what, s := range secrets {
		for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s))} {
			if i := bytes.Index(log, []byte(form)); i >= 0 {
				lineStart := bytes.LastIndexByte(log[:i], '\n') + 1
				lineEnd := bytes.IndexByte(log[i:], '\n')
				if lineEnd < 0 {
					lineEnd = len(log) - i
				}
				Fail(fmt.Sprintf("the %s is in the operator's log:\n%s", what, log[lineStart:i+lineEnd]))
			}
		}
	}
}
