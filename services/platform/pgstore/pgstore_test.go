package pgstore_test

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(localenvtest.Run(m, localenvtest.Postgres)) }

// Instances of a service that start together must not race on migrations:
// each version is applied once and every instance ends up migrated.
func TestConcurrentMigrationsApplyOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := pgtest.NewDatabase(t, nil)

	const instances = 4
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := range instances {
		wg.Go(func() {
			pool, err := pgstore.Connect(ctx, url, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			errs[i] = pgstore.Migrate(ctx, pool, slog.New(slog.DiscardHandler), outbox.Migrations(), pgstore.Line{Migrations: migrations.Users()})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}

	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Each line has its own version table, each version recorded once.
	if got, want := versions(t, ctx, pool, "goose_db_version"), []int64{1, 2}; !slices.Equal(got, want) {
		t.Errorf("the users line recorded versions %v, want every file of migrations/users once: %v", got, want)
	}
	if got, want := versions(t, ctx, pool, "goose_db_version_outbox"), []int64{1}; !slices.Equal(got, want) {
		t.Errorf("the outbox line recorded versions %v, want %v", got, want)
	}
	requireSchema(t, ctx, pool)
}

// A database migrated before the outbox had its own line (the users line
// then created the outbox in its version 2) migrates cleanly: the outbox
// line adopts the existing table, events in it stay, and the users line
// keeps its versions.
func TestOutboxLineAdoptsTheOutboxOfOlderDatabases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := slog.New(slog.DiscardHandler)
	before, err := fs.Sub(os.DirFS("testdata"), "before-outbox-line")
	if err != nil {
		t.Fatal(err)
	}
	if err := pgstore.Migrate(ctx, pool, log, pgstore.Line{Migrations: before}); err != nil {
		t.Fatalf("migrate the old way: %v", err)
	}
	const pending = `INSERT INTO outbox (event_id, event_type, payload) VALUES (gen_random_uuid(), 'user.created', '{}')`
	if _, err := pool.Exec(ctx, pending); err != nil {
		t.Fatal(err)
	}

	for range 2 { // and again: nothing is left to do
		if err := pgstore.Migrate(ctx, pool, log, outbox.Migrations(), pgstore.Line{Migrations: migrations.Users()}); err != nil {
			t.Fatalf("migrate with the outbox line: %v", err)
		}
	}
	if got, want := versions(t, ctx, pool, "goose_db_version"), []int64{1, 2}; !slices.Equal(got, want) {
		t.Errorf("the users line recorded versions %v, want %v", got, want)
	}
	if got, want := versions(t, ctx, pool, "goose_db_version_outbox"), []int64{1}; !slices.Equal(got, want) {
		t.Errorf("the outbox line recorded versions %v, want %v", got, want)
	}
	var events int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != 1 {
		t.Errorf("the outbox holds %d events after the migration, want the 1 written before", events)
	}
	requireSchema(t, ctx, pool)
}

// The services' lines keep version 2 (now empty) so it never changes
// meaning: every file of a line is numbered once, and number 2 of both
// services is the retired outbox.
func TestServiceLinesKeepTheRetiredOutboxVersion(t *testing.T) {
	for name, fsys := range map[string]fs.FS{"users": migrations.Users(), "products": migrations.Products()} {
		matches, err := fs.Glob(fsys, "00002_*.sql")
		if err != nil {
			t.Fatal(err)
		}
		if len(matches) != 1 || matches[0] != "00002_outbox_moved.sql" {
			t.Errorf("%s: version 2 is %v, want only 00002_outbox_moved.sql", name, matches)
			continue
		}
		body, err := fs.ReadFile(fsys, matches[0])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToUpper(string(body)), "CREATE ") {
			t.Errorf("%s: the retired version 2 creates something again", name)
		}
	}
}

func TestVersionTables(t *testing.T) {
	if got := (pgstore.Line{}).VersionTable(); got != "goose_db_version" {
		t.Errorf("the service line's version table is %q, want goose's default, where older databases have it", got)
	}
	if got := outbox.Migrations().VersionTable(); got != "goose_db_version_outbox" {
		t.Errorf("the outbox line's version table is %q", got)
	}
}

// versions lists the versions recorded in a line's table, failing the
// test if one is recorded twice.
func versions(t *testing.T, ctx context.Context, pool *pgxpool.Pool, table string) []int64 {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT version_id, count(*) FROM `+table+`
		WHERE version_id > 0 GROUP BY version_id ORDER BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var version, n int64
		if err := rows.Scan(&version, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: version %d recorded %d times, want once", table, version, n)
		}
		out = append(out, version)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// requireSchema checks the users table, the outbox table and the one
// trigger that wakes the relay when an event is written.
func requireSchema(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	t.Helper()
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name IN ('users', 'outbox')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 2 {
		t.Fatalf("found %d of the tables users and outbox", tables)
	}
	var triggers int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger
		WHERE tgrelid = 'outbox'::regclass AND NOT tgisinternal`).Scan(&triggers); err != nil {
		t.Fatal(err)
	}
	if triggers != 1 {
		t.Fatalf("the outbox has %d triggers, want the one that wakes the relay", triggers)
	}
}

func TestUniqueViolationNamesTheConstraint(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t, migrations.Users())
	insert := `INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x')`
	if _, err := pool.Exec(ctx, insert, "ada", "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(ctx, insert, "ada2", "ada@example.com")
	constraint, ok := pgstore.UniqueViolation(err)
	if !ok || constraint != "users_email_key" {
		t.Fatalf("UniqueViolation(%v) = %q, %v; want users_email_key, true", err, constraint, ok)
	}
	if _, ok := pgstore.UniqueViolation(nil); ok {
		t.Fatal("nil error reported as a unique violation")
	}
}

// A connection the server ends (as a shutdown does), a refused connection
// and a closed pool are outages; a constraint violation is not.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t, migrations.Users())
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, terminated := conn.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
	conn.Release()
	_, refused := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=5")
	insert := `INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x')`
	if _, err := pool.Exec(ctx, insert, "ada", "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	_, unique := pool.Exec(ctx, insert, "ada2", "ada@example.com")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"terminated by the server", terminated, true},
		{"connection refused", refused, true},
		{"unique violation", unique, false},
		{"nil", nil, false},
	} {
		if got := pgstore.Unavailable(tc.err); got != tc.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
