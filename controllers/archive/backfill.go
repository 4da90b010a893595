package archive

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
)

// BackfillDelivery is the final outcome of one event of a backfill.
type BackfillDelivery struct {
	Backfill     types.UID
	Namespace    string
	BackfillName string
	Event        Event
	Subscription string
	// Phase is Succeeded or Failed.
	Phase        string
	Attempts     int32
	ResponseCode int32
	LastError    string
}

// RecordBackfillDelivery records an event's outcome in a backfill; recording it again
// keeps the first.
func (s *Store) RecordBackfillDelivery(ctx context.Context, d BackfillDelivery) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO funnel_backfill_deliveries (backfill_uid, event_uid, namespace, backfill, event,
		subscription, phase, attempts, response_code, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (backfill_uid, event_uid) DO NOTHING`,
		string(d.Backfill), string(d.Event.UID), d.Namespace, d.BackfillName, d.Event.Name, d.Subscription, d.Phase,
		d.Attempts, d.ResponseCode, d.LastError)
	if err != nil {
		return fmt.Errorf("recording a backfill delivery of %s/%s: %w", d.Namespace, d.Event.Name, err)
	}
	return nil
}

// BackfillDone returns which of the events a backfill has an outcome for already.
func (s *Store) BackfillDone(ctx context.Context, backfill types.UID, events []types.UID) (map[types.UID]bool, error) {
	ids := make([]string, len(events))
	for i, u := range events {
		ids[i] = string(u)
	}
	rows, err := s.pool.Query(ctx, `SELECT event_uid::text FROM funnel_backfill_deliveries
		WHERE backfill_uid = $1 AND event_uid = ANY($2::uuid[])`, string(backfill), ids)
	if err != nil {
		return nil, fmt.Errorf("reading a backfill's deliveries: %w", err)
	}
	defer rows.Close()
	done := map[types.UID]bool{}
	for rows.Next() {
		var uid string
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("reading a backfill's deliveries: %w", err)
		}
		done[types.UID(uid)] = true
	}
	return done, rows.Err()
}

// BackfillCounts counts a backfill's succeeded and failed deliveries.
func (s *Store) BackfillCounts(ctx context.Context, backfill types.UID) (succeeded, failed int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE phase = 'Succeeded'), count(*) FILTER (WHERE phase <> 'Succeeded')
		FROM funnel_backfill_deliveries WHERE backfill_uid = $1`, string(backfill)).Scan(&succeeded, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("counting a backfill's deliveries: %w", err)
	}
	return succeeded, failed, nil
}
