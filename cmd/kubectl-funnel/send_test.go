package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/api/funnel/send/sendtest"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

const ns = "default"

func receiver(name string, mutate func(*funnelv1.FunnelReceiver)) *funnelv1.FunnelReceiver {
	r := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if mutate != nil {
		mutate(r)
	}
	return r
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func tokenAuth(secretName, header string) func(*funnelv1.FunnelReceiver) {
	return func(r *funnelv1.FunnelReceiver) {
		r.Spec.Auth.Token = &funnelv1.TokenAuth{SecretRef: funnelv1.SecretKeyRef{Name: secretName, Key: "token"}, Header: header}
	}
}

func hmacAuth(secretName, header string, algo funnelv1.HMACAlgorithm) func(*funnelv1.FunnelReceiver) {
	return func(r *funnelv1.FunnelReceiver) {
		r.Spec.Auth.HMAC = &funnelv1.HMACAuth{SecretRef: funnelv1.SecretKeyRef{Name: secretName, Key: "key"}, Header: header, Algorithm: algo}
	}
}

func all(fs ...func(*funnelv1.FunnelReceiver)) func(*funnelv1.FunnelReceiver) {
	return func(r *funnelv1.FunnelReceiver) {
		for _, f := range fs {
			f(r)
		}
	}
}

func fakeClient(objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(newScheme()).WithObjects(objs...).Build()
}

func ptr(s string) *string { return &s }

func TestResolveReceiver(t *testing.T) {
	const base = "http://127.0.0.1:8080"
	tests := []struct {
		name     string
		objs     []client.Object
		ov       overrides
		want     target
		wantErr  string
		wantWarn string
	}{
		{
			name: "token with the default header",
			objs: []client.Object{receiver("funnel", tokenAuth("tok", "")), secret("tok", map[string]string{"token": "abc"})},
			ov:   overrides{url: base},
			want: target{url: base + "/webhooks/default/funnel", namespace: ns,
				auth: send.Auth{TokenHeader: "Authorization", Token: "abc"}},
		},
		{
			name: "hmac sha512 in a custom header",
			objs: []client.Object{receiver("funnel", hmacAuth("sig", "X-Sig", funnelv1.HMACSHA512)), secret("sig", map[string]string{"key": "k\n"})},
			ov:   overrides{url: base},
			want: target{url: base + "/webhooks/default/funnel", namespace: ns,
				auth: send.Auth{HMACHeader: "X-Sig", HMACKey: []byte("k\n"), HMACAlgorithm: "sha512"}},
		},
		{
			name: "both, defaults",
			objs: []client.Object{
				receiver("funnel", all(tokenAuth("tok", ""), hmacAuth("sig", "", ""))),
				secret("tok", map[string]string{"token": "abc"}), secret("sig", map[string]string{"key": "k"}),
			},
			ov: overrides{url: base},
			want: target{url: base + "/webhooks/default/funnel", namespace: ns, auth: send.Auth{
				TokenHeader: "Authorization", Token: "abc",
				HMACHeader: "X-Funnel-Signature", HMACKey: []byte("k")}},
		},
		{
			name: "overrides need no Secret",
			objs: []client.Object{receiver("funnel", all(tokenAuth("missing", "X-Token"), hmacAuth("missing", "", funnelv1.HMACSHA256)))},
			ov:   overrides{url: base, token: ptr("t"), hmacKey: ptr("h")},
			want: target{url: base + "/webhooks/default/funnel", namespace: ns, auth: send.Auth{
				TokenHeader: "X-Token", Token: "t",
				HMACHeader: "X-Funnel-Signature", HMACKey: []byte("h"), HMACAlgorithm: "sha256"}},
		},
		{
			name: "token Secret with a trailing newline",
			objs: []client.Object{receiver("funnel", tokenAuth("tok", "")), secret("tok", map[string]string{"token": "abc\n"})},
			ov:   overrides{url: base},
			want: target{url: base + "/webhooks/default/funnel", namespace: ns,
				auth: send.Auth{TokenHeader: "Authorization", Token: "abc"}},
			wantWarn: "surrounding whitespace",
		},
		{
			name: "status.url",
			objs: []client.Object{receiver("funnel", func(r *funnelv1.FunnelReceiver) {
				r.Spec.Auth.InsecureSkipAuth = true
				r.Status.URL = "https://funnel.example.com/webhooks/default/funnel"
			})},
			want: target{url: "https://funnel.example.com/webhooks/default/funnel", namespace: ns},
		},
		{
			name: "status.webhookPath is appended to a bare --url",
			objs: []client.Object{receiver("funnel", func(r *funnelv1.FunnelReceiver) {
				r.Spec.Auth.InsecureSkipAuth = true
				r.Status.WebhookPath = "/webhooks/default/funnel-from-status"
				r.Status.URL = "https://ignored.example.com/x"
			})},
			ov:   overrides{url: base + "/"},
			want: target{url: base + "/webhooks/default/funnel-from-status", namespace: ns},
		},
		{
			name:    "no URL anywhere",
			objs:    []client.Object{receiver("funnel", func(r *funnelv1.FunnelReceiver) { r.Spec.Auth.InsecureSkipAuth = true })},
			wantErr: "FunnelReceiver default/funnel has no status.url (the operator was not told its external address): pass --url with the receiver's address, e.g. --url http://127.0.0.1:8080",
		},
		{
			name:    "receiver not found",
			ov:      overrides{url: base},
			wantErr: `FunnelReceiver default/funnel not found (pick one with --receiver and -n): funnelreceivers.funnel.leasing.dev "funnel" not found`,
		},
		{
			name:    "token Secret not found",
			objs:    []client.Object{receiver("funnel", tokenAuth("funnel-receiver-token", ""))},
			ov:      overrides{url: base},
			wantErr: `FunnelReceiver default/funnel has no token Secret funnel-receiver-token: secrets "funnel-receiver-token" not found`,
		},
		{
			name:    "HMAC Secret without the key",
			objs:    []client.Object{receiver("funnel", hmacAuth("sig", "", "")), secret("sig", map[string]string{"other": "x"})},
			ov:      overrides{url: base},
			wantErr: `FunnelReceiver default/funnel: HMAC Secret sig has no non-empty key "key"`,
		},
		{
			name:     "no auth configured",
			objs:     []client.Object{receiver("funnel", nil)},
			ov:       overrides{url: base},
			want:     target{url: base + "/webhooks/default/funnel", namespace: ns},
			wantWarn: "refuses every request (503)",
		},
		{
			name: "--token without token auth",
			objs: []client.Object{receiver("funnel", func(r *funnelv1.FunnelReceiver) { r.Spec.Auth.InsecureSkipAuth = true })},
			ov:   overrides{url: base, token: ptr("t")},
			want: target{url: base + "/webhooks/default/funnel", namespace: ns,
				auth: send.Auth{TokenHeader: "Authorization", Token: "t"}},
			wantWarn: "has no spec.auth.token; sending --token in Authorization anyway",
		},
		{
			name: "format not accepted, not Ready",
			objs: []client.Object{receiver("funnel", func(r *funnelv1.FunnelReceiver) {
				r.Spec.Auth.InsecureSkipAuth = true
				r.Spec.Formats = []funnelv1.EventFormat{funnelv1.FormatClassic}
				r.Status.Conditions = []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, Reason: funnelv1.ReasonSuspended, Message: "spec.suspend is set"}}
			})},
			ov:       overrides{url: base, format: funnel.FormatV3},
			want:     target{url: base + "/webhooks/default/funnel", namespace: ns},
			wantWarn: "accepts only [Classic]; it will refuse a V3 body",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warn strings.Builder
			got, err := resolveReceiver(context.Background(), fakeClient(tt.objs...), types.NamespacedName{Namespace: ns, Name: "funnel"}, tt.ov, &warn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v\nwant one containing %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.url != tt.want.url || got.namespace != tt.want.namespace ||
				got.auth.TokenHeader != tt.want.auth.TokenHeader || got.auth.Token != tt.want.auth.Token ||
				got.auth.HMACHeader != tt.want.auth.HMACHeader || !bytes.Equal(got.auth.HMACKey, tt.want.auth.HMACKey) ||
				got.auth.HMACAlgorithm != tt.want.auth.HMACAlgorithm {
				t.Errorf("target = %+v\nwant     %+v", *got, tt.want)
			}
			if !strings.Contains(warn.String(), tt.wantWarn) || (tt.wantWarn == "" && warn.Len() > 0) {
				t.Errorf("warnings %q, want %q", warn.String(), tt.wantWarn)
			}
		})
	}
}

// cli runs the whole command line against objs and returns the exit code,
// stdout and stderr.
func cli(t *testing.T, objs []client.Object, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runWith(t, fakeClient(objs...), stdin, args...)
}

func TestSendOneEvent(t *testing.T) {
	rec := sendtest.NewReceiver(t, nil)
	objs := []client.Object{
		receiver("funnel", all(tokenAuth("tok", ""), hmacAuth("sig", "", funnelv1.HMACSHA512))),
		secret("tok", map[string]string{"token": "abc"}), secret("sig", map[string]string{"key": "k"}),
	}
	code, out, errOut := cli(t, objs, "", "send", "lease.move_in", "-n", ns, "--url", rec.URL)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	reqs := rec.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.Path != "/webhooks/default/funnel" {
		t.Errorf("path %s", req.Path)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer abc" {
		t.Errorf("Authorization %q", got)
	}
	if got, want := req.Header.Get("X-Funnel-Signature"), funnel.Signature(funnel.HMACSHA512, []byte("k"), req.Body); got != want {
		t.Errorf("X-Funnel-Signature %q, want %q", got, want)
	}
	env, err := funnel.Parse(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != funnel.TypeMoveIn || env.Format != funnel.FormatV3 {
		t.Errorf("sent %s %s, want lease.move_in V3", env.Type, env.Format)
	}
	name, _ := funnel.EventName("funnel", req.Body, time.Now())
	for _, want := range []string{"200 OK", funnel.AckBody, "FunnelEvent " + name + ": kubectl get fev " + name + " -n default"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSendQuietPrintsTheName(t *testing.T) {
	rec := sendtest.NewReceiver(t, nil)
	code, out, errOut := cli(t, nil, "", "send", "--receiver", "", "--url", rec.URL+"/webhooks/x/y", "-q", "--format", "partner", "renter.created")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	body := rec.Requests()[0].Body
	env, err := funnel.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if name, _ := funnel.EventName("y", body, time.Now()); out != name+"\n" || env.Type != "renter.created" {
		t.Errorf("output %q, want only the object name %s", out, name)
	}
}

func TestSendLoadAndExitStatus(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(http.ResponseWriter, *http.Request)
		wantCode int
		wantOut  []string
		wantErr  string
	}{
		{
			name:     "all acknowledged",
			wantCode: 0,
			wantOut:  []string{"20 requests (10 events × 2 copies)", "Acknowledged:", "200×20", "events/s", "p50"},
		},
		{
			name: "every third refused",
			answer: func() func(http.ResponseWriter, *http.Request) {
				var mu = make(chan struct{}, 1)
				n := 0
				return func(w http.ResponseWriter, _ *http.Request) {
					mu <- struct{}{}
					n++
					refuse := n%3 == 0
					<-mu
					if refuse {
						http.Error(w, "rate limited", http.StatusTooManyRequests)
						return
					}
					_, _ = io.WriteString(w, funnel.AckBody)
				}
			}(),
			wantCode: 1,
			wantOut:  []string{"200×14  429×6", "429 Too Many Requests: rate limited"},
			wantErr:  "error: 6 of 20 requests were not acknowledged",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := sendtest.NewReceiver(t, tt.answer)
			code, out, errOut := cli(t, nil, "", "send", "--receiver", "", "--url", rec.URL+"/webhooks/default/funnel",
				"--count", "10", "--duplicate", "2", "--concurrency", "3", "--token", "t")
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.wantCode, out, errOut)
			}
			if n := len(rec.Requests()); n != 20 {
				t.Errorf("%d requests, want 20", n)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q, want %q", errOut, tt.wantErr)
			}
		})
	}
}

func TestSendFile(t *testing.T) {
	body := "{\"event\":\"renter.status-change\",\"data\":{\"funnel_renter_id\":1,\"status\":\"Applicant\"}}\n"
	path := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--file", path}, {"-f", "-"}} {
		rec := sendtest.NewReceiver(t, nil)
		argv := append([]string{"send", "--receiver", "", "--url", rec.URL + "/webhooks/default/funnel", "--hmac-key", "k", "--count", "2"}, args...)
		code, out, errOut := cli(t, nil, body, argv...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		for _, r := range rec.Requests() {
			if string(r.Body) != body {
				t.Errorf("%v: sent %q, want the file verbatim", args, r.Body)
			}
			if got, want := r.Header.Get("X-Funnel-Signature"), funnel.Signature(funnel.HMACSHA256, []byte("k"), []byte(body)); got != want {
				t.Errorf("%v: signature %q, want %q", args, got, want)
			}
		}
		if n := len(rec.Requests()); n != 2 {
			t.Errorf("%v: %d requests, want 2", args, n)
		}
	}
}

func TestSendDryRunSeed(t *testing.T) {
	args := []string{"send", "appointment.updated", "--dry-run", "--count", "3", "--seed", "7"}
	code, a, errOut := cli(t, nil, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, b, _ := cli(t, nil, "", args...)
	if a != b {
		t.Errorf("--seed 7 gave different bodies:\n%s\n%s", a, b)
	}
	// One seed for two types must not give both the same ids.
	_, c, _ := cli(t, nil, "", "send", "lease.resident_move_in", "--dry-run", "--seed", "7")
	_, d, _ := cli(t, nil, "", "send", "quote.created", "--dry-run", "--seed", "7")
	envC, errC := funnel.Parse([]byte(c))
	envD, errD := funnel.Parse([]byte(d))
	if errC != nil || errD != nil || envC.ID == envD.ID {
		t.Errorf("--seed 7 gave two types the same id: %s %s (%v, %v)", c, d, errC, errD)
	}
	lines := strings.Split(strings.TrimSpace(a), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d bodies, want 3", len(lines))
	}
	for _, l := range lines {
		if env, err := funnel.Parse([]byte(l)); err != nil || env.Type != funnel.TypeAppointmentUpdated || env.Format != funnel.FormatPartnerV2 {
			t.Errorf("body %s: %v", l, err)
		}
	}
}

func TestSendUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"send", "no.such_type", "--dry-run"}, `unknown event type "no.such_type"`},
		{[]string{"send", "--format", "xml", "--dry-run"}, `--format "xml": want classic, v3 or partner`},
		{[]string{"send", "--count", "0", "--dry-run"}, "--count must be at least 1"},
		{[]string{"send", "--duplicate", "0", "--dry-run"}, "--duplicate must be at least 1"},
		{[]string{"send", "quote.created", "--file", "x.json"}, `TYPE "quote.created" and --file cannot be combined`},
		{[]string{"send", "--token", ""}, "--token must not be empty"},
		{[]string{"send", "--receiver", ""}, `--receiver "" needs --url`},
		{[]string{"send", "--receiver", "", "--url", "http://127.0.0.1:1"}, "has no path"},
		{[]string{"send", "-n", "default"}, `FunnelReceiver default/funnel not found`},
	}
	for _, tt := range tests {
		code, out, errOut := cli(t, nil, "", tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q (stdout %q)", tt.args, code, errOut, tt.wantErr, out)
		}
	}
	// Undocumented types go through with an explicit format.
	if code, out, errOut := cli(t, nil, "", "send", "no.such_type", "--format", "v3", "--dry-run"); code != 0 || !strings.Contains(out, `"event":"no.such_type"`) {
		t.Errorf("undocumented type with --format: exit %d, %s%s", code, out, errOut)
	}
}

func TestSendUnreachableFails(t *testing.T) {
	srv := httptestClosedURL(t)
	code, out, errOut := cli(t, nil, "", "send", "--receiver", "", "--url", srv+"/webhooks/default/funnel")
	if code != 1 || !strings.Contains(errOut, "the receiver did not acknowledge the event") || !strings.Contains(out, "no answer") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// httptestClosedURL returns the URL of a server that is no longer
// listening.
func httptestClosedURL(t *testing.T) string {
	srv := sendtest.NewReceiver(t, nil)
	u := srv.URL
	srv.Close()
	return u
}
