package archive

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Query selects archived events; zero fields select everything. Results come in receipt
// order (then uid), so a page ends at a cursor the next page starts after.
type Query struct {
	// Namespace; all when empty.
	Namespace string
	// Name, Type, Receiver and Phase must equal when set.
	Name, Type, Receiver, Phase string
	// TypePatterns, when set, are a subscription's type patterns: exact types, prefixes
	// ("lease_transaction.*") or "*"; the type must match one.
	TypePatterns []string
	// Labels is a Kubernetes label selector; nil selects everything.
	Labels labels.Selector
	// ReceivedAfter (inclusive) and ReceivedBefore (exclusive) bound spec.receivedAt.
	ReceivedAfter, ReceivedBefore time.Time
	// Limit is the page size; 0 for no limit.
	Limit int
	// After is the cursor of the last event of the previous page.
	After *Cursor
}

// Cursor is a position in receipt order.
type Cursor struct {
	ReceivedAt time.Time `json:"r"`
	UID        types.UID `json:"u"`
}

// Encode makes a cursor an opaque continue token.
func (c Cursor) Encode() string {
	b, _ := json.Marshal(c) // two plain fields: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a continue token.
func DecodeCursor(token string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	var c Cursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.UID == "" {
		return nil, errors.New("the continue token is not one this server made")
	}
	return &c, nil
}

// Event is an archived event as List and Get return it.
type Event struct {
	UID        types.UID
	Namespace  string
	Name       string
	Labels     map[string]string
	CreatedAt  time.Time
	Spec       funnelv1.FunnelEventSpec
	Status     funnelv1.FunnelEventStatus
	Version    int
	ArchivedAt time.Time
	receivedAt time.Time
}

// Cursor is the event's position, for the page that ends with it.
func (e Event) Cursor() Cursor { return Cursor{ReceivedAt: e.receivedAt, UID: e.UID} }

// List returns the events q selects, and whether more follow the page.
func (s *Store) List(ctx context.Context, q Query) ([]Event, bool, error) {
	sql, args, err := listSQL(q)
	if err != nil {
		return nil, false, err
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("querying the archive: %w", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, false, fmt.Errorf("reading archived events: %w", err)
	}
	more := q.Limit > 0 && len(events) > q.Limit
	if more {
		events = events[:q.Limit]
	}
	return events, more, nil
}

// Get returns the newest archived event of that name (a name is used again only when an
// event was deleted and Funnel sent it again), or false.
func (s *Store) Get(ctx context.Context, namespace, name string) (Event, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM funnel_events
		WHERE namespace = $1 AND name = $2 ORDER BY received_at DESC, uid DESC LIMIT 1`, namespace, name)
	if err != nil {
		return Event{}, false, fmt.Errorf("querying the archive: %w", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return Event{}, false, fmt.Errorf("reading an archived event: %w", err)
	}
	if len(events) == 0 {
		return Event{}, false, nil
	}
	return events[0], true, nil
}

const eventColumns = `uid::text, namespace, name, labels, created_at, received_at, spec, status, version, archived_at`

func scanEvent(row pgx.CollectableRow) (Event, error) {
	var e Event
	var uid string
	var spec, status []byte
	if err := row.Scan(&uid, &e.Namespace, &e.Name, &e.Labels, &e.CreatedAt, &e.receivedAt, &spec, &status, &e.Version, &e.ArchivedAt); err != nil {
		return e, err
	}
	e.UID = types.UID(uid)
	if err := json.Unmarshal(spec, &e.Spec); err != nil {
		return e, fmt.Errorf("decoding the spec of %s/%s: %w", e.Namespace, e.Name, err)
	}
	if err := json.Unmarshal(status, &e.Status); err != nil {
		return e, fmt.Errorf("decoding the status of %s/%s: %w", e.Namespace, e.Name, err)
	}
	return e, nil
}

// listSQL is the query for q: every condition a column or jsonb test the indexes serve
// (namespace and receipt order, type, the labels' GIN index), values always parameters.
func listSQL(q Query) (string, []any, error) {
	where, args, err := whereSQL(q)
	if err != nil {
		return "", nil, err
	}
	sql := `SELECT ` + eventColumns + ` FROM funnel_events` + where + " ORDER BY received_at, uid"
	if q.Limit > 0 {
		args = append(args, q.Limit+1)
		sql += " LIMIT $" + strconv.Itoa(len(args))
	}
	return sql, args, nil
}

// Count counts the events q selects (its Limit aside).
func (s *Store) Count(ctx context.Context, q Query) (int64, error) {
	where, args, err := whereSQL(q)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM funnel_events`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting archived events: %w", err)
	}
	return n, nil
}

// whereSQL is q's WHERE clause ("" for none) and its parameters.
func whereSQL(q Query) (string, []any, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	for _, c := range []struct{ column, value string }{
		{"namespace", q.Namespace}, {"name", q.Name}, {"type", q.Type}, {"receiver", q.Receiver}, {"phase", q.Phase}} {
		if c.value != "" {
			where = append(where, c.column+" = "+arg(c.value))
		}
	}
	if cond := typePatternsSQL(q.TypePatterns, arg); cond != "" {
		where = append(where, cond)
	}
	if !q.ReceivedAfter.IsZero() {
		where = append(where, "received_at >= "+arg(q.ReceivedAfter))
	}
	if !q.ReceivedBefore.IsZero() {
		where = append(where, "received_at < "+arg(q.ReceivedBefore))
	}
	if q.After != nil {
		where = append(where, fmt.Sprintf("(received_at, uid) > (%s, %s::uuid)", arg(q.After.ReceivedAt), arg(string(q.After.UID))))
	}
	if q.Labels != nil {
		reqs, _ := q.Labels.Requirements()
		for _, r := range reqs {
			cond, err := labelSQL(r, arg)
			if err != nil {
				return "", nil, err
			}
			where = append(where, cond)
		}
	}
	if len(where) == 0 {
		return "", args, nil
	}
	return " WHERE " + strings.Join(where, " AND "), args, nil
}

// typePatternsSQL matches the type against subscription patterns, as
// delivery.TypeMatches does; "" when one pattern is "*" or there are none.
func typePatternsSQL(patterns []string, arg func(any) string) string {
	var ors []string
	for _, p := range patterns {
		switch {
		case p == "*":
			return ""
		case strings.HasSuffix(p, ".*"):
			prefix := strings.TrimSuffix(p, "*")
			escaped := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix)
			ors = append(ors, "type LIKE "+arg(escaped+"%"))
		default:
			ors = append(ors, "type = "+arg(p))
		}
	}
	if len(ors) == 0 {
		return ""
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}

// labelSQL is one label requirement as a condition on the labels column, with
// Kubernetes' meaning: != and notin also match events without the label.
func labelSQL(r labels.Requirement, arg func(any) string) (string, error) {
	key := r.Key()
	has := func(v string) string { return "labels @> " + arg(map[string]string{key: v}) + "::jsonb" }
	values := r.Values().List()
	anyOf := func() string {
		var ors []string
		for _, v := range values {
			ors = append(ors, has(v))
		}
		return "(" + strings.Join(ors, " OR ") + ")"
	}
	switch r.Operator() {
	case selection.Equals, selection.DoubleEquals, selection.In:
		return anyOf(), nil
	case selection.NotEquals, selection.NotIn:
		return "NOT " + anyOf(), nil
	case selection.Exists:
		return "labels ? " + arg(key), nil
	case selection.DoesNotExist:
		return "NOT (labels ? " + arg(key) + ")", nil
	case selection.GreaterThan, selection.LessThan:
		n, err := strconv.ParseInt(values[0], 10, 64)
		if err != nil {
			return "", fmt.Errorf("label selector %s: %q is not an integer", r.String(), values[0])
		}
		op := ">"
		if r.Operator() == selection.LessThan {
			op = "<"
		}
		// Labels that are not integers do not match, as in Kubernetes.
		return fmt.Sprintf("(CASE WHEN labels->>%s ~ '^-?[0-9]{1,18}$' THEN (labels->>%s)::bigint %s %s ELSE false END)",
			arg(key), arg(key), op, arg(n)), nil
	}
	return "", fmt.Errorf("label selector %s: operator %q is not supported", r.String(), r.Operator())
}
