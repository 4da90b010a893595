package harness

import (
	"context"
	"errors"
	"fmt"

	"github.com/funnel-operator/funnel-operator/controllers/archive"
)

// Archive is the operator's event archive, migrated, in a PostgreSQL of its own: what
// the suites of the archive's readers (backfills, the history API) start from.
type Archive struct {
	Postgres *Postgres
	Store    *archive.Store
}

// StartArchive starts PostgreSQL in a temporary directory and opens and migrates the
// archive in its database.
func StartArchive(ctx context.Context) (*Archive, error) {
	pg, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		return nil, err
	}
	store, err := archive.Open(ctx, pg.URL)
	if err == nil {
		if _, err = store.Migrate(ctx); err != nil {
			store.Close()
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("harness: opening the archive: %w", err), pg.Stop())
	}
	return &Archive{Postgres: pg, Store: store}, nil
}

// Stop closes the store and stops PostgreSQL, removing its directory.
func (a *Archive) Stop() error {
	a.Store.Close()
	return a.Postgres.Stop()
}
