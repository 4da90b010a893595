package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// scriptedAction is an action whose attempt is what the test says.
type scriptedAction struct {
	outcome attempt
	// stoppable: a Job, which the timeout stops; else an HTTP call, which ends by itself.
	stoppable bool
	calls     int
	stopped   bool
}

func (a *scriptedAction) attempt(context.Context, *funnelv1.AttemptStatus) attempt {
	a.calls++
	return a.outcome
}

func (a *scriptedAction) stop(_ context.Context, at attempt) (string, bool) {
	if !a.stoppable {
		return "", false
	}
	a.stopped = true
	return "Job " + at.job + " ran; it was stopped", true
}

// TestStep is the attempt state machine every delivery and dead letter goes through,
// on a fixed clock: each row is the status before, what the action reports, and the
// status after.
func TestStep(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return metaTime(now.Add(d)) }
	pending := func(attempts int32) funnelv1.AttemptStatus {
		return funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: attempts}
	}
	running := func(attempts int32, job string) funnelv1.AttemptStatus {
		return funnelv1.AttemptStatus{Phase: funnelv1.DeliveryRunning, Attempts: attempts, Job: job, LastAttemptTime: at(-time.Minute)}
	}
	answer := func(code int32, retryable bool, err string) attempt {
		return attempt{code: code, retryable: retryable, err: err, succeeded: code >= 200 && code < 300, at: now, took: time.Millisecond}
	}
	pol := policyOf(funnelv1.DeliveryPolicy{}) // 5 retries, 1s doubling, at most 5m
	for _, tc := range []struct {
		name string
		// before is the status the pass starts from.
		before funnelv1.AttemptStatus
		// got is what the action reports; noCall: the action must not be asked.
		got    attempt
		noCall bool
		// job: the action is a Job action (stoppable).
		job bool
		// deadline, relative to now; 0: no delivery timeout.
		deadline time.Duration
		// want is the status after (CompletionTime and LastAttemptTime are checked when set).
		want       funnelv1.AttemptStatus
		transition transition
		wait       time.Duration
		settling   bool
		stopped    bool
		errHas     string
	}{
		{name: "2xx succeeds", before: pending(0), got: answer(200, false, ""),
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliverySucceeded, Attempts: 1, ResponseCode: 200, LastAttemptTime: at(0), CompletionTime: at(0)}, transition: succeeded},
		{name: "503 retries after the backoff", before: pending(0), got: answer(503, true, "HTTP 503 Service Unavailable"),
			want:       funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, ResponseCode: 503, LastError: "HTTP 503 Service Unavailable", NextAttemptTime: at(time.Second), LastAttemptTime: at(0)},
			transition: retrying, wait: time.Second},
		{name: "the third 500 waits 4s", before: pending(2), got: answer(500, true, "HTTP 500 Internal Server Error"),
			want:       funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 3, ResponseCode: 500, LastError: "HTTP 500 Internal Server Error", NextAttemptTime: at(4 * time.Second)},
			transition: retrying, wait: 4 * time.Second},
		{name: "429 with a longer Retry-After waits for it", before: pending(0), got: func() attempt {
			a := answer(429, true, "HTTP 429 Too Many Requests")
			a.retryAfter = 30 * time.Second
			return a
		}(), want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, ResponseCode: 429, LastError: "HTTP 429 Too Many Requests", NextAttemptTime: at(30 * time.Second)},
			transition: retrying, wait: 30 * time.Second},
		{name: "a Retry-After past maxBackoff is capped", before: pending(0), got: func() attempt {
			a := answer(503, true, "HTTP 503 Service Unavailable")
			a.retryAfter = 24 * time.Hour
			return a
		}(), want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, ResponseCode: 503, LastError: "HTTP 503 Service Unavailable", NextAttemptTime: at(5 * time.Minute)},
			transition: retrying, wait: 5 * time.Minute},
		{name: "408 with a shorter Retry-After keeps the backoff", before: pending(2), got: func() attempt {
			a := answer(408, true, "HTTP 408 Request Timeout")
			a.retryAfter = time.Second
			return a
		}(), want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 3, ResponseCode: 408, LastError: "HTTP 408 Request Timeout", NextAttemptTime: at(4 * time.Second)},
			transition: retrying, wait: 4 * time.Second},
		{name: "a connection error retries", before: pending(0), got: answer(0, true, "connection refused"),
			want:       funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, LastError: "connection refused", NextAttemptTime: at(time.Second)},
			transition: retrying, wait: time.Second},
		{name: "no answer within the request timeout retries", before: pending(1), got: answer(0, true, "no answer within 10s"),
			want:       funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 2, LastError: "no answer within 10s", NextAttemptTime: at(2 * time.Second)},
			transition: retrying, wait: 2 * time.Second},
		{name: "a permanent 4xx fails at once", before: pending(0), got: answer(400, false, "HTTP 400 Bad Request"),
			want:       funnelv1.AttemptStatus{Phase: funnelv1.DeliveryFailed, Attempts: 1, ResponseCode: 400, LastError: "HTTP 400 Bad Request", CompletionTime: at(0)},
			transition: failed},
		{name: "retries exhausted fail (and dead-letter)", before: pending(5), got: answer(503, true, "HTTP 503 Service Unavailable"),
			want:       funnelv1.AttemptStatus{Phase: funnelv1.DeliveryFailed, Attempts: 6, ResponseCode: 503, LastError: "HTTP 503 Service Unavailable", CompletionTime: at(0)},
			transition: failed},
		{name: "a retry not due yet waits, without an attempt",
			before: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, NextAttemptTime: at(10 * time.Second)}, noCall: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, NextAttemptTime: at(10 * time.Second)}, wait: 10 * time.Second},
		{name: "an HTTP attempt handed over just now settles", before: pending(0), got: attempt{running: true, submitted: now.Add(-time.Second)},
			want: pending(0), wait: DefaultSettleTime - time.Second, settling: true},
		{name: "an HTTP attempt under way past the settle time is Running since it was handed over", before: pending(0),
			got:  attempt{running: true, submitted: now.Add(-10 * time.Second)},
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryRunning, Attempts: 1, LastAttemptTime: at(-10 * time.Second)}, wait: httpRecheck},
		{name: "a Job started is Running", before: pending(0), got: attempt{running: true, job: "j1"}, job: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryRunning, Attempts: 1, Job: "j1", LastAttemptTime: at(0)}, wait: jobRecheck},
		{name: "a Job still running is the same attempt", before: running(1, "j1"), got: attempt{running: true, job: "j1"}, job: true,
			want: running(1, "j1"), wait: jobRecheck},
		{name: "a Job that completed succeeds", before: running(1, "j1"), got: attempt{succeeded: true, job: "j1"}, job: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliverySucceeded, Attempts: 1, Job: "j1", CompletionTime: at(0), LastAttemptTime: at(-time.Minute)}, transition: succeeded},
		{name: "a Job that failed is a failed attempt, retried", before: running(1, "j1"),
			got: attempt{retryable: true, job: "j1", err: "Job j1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit"}, job: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 1, Job: "j1", NextAttemptTime: at(time.Second),
				LastError: "Job j1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit"}, transition: retrying, wait: time.Second},
		{name: "a Job gone before its outcome was recorded fails, not run again", before: running(1, "j1"),
			got: attempt{job: "j1", err: "Job j1 was deleted before its outcome was recorded"}, job: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryFailed, Attempts: 1, Job: "j1", CompletionTime: at(0),
				LastError: "Job j1 was deleted before its outcome was recorded"}, transition: failed},
		{name: "the delivery timeout passed: no attempt", deadline: -time.Second,
			before: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending, Attempts: 2, LastError: "HTTP 503 Service Unavailable"}, noCall: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryFailed, Attempts: 2, CompletionTime: at(0)}, transition: failed,
			errHas: "delivery timeout of 1m0s exceeded; last error: HTTP 503"},
		{name: "a Job that completed before a late pass succeeds despite the timeout", deadline: -time.Second, before: running(1, "j1"),
			got: attempt{succeeded: true, job: "j1"}, job: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliverySucceeded, Attempts: 1, Job: "j1", CompletionTime: at(0)}, transition: succeeded},
		{name: "a Job still running at the timeout is stopped and fails", deadline: -time.Second, before: running(1, "j1"),
			got: attempt{running: true, job: "j1"}, job: true, stopped: true,
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryFailed, Attempts: 1, Job: "j1", CompletionTime: at(0)}, transition: failed,
			errHas: "delivery timeout of 1m0s exceeded while Job j1 ran; it was stopped"},
		{name: "an HTTP call under way at the timeout ends by itself", deadline: -time.Second, before: running(1, ""),
			got: attempt{running: true, submitted: now.Add(-time.Minute)}, want: running(1, ""), wait: httpRecheck},
		{name: "a retry the timeout would overtake fails now", deadline: 500 * time.Millisecond, before: pending(0),
			got:  answer(503, true, "HTTP 503 Service Unavailable"),
			want: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryFailed, Attempts: 1, ResponseCode: 503, CompletionTime: at(0)}, transition: failed,
			errHas: "delivery timeout of 1m0s would pass before the next retry; last error: HTTP 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Router{}
			act := &scriptedAction{outcome: tc.got, stoppable: tc.job}
			s := tc.before
			seq := sequence{status: &s, action: act, retries: pol.retries, pol: pol, metric: "ns/sub"}
			if tc.deadline != 0 {
				seq.pol.timeout = time.Minute
				seq.deadline = now.Add(tc.deadline)
			}
			st, tr := r.step(context.Background(), seq, now)
			if (act.calls == 0) != tc.noCall {
				t.Errorf("the action was asked %d times", act.calls)
			}
			if act.stopped != tc.stopped {
				t.Errorf("stopped = %v", act.stopped)
			}
			if tr != tc.transition || st.wait != tc.wait || st.settling != tc.settling {
				t.Errorf("transition %v wait %v settling %v; want %v %v %v", tr, st.wait, st.settling, tc.transition, tc.wait, tc.settling)
			}
			if tc.errHas != "" {
				if !strings.Contains(s.LastError, tc.errHas) {
					t.Errorf("lastError %q, want it to contain %q", s.LastError, tc.errHas)
				}
				s.LastError = ""
			}
			if tc.want.LastAttemptTime == nil {
				s.LastAttemptTime = nil
			}
			if !timesEqual(s.NextAttemptTime, tc.want.NextAttemptTime) || !timesEqual(s.CompletionTime, tc.want.CompletionTime) ||
				!timesEqual(s.LastAttemptTime, tc.want.LastAttemptTime) {
				t.Errorf("times: next %v completion %v last %v; want %v %v %v", s.NextAttemptTime, s.CompletionTime, s.LastAttemptTime,
					tc.want.NextAttemptTime, tc.want.CompletionTime, tc.want.LastAttemptTime)
			}
			s.NextAttemptTime, s.CompletionTime, s.LastAttemptTime = nil, nil, nil
			tc.want.NextAttemptTime, tc.want.CompletionTime, tc.want.LastAttemptTime = nil, nil, nil
			if s != tc.want {
				t.Errorf("status\n got %+v\nwant %+v", s, tc.want)
			}
		})
	}
}

func timesEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// TestRunJob: how a Job action's attempt stands, from the Job the operator finds.
func TestRunJob(t *testing.T) {
	scheme := testenv.Scheme()
	ev := exampleEvent(t, "v3-lease.move_in.json")
	ev.UID = "uid-1"
	spec := &funnelv1.JobAction{Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1"}}}}}}}
	name := JobName(ev, "pms", false, 1)
	withCondition := func(typ batchv1.JobConditionType, reason, msg string) func(*batchv1.Job) {
		return func(j *batchv1.Job) {
			j.Status.Conditions = []batchv1.JobCondition{{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg}}
		}
	}
	for _, tc := range []struct {
		name string
		// existing: how the Job stands in the API server (nil: there is none).
		existing func(*batchv1.Job)
		// inCache: the operator's cache has the Job too.
		inCache bool
		started bool
		want    attempt
		created bool
	}{
		{name: "none yet: created, running", want: attempt{running: true, job: name}, created: true},
		{name: "running", existing: func(*batchv1.Job) {}, inCache: true, started: true, want: attempt{running: true, job: name}},
		{name: "complete", existing: withCondition(batchv1.JobComplete, "", ""), inCache: true, started: true, want: attempt{succeeded: true, job: name}},
		{name: "failed: a failed attempt, retryable, with the Job's reason", existing: withCondition(batchv1.JobFailed, "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
			inCache: true, started: true, want: attempt{retryable: true, job: name, err: "Job " + name + " failed: BackoffLimitExceeded: Job has reached the specified backoff limit"}},
		{name: "not in the cache yet, in the API server: adopted", existing: func(*batchv1.Job) {}, started: true, want: attempt{running: true, job: name}},
		{name: "started and gone: reported, not created again", started: true,
			want: attempt{job: name, err: "Job " + name + " was deleted before its outcome was recorded; it is not run again (replay the event to run it again)"}},
		{name: "somebody else's Job of that name", existing: func(j *batchv1.Job) { j.OwnerReferences = nil }, inCache: true,
			want: attempt{job: name, err: "Job " + name + " exists and is not owned by this event"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job, err := newJob(ev, "pms", spec, name, nil, scheme)
			if err != nil {
				t.Fatal(err)
			}
			api, cache := fake.NewClientBuilder().WithScheme(scheme).Build(), fake.NewClientBuilder().WithScheme(scheme).Build()
			if tc.existing != nil {
				j := job.DeepCopy()
				tc.existing(j)
				stores := []client.Client{api}
				if tc.inCache {
					stores = append(stores, cache)
				}
				for _, c := range stores {
					if err := c.Create(context.Background(), j.DeepCopy()); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := runJob(context.Background(), cache, api, api, ev, job, tc.started)
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			var jobs batchv1.JobList
			if err := api.List(context.Background(), &jobs); err != nil {
				t.Fatal(err)
			}
			if created := len(jobs.Items) == 1 && tc.existing == nil; created != tc.created {
				t.Errorf("created = %v (%d Jobs)", created, len(jobs.Items))
			}
		})
	}
}
