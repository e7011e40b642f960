// Package pgstore connects services to PostgreSQL with pgx and applies their
// embedded goose migrations, as independent lines (Line).
package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Connect opens a pool and waits, with the platform's jittered
// exponential backoff, until the database answers or ctx ends: services
// tolerate starting before PostgreSQL does. Queries are traced with tp
// (nil: not traced).
func Connect(ctx context.Context, url string, tp trace.TracerProvider, log *slog.Logger) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	// Query spans are children of the caller's span only (otelpgx makes
	// none without a recording parent); with tracing off the tracer is not
	// installed at all, as it would still time and record every query.
	if (telemetry.Tracing{Provider: tp}).Enabled() {
		cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database pool: %w", err)
	}
	retry := backoff.Policy{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for failures := 1; ; failures++ {
		err := ping(ctx, pool)
		if err == nil {
			return pool, nil
		}
		delay := retry.Delay(failures)
		log.WarnContext(ctx, "database not reachable yet", "error", err.Error(), "failures", failures, "retry_in", delay.String())
		if !backoff.Wait(ctx, delay) {
			pool.Close()
			return nil, fmt.Errorf("database: %w", errors.Join(ctx.Err(), err))
		}
	}
}

// ping asks the database once, within pingTimeout.
func ping(ctx context.Context, pool *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return pool.Ping(ctx)
}

const pingTimeout = 3 * time.Second

// A Line is one independent sequence of goose migrations with a version
// table of its own, after River's migration lines (rivermigrate's
// Config.Line): a package that owns tables (the outbox) numbers its
// migrations apart from the service that uses it, so that neither's
// numbering constrains the other and one migration never has two copies.
type Line struct {
	// Name identifies the line and names its version table,
	// goose_db_version_<Name>. The empty name is the service's own line,
	// kept in goose's default table, goose_db_version, as it was before
	// there were lines.
	Name string
	// Migrations holds goose SQL files at its root.
	Migrations fs.FS
}

// VersionTable is where the line's applied versions are recorded.
func (l Line) VersionTable() string {
	if l.Name == "" {
		return goose.DefaultTablename
	}
	return goose.DefaultTablename + "_" + l.Name
}

// migrationLockID is the advisory lock key under which migrations run, so
// that instances starting together apply each migration exactly once.
const migrationLockID int64 = 0x706f727469636f // "portico"

// Migrate applies every pending migration of each line, in the order
// given, each under the session-level advisory lock. A line that a later
// one depends on comes first (the outbox before a service whose
// migrations might write events).
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, lines ...Line) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	for _, line := range lines {
		if err := migrateLine(ctx, db, line, log); err != nil {
			return err
		}
	}
	return nil
}

func migrateLine(ctx context.Context, db *sql.DB, line Line, log *slog.Logger) error {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, line.Migrations,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true), goose.WithTableName(line.VersionTable()))
	if err != nil {
		return fmt.Errorf("migrations of line %q: %w", line.Name, err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations of line %q: %w", line.Name, err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "migration applied", "line", line.Name, "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration.String())
	}
	return nil
}

// UniqueViolation reports whether err is PostgreSQL's unique_violation
// (23505) and, if so, on which constraint.
func UniqueViolation(err error) (constraint string, ok bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return pgErr.ConstraintName, true
	}
	return "", false
}

// Unavailable reports whether err means the database could not be
// reached or went away: no connection (refused, reset, closed), or the
// server shutting down, starting up or out of connections (SQLSTATE
// class 08, 57P01-57P03, 53300). Services answer it 503, not 500: it is
// an outage, and the request may be tried again once it ends. A statement
// cut off at its COMMIT may still have committed; the outbox keeps the
// row and its event together either way.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// InTx runs fn in a transaction, committing when it returns nil and rolling
// back otherwise.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, fn)
}
