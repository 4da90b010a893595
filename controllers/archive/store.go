// Package archive keeps the history of FunnelEvents in PostgreSQL: the leader writes every
// finished event there in batches (Archiver), retention deletes from the cluster only what
// is archived (Store.ArchivedVersions), and the history API reads it back (Store.List).
//
// One row per event (its uid): the spec, the final status, the labels. A later change of
// a finished event (a replay that finishes again, a duplicate receipt counted) updates the
// row and adds one to its version; writing the same state again changes nothing, so the
// archive is idempotent across restarts and outages.
package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/types"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Store is the archive's PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

// Open returns a Store for a PostgreSQL connection string (URL or key=value form). It
// does not connect yet: a database that is down delays archiving, it does not stop the
// operator.
func Open(ctx context.Context, connString string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// The parse error may quote the string, password included: say only what is wrong.
		return nil, fmt.Errorf("the archive's database connection string does not parse (check its syntax)")
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the archive's connection pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the connections.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("reaching the archive database: %w", err)
	}
	return nil
}

// upsert writes one event; the WHERE makes a write of an unchanged event (same
// resourceVersion) a no-op, so a restart or a retry never adds a version.
const upsert = `
INSERT INTO funnel_events (uid, namespace, name, receiver, type, format, event_id, phase, summary,
	created_at, received_at, occurred_at, processed_at, labels, spec, status, resource_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (uid) DO UPDATE SET
	phase = EXCLUDED.phase, summary = EXCLUDED.summary, processed_at = EXCLUDED.processed_at,
	labels = EXCLUDED.labels, status = EXCLUDED.status, resource_version = EXCLUDED.resource_version,
	version = funnel_events.version + 1, archived_at = now()
WHERE funnel_events.resource_version IS DISTINCT FROM EXCLUDED.resource_version`

// Write archives finished events in one transaction and reports for each whether it
// inserted or changed its row (false: archived in this version already).
func (s *Store) Write(ctx context.Context, events []*funnelv1.FunnelEvent) ([]bool, error) {
	if len(events) == 0 {
		return nil, nil
	}
	batch := &pgx.Batch{}
	for _, ev := range events {
		args, err := rowOf(ev)
		if err != nil {
			return nil, err
		}
		batch.Queue(upsert, args...)
	}
	written := make([]bool, len(events))
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		results := tx.SendBatch(ctx, batch)
		for i := range events {
			tag, err := results.Exec()
			if err != nil {
				_ = results.Close()
				return err
			}
			written[i] = tag.RowsAffected() == 1
		}
		return results.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("writing %d events to the archive: %w", len(events), err)
	}
	return written, nil
}

// rowOf is an event's column values, in the order of upsert.
func rowOf(ev *funnelv1.FunnelEvent) ([]any, error) {
	spec, err := json.Marshal(ev.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding the spec of FunnelEvent %s/%s: %w", ev.Namespace, ev.Name, err)
	}
	status, err := json.Marshal(ev.Status)
	if err != nil {
		return nil, fmt.Errorf("encoding the status of FunnelEvent %s/%s: %w", ev.Namespace, ev.Name, err)
	}
	labels := ev.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	var occurred, processed *time.Time
	if ev.Spec.OccurredAt != nil {
		occurred = &ev.Spec.OccurredAt.Time
	}
	if ev.Status.ProcessedTime != nil {
		processed = &ev.Status.ProcessedTime.Time
	}
	return []any{string(ev.UID), ev.Namespace, ev.Name, ev.Spec.Receiver, ev.Spec.Type, string(ev.Spec.Format),
		ev.Spec.EventID, string(ev.Status.Phase), ev.Status.Summary, ev.CreationTimestamp.Time, ev.Spec.ReceivedAt.Time,
		occurred, processed, labels, spec, status, ev.ResourceVersion}, nil
}

// ArchivedVersions returns, for those of uids that are archived, the resourceVersion
// archived: an event whose current version is that one is safe to delete.
func (s *Store) ArchivedVersions(ctx context.Context, uids []types.UID) (map[types.UID]string, error) {
	out := make(map[types.UID]string, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	ids := make([]string, len(uids))
	for i, u := range uids {
		ids[i] = string(u)
	}
	rows, err := s.pool.Query(ctx, `SELECT uid::text, resource_version FROM funnel_events WHERE uid = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading archived versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var uid, rv string
		if err := rows.Scan(&uid, &rv); err != nil {
			return nil, fmt.Errorf("reading archived versions: %w", err)
		}
		out[types.UID(uid)] = rv
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading archived versions: %w", err)
	}
	return out, nil
}
