package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// With tracing off on both sides (zero Tracing), the message still
// carries the trace context its event was stored with, as W3C AMQP
// headers, and the handler runs in that trace: its log lines, and the
// consumer's, carry the trace id of the request that wrote the event.
func TestUntracedConsumerContinuesTheEventsTrace(t *testing.T) {
	url := localenvtest.AMQPURL(t)
	exchange, queue := "test."+uuid.NewString(), "test."+uuid.NewString()
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	stored := map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}

	// A raw queue shows the headers as they travel.
	localenvtest.BindQueue(t, url, exchange, queue+".raw", "#")
	logs := &localenvtest.LogBuffer{}
	var (
		mu    sync.Mutex
		calls int
		seen  trace.SpanContext
	)
	c, err := broker.NewConsumer(broker.ConsumerConfig{
		URL: url, Exchange: exchange, Queue: queue, Bindings: []string{"thing.*"}, Retry: fastRetry,
		Log: telemetry.NewLogger(logs, slog.LevelInfo, "test"),
		Handle: func(ctx context.Context, _ events.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			seen = trace.SpanContextFromContext(ctx)
			if calls == 1 {
				return errors.New("a dependency is down")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)

	ev := newEvent(t, "thing.created")
	pub := broker.NewPublisher(broker.PublisherConfig{URL: url, Exchange: exchange, Source: "test"})
	t.Cleanup(func() { _ = pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := pub.Publish(ctx, []events.Message{{ID: ev.ID, Type: ev.Type, Time: ev.Time, Body: mustJSON(t, ev), Headers: stored}}); err != nil || n != 1 {
		t.Fatalf("publish: %d confirmed, %v", n, err)
	}

	raw := rawDelivery(t, url, queue+".raw")
	if got := raw.Headers["traceparent"]; got != stored["traceparent"] {
		t.Errorf("the message's traceparent header is %v, want the stored %s", got, stored["traceparent"])
	}
	localenvtest.WaitUntil(t, 10*time.Second, "the retried event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls == 2
	})
	mu.Lock()
	got := seen.TraceID().String()
	mu.Unlock()
	if got != traceID {
		t.Errorf("the handler ran in trace %s, want the event's %s", got, traceID)
	}
	recs := logs.Records("event handling failed; it is requeued")
	if len(recs) != 1 || recs[0]["trace_id"] != traceID {
		t.Errorf("the consumer's log lines %v lack trace_id %s", recs, traceID)
	}
}

func mustJSON(t *testing.T, ev events.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawDelivery takes one message off queue.
func rawDelivery(t *testing.T, url, queue string) amqp.Delivery {
	t.Helper()
	ch := localenvtest.AMQPChannel(t, url)
	var d amqp.Delivery
	localenvtest.WaitUntil(t, 10*time.Second, "a message in "+queue, func() bool {
		msg, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		d = msg
		return ok
	})
	return d
}
