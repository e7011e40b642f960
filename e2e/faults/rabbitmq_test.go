package faults_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// burstWrites is the size of the write burst, the 10,000, sent
// at burstRate a second: at the 100/s of the other cases it would take
// the suite almost two minutes, and the stack takes a few hundred writes
// a second.
const (
	burstWrites = 10000
	burstRate   = 250
)

// RabbitMQ dies with SIGKILL a third into a burst of product creations
// and comes back: the writes succeed (the outbox keeps their events), and
// every product committed has its product.created event delivered to a
// queue bound to the exchange: 0 lost. A redelivery (a publish whose
// confirm the kill swallowed, published again) is counted as a
// duplicate; it carries the same event id, so a consumer that
// deduplicates on the id sees 0 duplicate effects (no product with two
// different events).
func TestRabbitMQKilledMidStream(t *testing.T) {
	r := newRow(t, 6, fmt.Sprintf("RabbitMQ SIGKILL mid-burst (%d writes at %d/s)", burstWrites, burstRate), "0 failed writes, 0 lost, 0 duplicate effects")
	events := bindEvents(t)
	l := startLoad(t, loadConfig{Rate: burstRate, WriteEvery: 1})
	waitRequests(t, l, burstWrites/3)

	broker := sys.servers.RabbitMQ
	if err := broker.Kill(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := broker.Start(ctx); err != nil {
				t.Errorf("restart rabbitmq: %v", err)
			}
		}
	})
	waitRequests(t, l, burstWrites/2)
	startCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := broker.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitRequests(t, l, burstWrites)
	got := l.stop()

	if len(got.Created) == 0 {
		t.Fatalf("no product was created: %s", got)
	}
	conn, err := pgx.Connect(t.Context(), sys.servers.Postgres.URL("products"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	rows, err := conn.Query(t.Context(), `SELECT id FROM products WHERE id >= $1 AND description = 'made by e2e/faults'`, slices.Min(got.Created))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	lost, duplicates, effects := events.awaitAll(t, committed, 2*time.Minute)
	t.Logf("%s; %d products committed, %d events lost, %d duplicate deliveries, %d duplicate effects", got, len(committed), lost, duplicates, effects)
	r.Requests, r.Failures, r.Lost, r.Duplicates = got.Requests, got.non2xx(), lost, duplicates
	if got.FailedWrites > 0 {
		t.Errorf("%d writes failed while the broker was down: %s", got.FailedWrites, got)
	}
	if lost > 0 || effects > 0 {
		t.Errorf("%d committed products without their event, %d with two different events", lost, effects)
	}
}
