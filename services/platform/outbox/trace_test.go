package outbox_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
)

// One request that writes an event makes one trace: the request's server
// span, the enqueue span and its INSERT under it, the relay's publish span
// under the enqueue span, and the consumer's process span under the
// publish span, in which the handler runs. Every piece is the real one:
// web server, PostgreSQL, relay, RabbitMQ, consumer.
func TestEventContinuesTheTraceOfItsRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing := telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}}

	pool, err := pgstore.Connect(ctx, pgtest.NewDatabase(t, migrations.Products()), tp, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	amqpURL := localenvtest.AMQPURL(t)
	const exchange, queue = "test.traced-events", "test.traced-consumer"

	// The consumer records the span its handler ran in.
	var (
		mu      sync.Mutex
		handled = map[string]trace.SpanContext{}
	)
	consumer, err := broker.NewConsumer(broker.ConsumerConfig{
		URL: amqpURL, Exchange: exchange, Queue: queue, Bindings: []string{"product.*"},
		Handle: func(ctx context.Context, ev events.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			handled[ev.ID] = trace.SpanContextFromContext(ctx)
			return nil
		},
		Tracing: tracing,
	})
	if err != nil {
		t.Fatal(err)
	}
	runLoop(t, consumer.Run)
	localenvtest.WaitUntil(t, 30*time.Second, "the consumer to connect", consumer.Connected)
	relay := outbox.NewRelay(outbox.RelayConfig{
		Pool:         pool,
		Publisher:    broker.NewPublisher(broker.PublisherConfig{URL: amqpURL, Exchange: exchange, Source: "test", Tracing: tracing}),
		PollInterval: 100 * time.Millisecond,
	})
	runLoop(t, relay.Run)

	writer := outbox.NewWriter(tracing)
	srv := web.New(web.Config{Service: "test", Tracing: tracing})
	var eventID string
	srv.Mount(web.Route{Method: http.MethodPost, Path: "/products", Handler: func(c *fiber.Ctx) error {
		ev, err := events.New("product.created", "portico/test", "products/1", map[string]int{"id": 1}, time.Now())
		if err != nil {
			return err
		}
		eventID = ev.ID
		err = pgx.BeginFunc(c.UserContext(), pool, func(tx pgx.Tx) error {
			return writer.Enqueue(c.UserContext(), tx, ev)
		})
		if err != nil {
			return err
		}
		return c.SendStatus(http.StatusCreated)
	}})
	resp, err := srv.App().Test(httptest.NewRequest(http.MethodPost, "/products", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}

	localenvtest.WaitUntil(t, 30*time.Second, "the event to be handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := handled[eventID]
		return ok
	})
	// The consumer ends its span after the handler returns and acks; the
	// relay ends its publish span when the broker's confirm arrives, which
	// may be after the consumer got the message.
	process := waitForSpan(t, spans, "process "+queue)
	publish := waitForSpan(t, spans, "publish "+exchange)

	request := findSpan(t, spans, "POST /products")
	enqueue := findSpan(t, spans, "enqueue product.created")
	insert := findSpanWith(t, spans, func(s sdktrace.ReadOnlySpan) bool {
		return s.Parent().SpanID() == enqueue.SpanContext().SpanID()
	})
	traceID := request.SpanContext().TraceID()
	for _, link := range []struct {
		child, parent sdktrace.ReadOnlySpan
	}{{enqueue, request}, {insert, enqueue}, {publish, enqueue}, {process, publish}} {
		if got := link.child.SpanContext().TraceID(); got != traceID {
			t.Errorf("%q is in trace %s, want the request's %s", link.child.Name(), got, traceID)
		}
		if got, want := link.child.Parent().SpanID(), link.parent.SpanContext().SpanID(); got != want {
			t.Errorf("%q has parent %s, want %q (%s)", link.child.Name(), got, link.parent.Name(), want)
		}
	}
	if !strings.Contains(insert.Name(), "INSERT") && !strings.Contains(attr(insert, "db.query.text"), "INSERT INTO outbox") {
		t.Errorf("the span under enqueue is %q, want the INSERT into the outbox", insert.Name())
	}
	mu.Lock()
	inHandler := handled[eventID]
	mu.Unlock()
	if inHandler.SpanID() != process.SpanContext().SpanID() {
		t.Errorf("the handler ran in span %s, want the process span %s", inHandler.SpanID(), process.SpanContext().SpanID())
	}

	for _, c := range []struct {
		span sdktrace.ReadOnlySpan
		kind trace.SpanKind
		want map[string]string
	}{
		{enqueue, trace.SpanKindProducer, map[string]string{
			"messaging.system": "rabbitmq", "messaging.operation.type": "create", "messaging.operation.name": "enqueue",
			"messaging.message.id": eventID, "messaging.rabbitmq.destination.routing_key": "product.created",
		}},
		{publish, trace.SpanKindProducer, map[string]string{
			"messaging.system": "rabbitmq", "messaging.operation.type": "send", "messaging.operation.name": "publish",
			"messaging.destination.name": exchange, "messaging.rabbitmq.destination.routing_key": "product.created",
			"messaging.message.id": eventID,
		}},
		{process, trace.SpanKindConsumer, map[string]string{
			"messaging.system": "rabbitmq", "messaging.operation.type": "process", "messaging.operation.name": "process",
			"messaging.destination.name": exchange, "messaging.destination.subscription.name": queue,
			"messaging.rabbitmq.destination.routing_key": "product.created", "messaging.message.id": eventID,
			"portico.delivery.outcome": broker.OutcomeAcked,
		}},
	} {
		if c.span.SpanKind() != c.kind {
			t.Errorf("%q is a %s span, want %s", c.span.Name(), c.span.SpanKind(), c.kind)
		}
		for k, v := range c.want {
			if got := attr(c.span, k); got != v {
				t.Errorf("%q: %s = %q, want %q", c.span.Name(), k, got, v)
			}
		}
	}
}

// runLoop runs loop until the test ends and waits for it.
func runLoop(t *testing.T, loop func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = loop(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitForSpan(t *testing.T, spans *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	localenvtest.WaitUntil(t, 10*time.Second, "span "+name, func() bool {
		for _, s := range spans.Ended() {
			if s.Name() == name {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func findSpan(t *testing.T, spans *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	return findSpanWith(t, spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == name })
}

func findSpanWith(t *testing.T, spans *tracetest.SpanRecorder, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	var names []string
	for _, s := range spans.Ended() {
		if match(s) {
			return s
		}
		names = append(names, s.Name())
	}
	t.Fatalf("no such span among %q", names)
	return nil
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if kv.Key == attribute.Key(key) {
			return kv.Value.String()
		}
	}
	return ""
}
