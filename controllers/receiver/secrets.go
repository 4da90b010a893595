package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// The operator reads the Secrets FunnelReceivers name, by name: it neither lists nor
// watches Secrets.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// DefaultSecretRefresh is how often a receiver's Secret is read again: a rotated token
// applies, and the receiver's Ready condition follows a Secret created, changed or
// deleted, within this time.
const DefaultSecretRefresh = 10 * time.Second

// Secrets holds the Secrets that FunnelReceivers reference, and only those, so requests
// are checked without an API call. A Secret is read (get) when a receiver first needs
// it, then again every refresh for as long as a receiver references it, from the API
// server's watch cache; a change wakes the receivers that use it. It is a client.Reader
// of Secrets for Resolve, and runs on every replica (each one serves requests).
type Secrets struct {
	api       client.Reader
	receivers client.Reader
	refresh   time.Duration
	fetches   singleflight.Group

	mu      sync.RWMutex
	entries map[types.NamespacedName]secretEntry
	// queue is the FunnelReceiver controller's, once it runs (on the leader).
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// secretEntry is what a read of a Secret found: its data, or why there is none
// (NotFound, Forbidden).
type secretEntry struct {
	data map[string][]byte
	err  error
}

// NewSecrets reads Secrets with api (the operator's own, uncached reader) for the
// FunnelReceivers listed from receivers (the manager's cache); refresh is
// DefaultSecretRefresh when 0.
func NewSecrets(api, receivers client.Reader, refresh time.Duration) *Secrets {
	if refresh <= 0 {
		refresh = DefaultSecretRefresh
	}
	return &Secrets{api: api, receivers: receivers, refresh: refresh, entries: map[types.NamespacedName]secretEntry{}}
}

// Get fills obj, a *corev1.Secret, with the Secret's data as last read, reading it now if
// it has not been yet. A Secret that does not exist, or that the operator may not read,
// returns the API server's error.
func (s *Secrets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return fmt.Errorf("receiver.Secrets reads Secrets, not %T", obj)
	}
	s.mu.RLock()
	e, ok := s.entries[key]
	s.mu.RUnlock()
	if !ok {
		v, err, _ := s.fetches.Do(key.String(), func() (any, error) {
			e, err := s.read(ctx, key, nil)
			if err != nil {
				return nil, err
			}
			s.mu.Lock()
			s.entries[key] = e
			s.mu.Unlock()
			return e, nil
		})
		if err != nil {
			return err
		}
		e = v.(secretEntry)
	}
	if e.err != nil {
		return e.err
	}
	secret.ObjectMeta = metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}
	secret.Data = e.data // shared: readers never modify it
	return nil
}

// List is not supported: Secrets are read by name only.
func (s *Secrets) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("receiver.Secrets reads Secrets by name only")
}

// read gets one Secret; opts choose where from. NotFound and Forbidden are results to
// remember, anything else an error.
func (s *Secrets) read(ctx context.Context, key types.NamespacedName, opts *client.GetOptions) (secretEntry, error) {
	var secret corev1.Secret
	var err error
	if opts != nil {
		err = s.api.Get(ctx, key, &secret, opts)
	} else {
		err = s.api.Get(ctx, key, &secret)
	}
	switch {
	case err == nil:
		return secretEntry{data: secret.Data}, nil
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		return secretEntry{err: err}, nil
	default:
		return secretEntry{}, fmt.Errorf("reading Secret %s: %w", key, err)
	}
}

// Source wakes the FunnelReceiver controller for the receivers of a Secret that changed.
func (s *Secrets) Source() source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		s.mu.Lock()
		s.queue = q
		s.mu.Unlock()
		return nil
	})
}

// NeedLeaderElection is false: every replica answers requests with these Secrets.
func (s *Secrets) NeedLeaderElection() bool { return false }

// Start reads the Secrets in use again every refresh until ctx ends.
func (s *Secrets) Start(ctx context.Context) error {
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Refresh(ctx); err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "Reading the receivers' Secrets again")
			}
		}
	}
}

// Refresh reads again every Secret in use by a FunnelReceiver, forgets the others, and
// wakes the receivers of those that changed.
func (s *Secrets) Refresh(ctx context.Context) error {
	var list funnelv1.FunnelReceiverList
	if err := s.receivers.List(ctx, &list); err != nil {
		return fmt.Errorf("listing FunnelReceivers: %w", err)
	}
	users := map[types.NamespacedName][]types.NamespacedName{}
	for i := range list.Items {
		rcv := &list.Items[i]
		for _, use := range SecretUses(rcv) {
			key := types.NamespacedName{Namespace: rcv.Namespace, Name: use.Ref.Name}
			users[key] = append(users[key], client.ObjectKeyFromObject(rcv))
		}
	}

	s.mu.Lock()
	var held []types.NamespacedName
	for key := range s.entries {
		if _, used := users[key]; used {
			held = append(held, key)
		} else {
			delete(s.entries, key)
		}
	}
	s.mu.Unlock()

	// The watch cache answers as well as etcd for this, and costs the API server less.
	fromWatchCache := &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}}
	var errs []error
	for _, key := range held {
		e, err := s.read(ctx, key, fromWatchCache)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		old, still := s.entries[key]
		changed := still && !sameEntry(old, e)
		if still {
			s.entries[key] = e
		}
		q := s.queue
		s.mu.Unlock()
		if changed && q != nil {
			for _, rcv := range users[key] {
				q.Add(reconcile.Request{NamespacedName: rcv})
			}
		}
	}
	return errors.Join(errs...)
}

// sameEntry: the same data, or the same reason for none.
func sameEntry(a, b secretEntry) bool {
	if (a.err == nil) != (b.err == nil) {
		return false
	}
	if a.err != nil {
		return apierrors.ReasonForError(a.err) == apierrors.ReasonForError(b.err)
	}
	return maps.EqualFunc(a.data, b.data, bytes.Equal)
}
