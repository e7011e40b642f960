package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres, localenvtest.RabbitMQ))
}

// The outbox promise: while the broker is stopped, writes still succeed;
// once it returns, every committed write's event is delivered and no
// rolled-back write's event ever is. Delivery is at least once: a message
// the broker stored but whose confirm was lost in the outage is sent again,
// and only those — at most one batch — may arrive twice. Consumers
// deduplicate on the event id, so each event takes effect once.
func TestNoEventLostAcrossBrokerOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pool := pgtest.NewPool(t, migrations.Products())
	rmq := localenvtest.StartRabbitMQ(t)
	exchange := "test.events"

	// A durable queue bound to every routing key, so that persistent
	// messages survive the broker restart like a real consumer's.
	const queue = "test.all-events"
	localenvtest.BindQueue(t, rmq.URL(), exchange, queue, "#")
	const batchSize = 20

	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	relay := outbox.NewRelay(outbox.RelayConfig{
		Pool:         pool,
		Publisher:    broker.NewPublisher(broker.PublisherConfig{URL: rmq.URL(), Exchange: exchange, Source: "test", DialTimeout: time.Second}),
		Log:          slog.New(slog.DiscardHandler),
		BatchSize:    batchSize,
		PollInterval: 100 * time.Millisecond,
		MaxBackoff:   500 * time.Millisecond,
	})
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() {
		stopRelay()
		<-relayDone
	}()

	writer := outbox.NewWriter(telemetry.Tracing{Propagator: propagation.TraceContext{}})
	const writers, writesEach = 4, 60
	var (
		mu         sync.Mutex
		committed  = map[string]bool{}
		rolledBack = map[string]bool{}
		written    atomic.Int64
	)
	write := func(w, i int) error {
		ev, err := events.New("product.created", "portico/test", fmt.Sprintf("products/%d-%d", w, i),
			map[string]int{"writer": w, "seq": i}, time.Now())
		if err != nil {
			return err
		}
		// Every fifth transaction fails after its event was enqueued.
		fail := i%5 == 4
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO products (name, price, stock_quantity) VALUES ($1, 1.00, 1)`, ev.Subject); err != nil {
				return err
			}
			if err := writer.Enqueue(ctx, tx, ev); err != nil {
				return err
			}
			if fail {
				return errRollback
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case fail && errors.Is(err, errRollback):
			rolledBack[ev.ID] = true
			return nil
		case err != nil:
			return err
		}
		committed[ev.ID] = true
		written.Add(1)
		return nil
	}

	outageStarted := make(chan struct{})
	outageOver := make(chan struct{})
	var wg sync.WaitGroup
	writeErrs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range writesEach {
				if i == writesEach/3 && w == 0 {
					close(outageStarted)
				}
				if i == 2*writesEach/3 {
					<-outageOver // the last third is written after the broker is back
				}
				if err := write(w, i); err != nil {
					writeErrs <- fmt.Errorf("writer %d write %d: %w", w, i, err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	<-outageStarted
	if err := rmq.Stop(ctx); err != nil {
		t.Fatalf("stop rabbitmq: %v", err)
	}
	// Let writes pile up while the broker is away; they must all succeed.
	waitForBacklog(t, ctx, pool, 30*time.Second, "at least 20 piled up", func(n int) bool { return n >= 20 })
	if err := rmq.Start(ctx); err != nil {
		t.Fatalf("start rabbitmq again: %v", err)
	}
	close(outageOver)
	wg.Wait()
	close(writeErrs)
	for err := range writeErrs {
		t.Fatalf("a write failed: %v", err)
	}

	waitForBacklog(t, ctx, pool, 60*time.Second, "it drained", func(n int) bool { return n == 0 })

	received := consumeAll(t, ctx, rmq.URL(), queue, len(committed))
	duplicates := 0
	seen := map[string]bool{}
	for _, id := range received {
		if seen[id] {
			duplicates++
		}
		seen[id] = true
		if rolledBack[id] {
			t.Errorf("event %s of a rolled-back write was published", id)
		}
	}
	for id := range committed {
		if !seen[id] {
			t.Errorf("event %s of a committed write was lost", id)
		}
	}
	if duplicates > batchSize {
		t.Errorf("%d events were delivered twice; only the one batch in flight at the outage (%d) may be", duplicates, batchSize)
	}
	if len(seen) != len(committed) {
		t.Errorf("a deduplicating consumer saw %d events, want the %d committed", len(seen), len(committed))
	}
	t.Logf("committed %d, rolled back %d, delivered %d (%d distinct, %d redelivered) across a broker outage",
		len(committed), len(rolledBack), len(received), len(seen), duplicates)
}

var errRollback = errors.New("deliberate rollback")

func backlog(t *testing.T, ctx context.Context, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatalf("count outbox: %v", err)
	}
	return n
}

// waitForBacklog polls the outbox until its size satisfies ok, failing
// the test after limit.
func waitForBacklog(t *testing.T, ctx context.Context, pool *pgxpool.Pool, limit time.Duration, want string, ok func(int) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := localenv.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		if n := backlog(t, ctx, pool); !ok(n) {
			return fmt.Errorf("the outbox holds %d events, want %s", n, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// consumeAll reads message ids until want have arrived and the queue then
// stays quiet, so late duplicates are caught too.
func consumeAll(t *testing.T, ctx context.Context, url, queue string, want int) []string {
	t.Helper()
	deliveries, err := localenvtest.AMQPChannel(t, url).ConsumeWithContext(ctx, queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	quiet := time.NewTimer(30 * time.Second)
	defer quiet.Stop()
	for {
		select {
		case d := <-deliveries:
			var env events.Envelope
			if err := json.Unmarshal(d.Body, &env); err != nil {
				t.Fatalf("message is not an event envelope: %v", err)
			}
			if env.ID != d.MessageId || env.Type != d.RoutingKey || d.DeliveryMode != amqp.Persistent {
				t.Fatalf("message properties %q/%q/%d disagree with envelope %q/%q", d.MessageId, d.RoutingKey, d.DeliveryMode, env.ID, env.Type)
			}
			ids = append(ids, env.ID)
			wait := 30 * time.Second
			if len(ids) >= want {
				wait = time.Second
			}
			quiet.Reset(wait)
		case <-quiet.C:
			return ids
		case <-ctx.Done():
			t.Fatal("timed out consuming")
		}
	}
}
