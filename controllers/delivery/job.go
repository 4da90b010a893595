package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// The operator follows the Jobs of its deliveries from a cache scoped to
// LabelSubscription; it creates them as the subscription's ServiceAccount, never itself.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=list;watch

// Labels on the Jobs the operator creates. The Job cache is scoped to LabelSubscription,
// so the operator never caches anybody else's Jobs.
const (
	LabelSubscription = "funnel.leasing.dev/subscription"
	LabelEvent        = "funnel.leasing.dev/event"
)

// JobName is the Job of an attempt of an event's delivery: deterministic, so a retried
// pass or another leader adopts the Job instead of creating a second one; distinct per
// attempt, so a retry runs a new Job; and distinct per replay (the count of replays, not
// the annotation's value, which may be reused), so a replay runs the Job again. At most
// 63 characters (it becomes a label on the Pods).
func JobName(ev *funnelv1.FunnelEvent, subscription string, deadLetter bool, attempt int32) string {
	parts := []string{ev.Namespace, ev.Name, subscription, ev.Status.ObservedReplay, strconv.FormatBool(deadLetter)}
	// Neither part was in the name before replays and retries of Jobs were counted: a Job
	// running across the upgrade keeps its name.
	if ev.Status.Replays > 0 {
		parts = append(parts, "replay", strconv.Itoa(int(ev.Status.Replays)))
	}
	if attempt > 1 {
		parts = append(parts, "attempt", strconv.Itoa(int(attempt)))
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	suffix := hex.EncodeToString(sum[:])[:10]
	prefix := ev.Name
	if deadLetter {
		prefix = "dl-" + prefix
	}
	if len(prefix) > 52 {
		prefix = strings.TrimRight(prefix[:52], "-.")
	}
	return prefix + "-" + suffix
}

// jobAction runs each attempt as a Job, created as the subscription's ServiceAccount.
type jobAction struct {
	router     *Router
	ev         *funnelv1.FunnelEvent
	sub        *funnelv1.FunnelSubscription
	spec       *funnelv1.JobAction
	deadLetter bool
	// env is added to the event's variables (a dead letter's failure context).
	env []corev1.EnvVar
}

func (j jobAction) attempt(ctx context.Context, s *funnelv1.AttemptStatus) attempt {
	number := s.Attempts
	if s.Phase != funnelv1.DeliveryRunning {
		number++
	}
	name := JobName(j.ev, j.sub.Name, j.deadLetter, number)
	a := j.run(ctx, s, name)
	if !a.running && !j.deadLetter {
		j.router.jobSlots.release(j.sub, name) // not created, or ended: its maxInFlight slot is free
	}
	return a
}

// run makes or follows the attempt's Job, name.
func (j jobAction) run(ctx context.Context, s *funnelv1.AttemptStatus, name string) attempt {
	r := j.router
	// The pass that creates the Job is its parent in the trace.
	env := append(slices.Clip(j.env), tracing.JobEnv(ctx)...)
	job, err := newJob(j.ev, j.sub.Name, j.spec, name, env, r.Scheme)
	if err != nil {
		return attempt{err: trim(err.Error())}
	}
	creator, err := r.Identity.For(j.sub)
	if err != nil {
		return attempt{err: trim("creating Job " + job.Name + ": " + err.Error()), job: job.Name}
	}
	// Whether this Job was created already: the status records it running.
	started := s.Phase == funnelv1.DeliveryRunning && s.Job == job.Name
	return runJob(ctx, r.Client, r.APIReader, creator, j.ev, job, started)
}

// stop deletes the attempt's Job, and its Pods with it.
func (j jobAction) stop(ctx context.Context, a attempt) (string, bool) {
	if err := j.router.stopJob(ctx, j.sub, a.job); err != nil {
		return fmt.Sprintf("Job %s ran; stopping it failed: %s", a.job, err), true
	}
	return fmt.Sprintf("Job %s ran; it was stopped", a.job), true
}

// newJob builds the Job of a Job action: the template, our labels, the FunnelEvent as
// controlling owner (deleting the event deletes its Jobs), and the event in every
// container's environment. The owner reference does not block the owner's deletion:
// that would need "update" on funnelevents/finalizers from whoever creates the Job (the
// OwnerReferencesPermissionEnforcement admission plugin), i.e. from every subscription's
// ServiceAccount, and only foreground deletion of an event would wait for it.
func newJob(ev *funnelv1.FunnelEvent, subscription string, a *funnelv1.JobAction, name string, extraEnv []corev1.EnvVar, scheme *runtime.Scheme) (*batchv1.Job, error) {
	job := &batchv1.Job{
		ObjectMeta: *a.Template.ObjectMeta.DeepCopy(),
		Spec:       *a.Template.Spec.DeepCopy(),
	}
	job.Name, job.Namespace, job.GenerateName = name, ev.Namespace, ""
	if job.Spec.TTLSecondsAfterFinished == nil {
		job.Spec.TTLSecondsAfterFinished = ptr.To(funnelv1.DefaultJobTTLSecondsAfterFinished)
	}
	if job.Labels == nil {
		job.Labels = map[string]string{}
	}
	job.Labels[LabelSubscription] = funnel.LabelValue(subscription)
	job.Labels[LabelEvent] = funnel.LabelValue(ev.Name)
	job.Labels[funnelv1.LabelEventType] = ev.Labels[funnelv1.LabelEventType]
	if err := controllerutil.SetControllerReference(ev, job, scheme, controllerutil.WithBlockOwnerDeletion(false)); err != nil {
		return nil, fmt.Errorf("owning Job %s: %w", name, err)
	}
	env := append([]corev1.EnvVar{
		{Name: "FUNNEL_EVENT_NAME", Value: ev.Name},
		{Name: "FUNNEL_EVENT_NAMESPACE", Value: ev.Namespace},
		{Name: "FUNNEL_EVENT_ID", Value: ev.Spec.EventID},
		{Name: "FUNNEL_EVENT_TYPE", Value: ev.Spec.Type},
		{Name: "FUNNEL_EVENT_DATA", Value: string(dataOf(ev))},
	}, extraEnv...)
	pod := &job.Spec.Template.Spec
	for i := range pod.InitContainers {
		pod.InitContainers[i].Env = append(pod.InitContainers[i].Env, env...)
	}
	for i := range pod.Containers {
		pod.Containers[i].Env = append(pod.Containers[i].Env, env...)
	}
	return job, nil
}

// runJob creates the delivery's Job with creator (the subscription's ServiceAccount), or
// adopts it, and reports its state from its conditions. The Job is looked for in the
// operator's Job cache, and, when the status records it as created (started), in the API
// server too before it is called gone: a Job deleted before its outcome was recorded
// (ttlSecondsAfterFinished, a person) may have done its work, so it is reported as a
// failure and never silently created and run a second time.
func runJob(ctx context.Context, cache, api client.Reader, creator client.Client, ev *funnelv1.FunnelEvent, job *batchv1.Job, started bool) attempt {
	var existing batchv1.Job
	key := types.NamespacedName{Namespace: job.Namespace, Name: job.Name}
	err := cache.Get(ctx, key, &existing)
	if apierrors.IsNotFound(err) && started {
		err = api.Get(ctx, key, &existing)
		if apierrors.IsNotFound(err) {
			return attempt{job: job.Name, err: "Job " + job.Name + " was deleted before its outcome was recorded; " +
				"it is not run again (replay the event to run it again)"}
		}
	}
	if apierrors.IsNotFound(err) {
		if err := creator.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
			// Forbidden is retried: a RoleBinding may be on its way, a quota may free up.
			retryable := !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err)
			return attempt{retryable: retryable, err: trim("creating Job " + job.Name + ": " + err.Error()), job: job.Name}
		}
		return attempt{running: true, job: job.Name}
	}
	if err != nil {
		return attempt{retryable: true, err: trim("reading Job " + job.Name + ": " + err.Error()), job: job.Name}
	}
	if !metav1.IsControlledBy(&existing, ev) {
		return attempt{err: fmt.Sprintf("Job %s exists and is not owned by this event", job.Name), job: job.Name}
	}
	for _, cond := range existing.Status.Conditions {
		if cond.Status != corev1.ConditionTrue {
			continue
		}
		switch cond.Type {
		case batchv1.JobComplete:
			return attempt{succeeded: true, job: job.Name}
		case batchv1.JobFailed:
			// A failed attempt like any other: retried per policy with a new Job.
			return attempt{retryable: true, err: trim(fmt.Sprintf("Job %s failed: %s: %s", job.Name, cond.Reason, cond.Message)), job: job.Name}
		}
	}
	return attempt{running: true, job: job.Name}
}

// stopJob deletes a delivery's Job, and its Pods with it, as the subscription's
// ServiceAccount.
func (r *Router) stopJob(ctx context.Context, sub *funnelv1.FunnelSubscription, name string) error {
	c, err := r.Identity.For(sub)
	if err != nil {
		return err
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: sub.Namespace, Name: name}}
	if err := c.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Job %s: %w", name, err)
	}
	return nil
}
