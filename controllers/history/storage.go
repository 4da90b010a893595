package history

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/duration"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/archive"
)

// Archive is what the history API reads: archive.Store.
type Archive interface {
	List(ctx context.Context, q archive.Query) ([]archive.Event, bool, error)
	Get(ctx context.Context, namespace, name string) (archive.Event, bool, error)
}

// maxPage bounds one list answer; kubectl asks for 500 at a time by default.
const maxPage = 1000

// resource is the archived events' resource, for errors.
var resource = historyv1.SchemeGroupVersion.WithResource("archivedevents").GroupResource()

// storage serves archivedevents: get, list and the table kubectl prints.
type storage struct {
	archive Archive
}

var (
	_ rest.Getter               = &storage{}
	_ rest.Lister               = &storage{}
	_ rest.Scoper               = &storage{}
	_ rest.ShortNamesProvider   = &storage{}
	_ rest.SingularNameProvider = &storage{}
)

func (s *storage) New() runtime.Object     { return &historyv1.ArchivedEvent{} }
func (s *storage) NewList() runtime.Object { return &historyv1.ArchivedEventList{} }
func (s *storage) Destroy()                {}
func (s *storage) NamespaceScoped() bool   { return true }
func (s *storage) GetSingularName() string { return "archivedevent" }
func (s *storage) ShortNames() []string    { return []string{"aev"} }

// Get returns the newest archived event of that name.
func (s *storage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	ev, found, err := s.archive.Get(ctx, ns, name)
	if err != nil {
		return nil, unavailable(ctx, err)
	}
	if !found {
		return nil, apierrors.NewNotFound(resource, name)
	}
	return toObject(ev), nil
}

// List runs the selectors as one SQL query and pages with an opaque continue token.
func (s *storage) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	q, err := queryOf(genericapirequest.NamespaceValue(ctx), opts)
	if errors.Is(err, errNothing) {
		return &historyv1.ArchivedEventList{Items: []historyv1.ArchivedEvent{}}, nil
	} else if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	events, more, err := s.archive.List(ctx, q)
	if err != nil {
		return nil, unavailable(ctx, err)
	}
	list := &historyv1.ArchivedEventList{Items: make([]historyv1.ArchivedEvent, 0, len(events))}
	for _, ev := range events {
		list.Items = append(list.Items, *toObject(ev))
	}
	if more {
		list.Continue = events[len(events)-1].Cursor().Encode()
	}
	return list, nil
}

// unavailable logs a database error and answers 503 without its details (which may
// name hosts and users).
func unavailable(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	ctrl.LoggerFrom(ctx).WithName("history").Error(err, "Reading the archive")
	return apierrors.NewServiceUnavailable("the history archive cannot be read right now")
}

// queryOf turns a list request into an archive query.
func queryOf(namespace string, opts *metainternalversion.ListOptions) (archive.Query, error) {
	q := archive.Query{Namespace: namespace, Limit: maxPage}
	if opts == nil {
		return q, nil
	}
	if opts.Limit > 0 && opts.Limit < maxPage {
		q.Limit = int(opts.Limit)
	}
	if opts.Continue != "" {
		c, err := archive.DecodeCursor(opts.Continue)
		if err != nil {
			return q, err
		}
		q.After = c
	}
	if opts.LabelSelector != nil && !opts.LabelSelector.Empty() {
		q.Labels = opts.LabelSelector
	}
	if opts.FieldSelector != nil {
		for _, r := range opts.FieldSelector.Requirements() {
			if err := applyField(&q, r); err != nil {
				return q, err
			}
		}
	}
	return q, nil
}

// errNothing says a query can match nothing.
var errNothing = errors.New("nothing matches")

// applyField adds one field selector requirement to q.
func applyField(q *archive.Query, r fields.Requirement) error {
	if r.Operator != selection.Equals && r.Operator != selection.DoubleEquals {
		return fmt.Errorf("field selector %s%s%s: only = is supported", r.Field, r.Operator, r.Value)
	}
	at := func() (time.Time, error) {
		t, err := time.Parse(time.RFC3339Nano, r.Value)
		if err != nil {
			return t, fmt.Errorf("field selector %s: %q is not an RFC 3339 time such as 2025-03-01T00:00:00Z", r.Field, r.Value)
		}
		return t, nil
	}
	var err error
	switch r.Field {
	case "metadata.name":
		q.Name = r.Value
	case "metadata.namespace":
		if q.Namespace != "" && q.Namespace != r.Value {
			return errNothing // not the namespace the request was authorized for
		}
		q.Namespace = r.Value
	case historyv1.FieldType:
		q.Type = r.Value
	case historyv1.FieldReceiver:
		q.Receiver = r.Value
	case historyv1.FieldPhase:
		q.Phase = r.Value
	case historyv1.FieldReceivedAfter:
		q.ReceivedAfter, err = at()
	case historyv1.FieldReceivedBefore:
		q.ReceivedBefore, err = at()
	default:
		return fmt.Errorf("field selector %s: not a field of archived events (%s)", r.Field, fieldNames)
	}
	return err
}

// fieldNames lists the selectable fields, for error messages.
var fieldNames = "metadata.name, metadata.namespace, " + historyv1.FieldType + ", " + historyv1.FieldReceiver + ", " +
	historyv1.FieldPhase + ", " + historyv1.FieldReceivedAfter + ", " + historyv1.FieldReceivedBefore

// fieldLabel accepts the selectable fields for the API machinery's field label check.
func fieldLabel(label, value string) (string, string, error) {
	switch label {
	case "metadata.name", "metadata.namespace", historyv1.FieldType, historyv1.FieldReceiver, historyv1.FieldPhase,
		historyv1.FieldReceivedAfter, historyv1.FieldReceivedBefore:
		return label, value, nil
	}
	return "", "", fmt.Errorf("field label %q not supported for archived events (%s)", label, fieldNames)
}

// toObject is an archived event as the API shows it.
func toObject(ev archive.Event) *historyv1.ArchivedEvent {
	return &historyv1.ArchivedEvent{
		TypeMeta: metav1.TypeMeta{APIVersion: historyv1.SchemeGroupVersion.String(), Kind: "ArchivedEvent"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ev.Name, Namespace: ev.Namespace, UID: ev.UID, Labels: ev.Labels,
			CreationTimestamp: metav1.NewTime(ev.CreatedAt),
			Annotations: map[string]string{
				historyv1.AnnotationVersion:    strconv.Itoa(ev.Version),
				historyv1.AnnotationArchivedAt: ev.ArchivedAt.UTC().Format(time.RFC3339),
			},
		},
		Spec:   ev.Spec,
		Status: ev.Status,
	}
}

// columns are those of kubectl get fev: the FunnelEvent CRD's printer columns.
var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The event's name"},
	{Name: "Type", Type: "string", Description: "spec.type"},
	{Name: "Phase", Type: "string", Description: "status.phase"},
	{Name: "Summary", Type: "string", Description: "status.summary"},
	{Name: "Occurred", Type: "date", Description: "spec.occurredAt"},
	{Name: "Attempts", Type: "integer", Priority: 1, Description: "status.attempts"},
	{Name: "Lease-Transaction", Type: "string", Priority: 1, Description: "the lease-transaction-id label"},
	{Name: "Community", Type: "string", Priority: 1, Description: "the community-id label"},
	{Name: "Unit", Type: "string", Priority: 1, Description: "the unit-id label"},
	{Name: "Client", Type: "string", Priority: 1, Description: "the client-id label"},
	{Name: "Renter", Type: "string", Priority: 1, Description: "the renter-id label"},
	{Name: "Age", Type: "date", Description: "metadata.creationTimestamp"},
}

// ConvertToTable renders events with the columns of kubectl get fev; dates are ages, as
// the API server renders a CRD's date columns.
func (s *storage) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{ColumnDefinitions: columns}
	var items []historyv1.ArchivedEvent
	switch o := obj.(type) {
	case *historyv1.ArchivedEvent:
		items = []historyv1.ArchivedEvent{*o}
	case *historyv1.ArchivedEventList:
		items = o.Items
		table.Continue = o.Continue
	default:
		return nil, fmt.Errorf("cannot show %T as a table", obj)
	}
	now := time.Now()
	age := func(t *metav1.Time) string {
		if t == nil || t.IsZero() {
			return "<none>"
		}
		return duration.HumanDuration(now.Sub(t.Time))
	}
	for i := range items {
		ev := &items[i]
		var occurred *metav1.Time
		if ev.Spec.OccurredAt != nil {
			occurred = &metav1.Time{Time: ev.Spec.OccurredAt.Time}
		}
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells: []any{ev.Name, ev.Spec.Type, string(ev.Status.Phase), ev.Status.Summary, age(occurred), int64(ev.Status.Attempts),
				ev.Labels[funnel.LabelLeaseTransactionID], ev.Labels[funnel.LabelCommunityID], ev.Labels[funnel.LabelUnitID],
				ev.Labels[funnel.LabelClientID], ev.Labels[funnel.LabelRenterID], age(&ev.CreationTimestamp)},
			Object: runtime.RawExtension{Object: ev},
		})
	}
	return table, nil
}
