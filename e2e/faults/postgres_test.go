package faults_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/problem"
)

// postgresOutage is how long PostgreSQL stays down.
const postgresOutage = 10 * time.Second

// PostgreSQL stops (fast shutdown) under a write-heavy load for
// postgresOutage and starts again: what fails answers 503 problem+json
// with the unavailable type (never 500, never a hang), nothing is half
// written (every 201 is a row, every row created has its event), and the
// service recovers by itself.
func TestPostgresRestarted(t *testing.T) {
	r := newRow(t, 5, "PostgreSQL restarted (10 s down)", "failures 503 problem+json, 0 half-written, recovers")
	events := bindEvents(t)
	var (
		mu  sync.Mutex
		bad []string // failures that are not a 503 unavailable problem
	)
	l := startLoad(t, loadConfig{Rate: 40, WriteEvery: 2, Observe: func(req request, rep reply, _ time.Time) {
		if rep.status/100 == 2 {
			return
		}
		if rep.status != http.StatusServiceUnavailable || !strings.HasPrefix(rep.header.Get("Content-Type"), problem.ContentType) ||
			!strings.Contains(string(rep.body), problem.TypeUnavailable) {
			mu.Lock()
			defer mu.Unlock()
			if len(bad) < 5 {
				bad = append(bad, req.method+" "+req.path+": "+rep.String())
			}
		}
	}})
	waitRequests(t, l, 80)

	pg := sys.servers.Postgres
	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := pg.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := pg.Start(ctx); err != nil {
				t.Errorf("restart postgres: %v", err)
			}
		}
	})
	waitRequests(t, l, l.snapshot().Requests+int(postgresOutage.Seconds())*40)
	during := l.snapshot()
	startCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := pg.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// Recovered by itself: writes succeed again, nobody restarted the
	// services.
	created := len(l.snapshot().Created)
	localenvtest.WaitUntil(t, time.Minute, "writes to succeed again", func() bool {
		return len(l.snapshot().Created) >= created+20
	})
	got := l.stop()
	t.Logf("%s; while down: %s", got, during)

	// Nothing half written: every 201 is a row, every row created during
	// the case has exactly one product.created event.
	conn, err := pgx.Connect(t.Context(), pg.URL("products"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var rows []int64
	if len(got.Created) == 0 {
		t.Fatal("no product was created")
	}
	minID := slices.Min(got.Created)
	dbRows, err := conn.Query(t.Context(), `SELECT id FROM products WHERE id >= $1 AND description = 'made by e2e/faults'`, minID)
	if err != nil {
		t.Fatal(err)
	}
	rows, err = pgx.CollectRows(dbRows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[int64]bool{}
	for _, id := range rows {
		inTable[id] = true
	}
	missingRows := 0
	for _, id := range got.Created {
		if !inTable[id] {
			missingRows++
		}
	}
	lost, duplicates, effects := events.awaitAll(t, rows, time.Minute)
	t.Logf("%d created (201), %d rows since the first, %d rows missing, %d rows without their event, %d duplicate deliveries, %d duplicate effects",
		len(got.Created), len(rows), missingRows, lost, duplicates, effects)
	r.Requests, r.Failures, r.Lost, r.Duplicates = got.Requests, got.non2xx(), lost+missingRows, effects
	if len(bad) > 0 || got.Transport > 0 {
		t.Errorf("failures other than 503 problem+json: %v; %s", bad, got)
	}
	if during.non2xx() == 0 {
		t.Errorf("no request failed while PostgreSQL was down: the case saw no outage")
	}
	if missingRows > 0 || lost > 0 || effects > 0 {
		t.Errorf("half written: %d created products not in the table, %d rows without their event, %d products with two events", missingRows, lost, effects)
	}
}
