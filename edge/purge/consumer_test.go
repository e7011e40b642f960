package purge_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/edge/purge"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
)

// recordingPurger applies each event id once, like the Redis store, and
// fails while told to.
type recordingPurger struct {
	mu       sync.Mutex
	applied  map[string][]string
	failures int // purges still to fail
	failed   int
}

func (p *recordingPurger) PurgeOnce(_ context.Context, id string, _ time.Duration, tags ...string) (int, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failures > 0 {
		p.failures--
		p.failed++
		return 0, false, errors.New("redis is down")
	}
	if _, seen := p.applied[id]; seen {
		return 0, false, nil
	}
	p.applied[id] = tags
	return len(tags), true, nil
}

func (p *recordingPurger) tagsOf(id string) ([]string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tags, ok := p.applied[id]
	return tags, ok
}

func productEvent(t *testing.T, typ, subject string) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, "portico/products", subject, map[string]any{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// The consumer survives a broker restart and consumes what was published
// while it was away; a failed purge is retried until it succeeds, a
// redelivered event is applied once, and a malformed message is dropped
// without stopping the events behind it.
func TestConsumerRecoversAndLosesNothing(t *testing.T) {
	rmq := localenvtest.StartRabbitMQ(t)
	purger := &recordingPurger{applied: map[string][]string{}}
	const exchange = "portico.test.purge"
	newConsumer := func() (*broker.Consumer, func()) {
		c, err := purge.NewConsumer(purge.Config{
			URL: rmq.URL(), Exchange: exchange, Queue: "edge.test-purge", Purger: purger,
			RetryDelay: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = c.Run(ctx) })
		stop := func() { cancel(); wg.Wait() }
		t.Cleanup(stop)
		localenvtest.WaitUntil(t, 30*time.Second, "the consumer to connect", c.Connected)
		return c, stop
	}

	consumer, stop := newConsumer()
	localenvtest.Publish(t, rmq.URL(), exchange, "product.updated", amqp.Publishing{Body: []byte("not an event")})
	first := productEvent(t, "product.updated", "products/1")
	localenvtest.PublishEvent(t, rmq.URL(), exchange, first)
	localenvtest.WaitUntil(t, 10*time.Second, "the first event", func() bool {
		tags, ok := purger.tagsOf(first.ID)
		return ok && len(tags) == 2 && tags[0] == "product:1" && tags[1] == "products"
	})

	// A purge that fails (Redis down) is retried, not dropped.
	purger.mu.Lock()
	purger.failures = 3
	purger.mu.Unlock()
	retried := productEvent(t, "product.deleted", "products/2")
	localenvtest.PublishEvent(t, rmq.URL(), exchange, retried)
	localenvtest.WaitUntil(t, 10*time.Second, "the retried event", func() bool { _, ok := purger.tagsOf(retried.ID); return ok })

	// A broker restart: the consumer reconnects by itself.
	ctx := context.Background()
	if err := rmq.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	localenvtest.WaitUntil(t, 10*time.Second, "the consumer to notice", func() bool { return !consumer.Connected() })
	if err := rmq.Start(ctx); err != nil {
		t.Fatal(err)
	}
	localenvtest.WaitUntil(t, 30*time.Second, "the consumer to reconnect", consumer.Connected)
	afterRestart := productEvent(t, "product.created", "products/3")
	localenvtest.PublishEvent(t, rmq.URL(), exchange, afterRestart)
	localenvtest.WaitUntil(t, 10*time.Second, "an event after the restart", func() bool { _, ok := purger.tagsOf(afterRestart.ID); return ok })

	// Events published while no edge consumes wait in its durable queue.
	stop()
	whileAway := productEvent(t, "product.updated", "products/4")
	localenvtest.PublishEvent(t, rmq.URL(), exchange, whileAway)
	localenvtest.PublishEvent(t, rmq.URL(), exchange, whileAway) // and a duplicate
	newConsumer()
	localenvtest.WaitUntil(t, 10*time.Second, "the event published while away", func() bool { _, ok := purger.tagsOf(whileAway.ID); return ok })

	purger.mu.Lock()
	defer purger.mu.Unlock()
	if purger.failed != 3 || len(purger.applied) != 4 {
		t.Errorf("failed %d, applied %d events; want 3 and 4", purger.failed, len(purger.applied))
	}
}
