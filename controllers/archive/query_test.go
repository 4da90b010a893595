package archive

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// The conditions each selector becomes: indexable tests (labels @> for equality, ? for
// existence), values as parameters, never in the SQL text.
func TestListSQL(t *testing.T) {
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		q      Query
		where  string
		args   int
		reject string
	}{
		{"everything", Query{}, "", 0, ""},
		{"namespace and type", Query{Namespace: "team", Type: "lease.move_in"}, "namespace = $1 AND type = $2", 2, ""},
		{"lease transaction", Query{Namespace: "team", Labels: labels.SelectorFromSet(labels.Set{"funnel.leasing.dev/lease-transaction-id": "74824"})},
			"namespace = $1 AND (labels @> $2::jsonb)", 2, ""},
		{"in", Query{Labels: mustSelector(t, "k in (a,b)")}, "(labels @> $1::jsonb OR labels @> $2::jsonb)", 2, ""},
		{"notin", Query{Labels: mustSelector(t, "k notin (a)")}, "NOT (labels @> $1::jsonb)", 1, ""},
		{"exists", Query{Labels: mustSelector(t, "k,!j")}, "NOT (labels ? $1) AND labels ? $2", 2, ""},
		{"time range and cursor", Query{ReceivedAfter: at, ReceivedBefore: at.Add(time.Hour), After: &Cursor{ReceivedAt: at, UID: "u"}},
			"received_at >= $1 AND received_at < $2 AND (received_at, uid) > ($3, $4::uuid)", 4, ""},
		{"an injection attempt stays a value", Query{Namespace: "x' OR '1'='1"}, "namespace = $1", 1, ""},
		{"greater than a non-integer", Query{Labels: mustSelector(t, "k>1")}, "(CASE WHEN labels->>$1 ~ '^-?[0-9]{1,18}$' THEN (labels->>$2)::bigint > $3 ELSE false END)", 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sql, args, err := listSQL(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			where := ""
			if _, w, ok := strings.Cut(sql, " WHERE "); ok {
				where, _, _ = strings.Cut(w, " ORDER BY")
			}
			if where != tc.where {
				t.Errorf("WHERE %s\nwant  %s", where, tc.where)
			}
			if len(args) != tc.args {
				t.Errorf("%d args, want %d", len(args), tc.args)
			}
			if !strings.HasSuffix(sql, "ORDER BY received_at, uid") {
				t.Errorf("not in receipt order: %s", sql)
			}
		})
	}
	sql, args, _ := listSQL(Query{Limit: 5})
	if !strings.HasSuffix(sql, "LIMIT $1") || args[0] != 6 {
		t.Errorf("a page asks for one more row, to know whether another page follows: %s %v", sql, args)
	}
}

func mustSelector(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{ReceivedAt: time.Date(2025, 3, 1, 9, 0, 0, 123456000, time.UTC), UID: "0b9f6c1e-8f0d-4d8e-9a37-1c3f2f6c1e0b"}
	got, err := DecodeCursor(c.Encode())
	if err != nil || !got.ReceivedAt.Equal(c.ReceivedAt) || got.UID != c.UID {
		t.Fatalf("DecodeCursor(Encode(%v)) = %v, %v", c, got, err)
	}
}

// Continue tokens come from clients: any string is refused or decoded, never a panic.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(Cursor{ReceivedAt: time.Unix(0, 0), UID: "u"}.Encode())
	f.Add("")
	f.Add("e30")
	f.Fuzz(func(t *testing.T, token string) {
		if c, err := DecodeCursor(token); err == nil && c.UID == "" {
			t.Fatalf("accepted %q without a uid", token)
		}
	})
}
