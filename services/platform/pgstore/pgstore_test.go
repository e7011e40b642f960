package pgstore_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
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
			errs[i] = pgstore.Migrate(ctx, pool, migrations.Users(), slog.New(slog.DiscardHandler))
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
	rows, err := pool.Query(ctx, `SELECT version_id, count(*) FROM goose_db_version
		WHERE version_id > 0 GROUP BY version_id ORDER BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	applied := 0
	for rows.Next() {
		var version, n int64
		if err := rows.Scan(&version, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("migration %d recorded %d times, want once", version, n)
		}
		applied++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if applied < 2 {
		t.Fatalf("%d migrations applied, want every file of migrations/users", applied)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name IN ('users', 'outbox')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 2 {
		t.Fatalf("found %d of the tables users and outbox", tables)
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
