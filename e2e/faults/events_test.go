package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/events"
)

// exchange is where the services publish (AMQP_EXCHANGE's default).
const exchange = "portico.events"

// eventQueue is a durable queue bound to product.created, declared before
// a case's writes: persistent events wait in it, across a broker restart
// too, until the case reads them.
type eventQueue struct {
	name string
	// deliveries counts every delivery by event id; products the event
	// ids by product (two ids for one product are a duplicate effect).
	deliveries map[string]int
	products   map[int64]map[string]bool
}

func bindEvents(t *testing.T) *eventQueue {
	t.Helper()
	q := &eventQueue{name: "faults." + strings.ToLower(t.Name()) + "." + randomHex(3),
		deliveries: map[string]int{}, products: map[int64]map[string]bool{}}
	localenvtest.BindQueue(t, sys.servers.RabbitMQ.URL(), exchange, q.name, "product.created")
	return q
}

// drain reads what waits in the queue now, on a connection of its own
// (the broker may have restarted since the bind).
func (q *eventQueue) drain(ctx context.Context) error {
	conn, err := amqp.Dial(sys.servers.RabbitMQ.URL())
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		msg, ok, err := ch.Get(q.name, true)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		var ev events.Envelope
		if err := json.Unmarshal(msg.Body, &ev); err != nil {
			return fmt.Errorf("event %.200s: %w", msg.Body, err)
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(ev.Subject, "products/"), 10, 64)
		if err != nil {
			return fmt.Errorf("event subject %q: %w", ev.Subject, err)
		}
		q.deliveries[ev.ID]++
		if q.products[id] == nil {
			q.products[id] = map[string]bool{}
		}
		q.products[id][ev.ID] = true
	}
	return ctx.Err()
}

// awaitAll drains until every product of created has its event (or the
// time is up), and returns how many have none (lost), how many
// deliveries repeated an event (duplicates) and how many products got
// more than one event (duplicate effects).
func (q *eventQueue) awaitAll(t *testing.T, created []int64, within time.Duration) (lost, duplicates, effects int) {
	t.Helper()
	missing := func() int {
		n := 0
		for _, id := range created {
			if len(q.products[id]) == 0 {
				n++
			}
		}
		return n
	}
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	for {
		if err := q.drain(ctx); err != nil && ctx.Err() == nil {
			t.Logf("drain %s: %v", q.name, err)
		}
		if missing() == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, n := range q.deliveries {
		duplicates += n - 1
	}
	for _, ids := range q.products {
		effects += len(ids) - 1
	}
	return missing(), duplicates, effects
}
