package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// nsE2EArchive is the e2e step with the archive on.
const nsE2EArchive = "bench-e2e-archive"

// archiveURLEnv turns the operator's archive on (cmd/manager).
const archiveURLEnv = "FUNNEL_ARCHIVE_DATABASE_URL"

// archiveStep runs the e2e step without subscription again with the archive on: a
// PostgreSQL of the harness's, the operator restarted with its URL. The archive first
// catches up on the finished events earlier phases left (its throughput from a backlog),
// then archives the step's events while they arrive (its throughput and lag under load).
// The operator runs without the archive again afterwards.
func (b *bench) archiveStep(ctx context.Context) (*e2eStep, error) {
	pg, err := harness.StartPostgres(ctx, harness.PostgresOptions{})
	if err != nil {
		return nil, err
	}
	defer func() {
		b.postmaster = 0
		if err := pg.Stop(); err != nil {
			logf("stopping PostgreSQL: %v", err)
		}
	}()
	if b.postmaster, err = postmasterPID(pg.Dir); err != nil {
		return nil, err
	}
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the archive: %w", err)
	}
	defer func() { _ = db.Close(context.Background()) }()

	// Nothing is posted until the step: the finished events stored now are the backlog.
	backlog, err := b.finishedEvents(ctx)
	if err != nil {
		return nil, err
	}
	res := &archiveResult{}
	b.res.Archive = res
	logf("e2e: restarting the operator with the archive on (%d finished events stored)", backlog)
	b.op.Stop(20 * time.Second)
	b.op.Env = []string{archiveURLEnv + "=" + pg.URL}
	defer func() {
		b.op.Stop(20 * time.Second)
		b.op.Env = nil
		if err := b.startOperator(ctx); err != nil {
			logf("restarting the operator without the archive: %v", err)
		}
	}()
	if err := b.startOperator(ctx); err != nil {
		return nil, err
	}
	if err := b.archiveCatchUp(ctx, db, backlog, res); err != nil {
		return nil, err
	}

	step, err := b.e2eStep(ctx, "no subscription, archive on", nsE2EArchive, 5)
	if err != nil {
		return nil, err
	}
	// Every Succeeded event of the step archived, at most a minute after the last.
	want := len(step.Throughput.succeededAt) + len(step.Paced.succeededAt)
	var archived map[string]time.Time
	if err := b.poll(ctx, time.Minute, "the archive to hold the step's events", func() (bool, error) {
		var err error
		archived, err = archivedAt(ctx, db, nsE2EArchive)
		return len(archived) >= want, err
	}); err != nil && !errors.Is(err, errTimedOut) {
		return nil, err
	}
	res.Throughput = archiveRunOf(step.Throughput, archived)
	res.Paced = archiveRunOf(step.Paced, archived)
	if res.Throughput.Archived < len(step.Throughput.succeededAt) || res.Paced.Archived < len(step.Paced.succeededAt) {
		b.note("e2e with the archive: %d of %d Succeeded events archived a minute after the last", len(archived), want)
	}
	logf("e2e, archive: %.1f events/s archived under a load of %.1f events/s to Succeeded, finished → archived p50 %s p99 %s (paced: p50 %s p99 %s)",
		res.Throughput.PerSecond, step.Throughput.EventsPerSecond, fmtSeconds(res.Throughput.Lag.P50), fmtSeconds(res.Throughput.Lag.P99),
		fmtSeconds(res.Paced.Lag.P50), fmtSeconds(res.Paced.Lag.P99))
	return step, nil
}

// archiveCatchUp waits until the archive holds the backlog: every finished event stored
// before it was turned on.
func (b *bench) archiveCatchUp(ctx context.Context, db *pgx.Conn, backlog int, res *archiveResult) error {
	n := 0
	if err := b.poll(ctx, 5*time.Minute, "the archive to catch up", func() (bool, error) {
		if err := db.QueryRow(ctx, `SELECT count(*) FROM funnel_events`).Scan(&n); err != nil {
			// The operator creates the table when it starts archiving.
			return false, nil //nolint:nilerr // not migrated yet
		}
		return n >= backlog, nil
	}); err != nil {
		if !errors.Is(err, errTimedOut) {
			return err
		}
		b.note("e2e with the archive: it was still catching up after 5 minutes (%d of %d events archived)", n, backlog)
	}
	var first, lastAt time.Time
	if err := db.QueryRow(ctx, `SELECT count(*), min(first_archived_at), max(first_archived_at) FROM funnel_events`).
		Scan(&res.CatchUpEvents, &first, &lastAt); err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	res.CatchUpSeconds = round3(lastAt.Sub(first).Seconds())
	res.CatchUpPerSecond = valueOr(ratio(float64(res.CatchUpEvents), res.CatchUpSeconds))
	logf("e2e, archive: caught up on %d finished events in %.1f s (%.0f/s)", res.CatchUpEvents, res.CatchUpSeconds, res.CatchUpPerSecond)
	return nil
}

// finishedEvents counts the finished events in the namespaces the operator watches.
func (b *bench) finishedEvents(ctx context.Context) (int, error) {
	n := 0
	for _, ns := range b.watched() {
		for _, phase := range []funnelv1.EventPhase{funnelv1.PhaseSucceeded, funnelv1.PhaseFailed, funnelv1.PhaseIgnored} {
			for cont := ""; ; {
				list := &metav1.PartialObjectMetadataList{}
				list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
				if err := b.c.List(ctx, list, client.InNamespace(ns), client.MatchingFields{funnelv1.FieldPhase: string(phase)},
					client.Limit(1000), client.Continue(cont)); err != nil {
					return 0, fmt.Errorf("counting finished FunnelEvents in %s: %w", ns, err)
				}
				n += len(list.Items)
				if cont = list.Continue; cont == "" {
					break
				}
			}
		}
	}
	return n, nil
}

// archivedAt is when each event of ns was first archived.
func archivedAt(ctx context.Context, db *pgx.Conn, ns string) (map[string]time.Time, error) {
	rows, err := db.Query(ctx, `SELECT name, first_archived_at FROM funnel_events WHERE namespace = $1`, ns)
	if err != nil {
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	out := map[string]time.Time{}
	var name string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&name, &at}, func() error {
		out[name] = at
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	return out, nil
}

// archiveRunOf measures the archive during one e2e run: its rate from the run's first POST
// to its last event archived, and each event's lag from Succeeded (as the bench's watch
// saw it) to its row (PostgreSQL's clock is the bench's: one machine).
func archiveRunOf(run *e2eRun, archived map[string]time.Time) *archiveRun {
	out := &archiveRun{Events: len(run.succeededAt)}
	var lag []time.Duration
	var last time.Time
	for name, done := range run.succeededAt {
		at, ok := archived[name]
		if !ok {
			continue
		}
		out.Archived++
		lag = append(lag, max(at.Sub(done), 0))
		if at.After(last) {
			last = at
		}
	}
	out.Lag = latencyOf(lag)
	if !last.IsZero() {
		out.Seconds = round3(last.Sub(run.firstPost).Seconds())
		out.PerSecond = round3(float64(out.Archived) / last.Sub(run.firstPost).Seconds())
	}
	return out
}

// postmasterPID reads the PostgreSQL server's process id from its data directory.
func postmasterPID(dir string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading PostgreSQL's pid: %w", err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("reading PostgreSQL's pid: %w", err)
	}
	return pid, nil
}
