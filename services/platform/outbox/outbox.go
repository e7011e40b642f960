// Package outbox implements the transactional outbox: events are stored in
// the same transaction as the change they describe and a relay publishes
// them afterwards, so a write never succeeds without its event nor an event
// escape for a write that rolled back, whether or not the broker is up.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Writer stores events in the outbox. Make one per process and hand it
// to the stores that write events.
type Writer struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// NewWriter returns a writer whose spans and stored trace context come
// from tracing; a zero Tracing stores the context of ctx without spans.
func NewWriter(tracing telemetry.Tracing) *Writer {
	return &Writer{tracer: tracing.Tracer(scope), propagator: tracing.Propagation()}
}

// scope names the instrumentation of the outbox's spans.
const scope = "github.com/portico-mesh/portico/services/platform/outbox"

// Enqueue stores ev in tx, in a span "enqueue <event type>" of the
// request's trace. That span's context travels with the event: the relay's
// publish span is its child, and the consumers' spans the publish span's,
// so the event's trace shows the write that committed it and every
// consumption.
func (w *Writer) Enqueue(ctx context.Context, tx pgx.Tx, ev events.Envelope) error {
	ctx, span := w.tracer.Start(ctx, "enqueue "+ev.Type, trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingOperationTypeCreate,
			semconv.MessagingOperationName("enqueue"),
			semconv.MessagingMessageID(ev.ID),
			semconv.MessagingRabbitMQDestinationRoutingKey(ev.Type),
		)
	}
	if err := w.insert(ctx, tx, ev); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "enqueue failed")
		return err
	}
	return nil
}

func (w *Writer) insert(ctx context.Context, tx pgx.Tx, ev events.Envelope) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("outbox: encode %s: %w", ev.Type, err)
	}
	carrier := propagation.MapCarrier{}
	w.propagator.Inject(ctx, carrier)
	headers, err := json.Marshal(carrier)
	if err != nil {
		return fmt.Errorf("outbox: encode headers: %w", err)
	}
	_, err = tx.Exec(ctx,
		`INSERT INTO outbox (event_id, event_type, payload, headers) VALUES ($1, $2, $3, $4)`,
		ev.ID, ev.Type, payload, headers)
	if err != nil {
		return fmt.Errorf("outbox: insert %s: %w", ev.Type, err)
	}
	return nil
}
