package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The operator's leader election Lease (cmd/manager: LeaderElectionID), in the namespace
// the bench passes as --leader-election-namespace.
const (
	leaseName = "funnel-operator.funnel.leasing.dev"
	// nsOperator holds the Lease; it is also in --namespaces, so that list is never empty.
	nsOperator = "bench-operator"
	// benchIdentity is the holderIdentity the bench writes when it holds the Lease.
	benchIdentity = "funnel-bench"
	// leaseSeconds and leaseRenew: the Lease the bench holds lasts 15 s and is renewed
	// every 2 s, like controller-runtime's own defaults.
	leaseSeconds = 15
	leaseRenew   = 2 * time.Second
)

// leaseHolder holds the operator's leader election Lease for the bench, so that the
// operator is a follower: its webhook receiver serves (it runs on every replica), its
// controllers wait — exactly a non-leader replica of the 2-replica Deployment.
type leaseHolder struct {
	c client.Client

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	// lost is set when a renewal found the Lease held by someone else.
	lost error
}

// leaseFree reports whether a Lease record can be taken by me at now: nobody holds it,
// I do, or its holder let it expire.
func leaseFree(spec coordinationv1.LeaseSpec, me string, now time.Time) bool {
	holder := ""
	if spec.HolderIdentity != nil {
		holder = *spec.HolderIdentity
	}
	if holder == "" || holder == me {
		return true
	}
	if spec.RenewTime == nil || spec.LeaseDurationSeconds == nil {
		return true
	}
	return spec.RenewTime.Add(time.Duration(*spec.LeaseDurationSeconds) * time.Second).Before(now)
}

// hold takes the Lease (waiting up to timeout for its holder to release it or let it
// expire) and renews it in the background until release.
func (l *leaseHolder) hold(ctx context.Context, timeout time.Duration) error {
	l.mu.Lock()
	running := l.cancel != nil
	l.mu.Unlock()
	if running {
		return nil
	}
	key := types.NamespacedName{Namespace: nsOperator, Name: leaseName}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := l.take(ctx, key)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Lease %s is held by another holder after %s", key, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	l.mu.Lock()
	l.cancel, l.done, l.lost = cancel, done, nil
	l.mu.Unlock()
	go func() {
		defer close(done)
		l.renew(rctx, key)
	}()
	return nil
}

// take creates the Lease, or updates it when it is free; false when someone holds it.
func (l *leaseHolder) take(ctx context.Context, key types.NamespacedName) (bool, error) {
	now := metav1.NewMicroTime(time.Now())
	var lease coordinationv1.Lease
	err := l.c.Get(ctx, key, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptrTo(benchIdentity), LeaseDurationSeconds: ptrTo(int32(leaseSeconds)),
				AcquireTime: &now, RenewTime: &now},
		}
		err = l.c.Create(ctx, &lease)
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return err == nil, wrapLease(err)
	}
	if err != nil {
		return false, wrapLease(err)
	}
	if !leaseFree(lease.Spec, benchIdentity, now.Time) {
		return false, nil
	}
	transitions := int32(0)
	if lease.Spec.LeaseTransitions != nil {
		transitions = *lease.Spec.LeaseTransitions
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != benchIdentity {
		transitions++
	}
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = ptrTo(benchIdentity), ptrTo(int32(leaseSeconds))
	lease.Spec.AcquireTime, lease.Spec.RenewTime, lease.Spec.LeaseTransitions = &now, &now, &transitions
	err = l.c.Update(ctx, &lease)
	if apierrors.IsConflict(err) {
		return false, nil
	}
	return err == nil, wrapLease(err)
}

// renew moves renewTime forward every leaseRenew until ctx ends.
func (l *leaseHolder) renew(ctx context.Context, key types.NamespacedName) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(leaseRenew):
		}
		var lease coordinationv1.Lease
		err := l.c.Get(ctx, key, &lease)
		if err == nil && (lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != benchIdentity) {
			holder := "nobody"
			if lease.Spec.HolderIdentity != nil {
				holder = *lease.Spec.HolderIdentity
			}
			l.setLost(fmt.Errorf("the Lease %s went to %s while the bench held it", key, holder))
			return
		}
		if err == nil {
			lease.Spec.RenewTime = ptrTo(metav1.NewMicroTime(time.Now()))
			err = l.c.Update(ctx, &lease)
		}
		if err != nil && ctx.Err() == nil {
			logf("renewing the Lease %s: %v", key, err)
		}
	}
}

func (l *leaseHolder) setLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
	}
}

// release stops the renewals and deletes the Lease, so that the waiting operator takes it
// (within its retry period, 2 s) and becomes the leader. It returns an error when the
// bench lost the Lease meanwhile (the operator may then have processed while it should not).
func (l *leaseHolder) release(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	lost := l.lost
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: nsOperator, Name: leaseName}}
	err := client.IgnoreNotFound(l.c.Delete(context.WithoutCancel(ctx), lease))
	return errors.Join(lost, wrapLease(err))
}

// stop ends the renewals without releasing (the end of an aborted run).
func (l *leaseHolder) stop() {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// holder returns the Lease's holderIdentity ("" when there is no Lease or no holder).
func (l *leaseHolder) holder(ctx context.Context) (string, error) {
	var lease coordinationv1.Lease
	err := l.c.Get(ctx, types.NamespacedName{Namespace: nsOperator, Name: leaseName}, &lease)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", wrapLease(err)
	}
	if lease.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *lease.Spec.HolderIdentity, nil
}

func wrapLease(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("the leader election Lease %s/%s: %w", nsOperator, leaseName, err)
}

// follow restarts the operator as a follower: stopped (it releases the Lease on the way
// out), the bench takes the Lease, the operator starts again and waits for it while its
// receiver serves. A leader cannot be demoted in place: controller-runtime exits when it
// loses its Lease.
func (b *bench) follow(ctx context.Context) error {
	b.op.stop()
	if err := b.lease.hold(ctx, 60*time.Second); err != nil {
		return err
	}
	if err := b.op.Start(); err != nil {
		return err
	}
	return b.op.waitReady(ctx)
}

// lead releases the Lease the bench holds and waits (up to 30 s) until the operator holds
// it: its controllers then start.
func (b *bench) lead(ctx context.Context) error {
	if err := b.lease.release(ctx); err != nil {
		b.note("%v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := b.lease.holder(ctx)
		if err != nil {
			return err
		}
		if h != "" && h != benchIdentity {
			return nil
		}
		if err := b.op.Alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("the operator did not take the leader election Lease within 30 s of its release")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
