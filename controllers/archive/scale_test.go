package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// TestHistoryQueryScale measures history queries on 1 M archived rows (ARCHIVE_SCALE_ROWS
// to change), each with a baseline from the same run: a get by name, one index lookup.
// It prints p50/p99 and the bytes one archived event takes. Slow (over a minute to load
// the rows): only with ARCHIVE_SCALE=1, as make bench-history runs it.
func TestHistoryQueryScale(t *testing.T) {
	if os.Getenv("ARCHIVE_SCALE") == "" {
		t.Skip("ARCHIVE_SCALE=1 (make bench-history) runs it")
	}
	ctx := context.Background()
	rows := 1_000_000
	if os.Getenv("ARCHIVE_SCALE_ROWS") != "" {
		fmt.Sscan(os.Getenv("ARCHIVE_SCALE_ROWS"), &rows)
	}
	db, err := harness.StartArchive(ctx)
	must(t, err)
	defer func() { _ = db.Stop() }()
	store := db.Store
	conn, err := pgx.Connect(ctx, db.Postgres.URL)
	must(t, err)
	spec, _ := json.Marshal(map[string]any{"receiver": "funnel", "format": "V3", "eventID": "x", "type": "lease_transaction.status_updated",
		"receivedAt": "2025-03-01T09:00:00.000000Z", "data": map[string]any{"lease_transaction_id": 74824, "community_id": 43522, "unit_id": 4352,
			"client_id": 7, "current_status": "Approved", "previous_status": "Submitted", "lease_transaction_type": "Application"}})
	status, _ := json.Marshal(map[string]any{"phase": "Succeeded", "summary": "Application 74824: Submitted → Approved", "attempts": 1,
		"conditions": []any{map[string]any{"type": "Validated", "status": "True", "reason": "Valid", "message": "data matches", "lastTransitionTime": "2025-03-01T09:00:01Z"},
			map[string]any{"type": "Delivered", "status": "True", "reason": "Delivered", "message": "1 delivered", "lastTransitionTime": "2025-03-01T09:00:01Z"},
			map[string]any{"type": "Ready", "status": "True", "reason": "Processed", "message": "processed", "lastTransitionTime": "2025-03-01T09:00:01Z"}},
		"deliveries":    []any{map[string]any{"subscription": "pms-sync", "phase": "Succeeded", "attempts": 1, "responseCode": 200, "completionTime": "2025-03-01T09:00:01Z"}},
		"processedTime": "2025-03-01T09:00:01Z"})
	start := time.Now()
	_, err = conn.Exec(ctx, `INSERT INTO funnel_events (uid, namespace, name, receiver, type, format, event_id, phase, summary,
		created_at, received_at, labels, spec, status, resource_version)
	SELECT gen_random_uuid(), 'team-' || (i % 10), 'evt-' || i, 'funnel',
		(ARRAY['lease_transaction.status_updated','lease.move_in','renter.created','quote.created'])[1 + i % 4], 'V3', i::text,
		(ARRAY['Succeeded','Succeeded','Succeeded','Failed','Ignored'])[1 + i % 5], 'Application ' || (i % 100000) || ': Submitted → Approved',
		t, t,
		jsonb_build_object('funnel.leasing.dev/receiver','funnel','funnel.leasing.dev/event-type','lease-transaction.status-updated',
			'funnel.leasing.dev/format','V3','funnel.leasing.dev/lease-transaction-id', (i % 100000)::text,
			'funnel.leasing.dev/community-id', (i % 500)::text, 'funnel.leasing.dev/unit-id', (i % 20000)::text),
		$1::jsonb, $2::jsonb, '1'
	FROM (SELECT i, timestamptz '2025-01-01' + (i * interval '30 seconds') AS t FROM generate_series(1, $3) AS i) s`, spec, status, rows)
	must(t, err)
	_, err = conn.Exec(ctx, `ANALYZE funnel_events`)
	must(t, err)
	t.Logf("inserted %d rows in %s", rows, time.Since(start).Round(time.Millisecond))
	var total, table int64
	must(t, conn.QueryRow(ctx, `SELECT pg_total_relation_size('funnel_events'), pg_relation_size('funnel_events') + coalesce(pg_relation_size(reltoastrelid),0) FROM pg_class WHERE relname='funnel_events'`).Scan(&total, &table))
	t.Logf("bytes per archived event: %d with indexes, %d table only", total/int64(rows), table/int64(rows))

	measure := func(name string, n int, q func(i int) error) {
		var d []time.Duration
		for i := range n {
			began := time.Now()
			must(t, q(i))
			d = append(d, time.Since(began))
		}
		slices.Sort(d)
		t.Logf("%-60s p50 %6.2f ms  p99 %6.2f ms", name, ms(d[len(d)/2]), ms(d[len(d)*99/100]))
	}
	rng := rand.New(rand.NewSource(1))
	got := 0
	measure("baseline: get by name (one index lookup)", 500, func(int) error {
		i := 1 + rng.Intn(rows)
		_, ok, err := store.Get(ctx, fmt.Sprintf("team-%d", i%10), fmt.Sprintf("evt-%d", i))
		if !ok && err == nil {
			err = fmt.Errorf("evt-%d not found", i)
		}
		return err
	})
	measure("lease-transaction label selector (-n team, ~1 row)", 500, func(int) error {
		lt := rng.Intn(100000)
		sel := labels.SelectorFromSet(labels.Set{"funnel.leasing.dev/lease-transaction-id": fmt.Sprint(lt)})
		evs, _, err := store.List(ctx, archive.Query{Namespace: fmt.Sprintf("team-%d", lt%10), Labels: sel, Limit: 500})
		got += len(evs)
		return err
	})
	measure("time range of one day, first page of 500 (-n team)", 200, func(int) error {
		from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Intn(300)) * 24 * time.Hour)
		evs, _, err := store.List(ctx, archive.Query{Namespace: fmt.Sprintf("team-%d", rng.Intn(10)), ReceivedAfter: from, ReceivedBefore: from.Add(24 * time.Hour), Limit: 500})
		got += len(evs)
		return err
	})
	measure("type + phase + one week, first page of 500 (-n team)", 200, func(int) error {
		from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Intn(300)) * 24 * time.Hour)
		evs, _, err := store.List(ctx, archive.Query{Namespace: fmt.Sprintf("team-%d", rng.Intn(10)), Type: "lease.move_in", Phase: "Failed",
			ReceivedAfter: from, ReceivedBefore: from.Add(7 * 24 * time.Hour), Limit: 500})
		got += len(evs)
		return err
	})
	t.Logf("rows returned in total: %d", got)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
