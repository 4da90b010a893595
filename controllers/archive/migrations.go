package archive

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	ctrl "sigs.k8s.io/controller-runtime"
)

// migrations are the schema's versions, in order: version i+1 is migrations[i]. Never
// edit one that was released; add the next.
var migrations = []string{
	// 1: one row per archived event. The indexes serve the history API's queries: a
	// namespace's events in receipt order (paging), by type, by name, and by labels (the
	// subject ids, e.g. funnel.leasing.dev/lease-transaction-id).
	`CREATE TABLE funnel_events (
		uid uuid PRIMARY KEY,
		namespace text NOT NULL,
		name text NOT NULL,
		receiver text NOT NULL,
		type text NOT NULL,
		format text NOT NULL,
		event_id text NOT NULL,
		phase text NOT NULL,
		summary text NOT NULL,
		created_at timestamptz NOT NULL,
		received_at timestamptz NOT NULL,
		occurred_at timestamptz,
		processed_at timestamptz,
		labels jsonb NOT NULL,
		spec jsonb NOT NULL,
		status jsonb NOT NULL,
		resource_version text NOT NULL,
		version integer NOT NULL DEFAULT 1,
		first_archived_at timestamptz NOT NULL DEFAULT now(),
		archived_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX funnel_events_received ON funnel_events (namespace, received_at, uid);
	CREATE INDEX funnel_events_type ON funnel_events (namespace, type, received_at, uid);
	CREATE INDEX funnel_events_name ON funnel_events (namespace, name);
	CREATE INDEX funnel_events_labels ON funnel_events USING gin (labels);`,
	// 2: what backfills delivered: one row per backfill and event, its final outcome.
	`CREATE TABLE funnel_backfill_deliveries (
		backfill_uid uuid NOT NULL,
		event_uid uuid NOT NULL,
		namespace text NOT NULL,
		backfill text NOT NULL,
		event text NOT NULL,
		subscription text NOT NULL,
		phase text NOT NULL,
		attempts integer NOT NULL,
		response_code integer NOT NULL,
		last_error text NOT NULL,
		completed_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (backfill_uid, event_uid)
	);`,
}

// migrationLock is the advisory lock that serialises migrations of replicas starting at
// once (an arbitrary constant: "funnel" in ASCII).
const migrationLock = 0x66756e6e656c

// Migrate brings the schema to the newest version this operator knows, in one
// transaction (PostgreSQL's DDL is transactional: a failed migration leaves nothing
// behind), and returns the version it is at.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	var version int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS funnel_schema_migrations (
			version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM funnel_schema_migrations`).Scan(&version); err != nil {
			return err
		}
		for ; version < len(migrations); version++ {
			if _, err := tx.Exec(ctx, migrations[version]); err != nil {
				return fmt.Errorf("version %d: %w", version+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO funnel_schema_migrations (version) VALUES ($1)`, version+1); err != nil {
				return fmt.Errorf("version %d: %w", version+1, err)
			}
			ctrl.LoggerFrom(ctx).Info("Archive schema migrated", "version", version+1)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("migrating the archive schema: %w", err)
	}
	return version, nil
}
