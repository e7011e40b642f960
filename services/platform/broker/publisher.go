// Package broker talks to RabbitMQ: a publisher with confirms for the
// outbox relay, a consumer that hands each event of a queue to a handler,
// and the topology both declare.
package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// DefaultExchange is the topic exchange every domain event goes to; the
// routing key is the event type (user.created, product.updated, ...).
const DefaultExchange = "portico.events"

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	URL      string
	Exchange string // default DefaultExchange
	// Source names the publishing service in the AMQP app-id property.
	Source string
	// DialTimeout bounds connecting (default 5s).
	DialTimeout time.Duration
	// Tracing makes a span of each message sent, a child of the trace
	// context the message carries (the outbox stores its enqueue span's),
	// and puts the span's context in the message's headers for consumers.
	Tracing telemetry.Tracing
}

// Publisher publishes persistent messages and waits for the broker's
// confirms. It connects lazily and drops the connection on any failure,
// so the next call dials again: the relay's retry loop is the only loop.
type Publisher struct {
	cfg        PublisherConfig
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	spanName   string

	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
}

// NewPublisher returns a publisher; nothing is dialled until it is used.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	return &Publisher{cfg: cfg, tracer: cfg.Tracing.Tracer(scope), propagator: cfg.Tracing.Propagation(), spanName: "publish " + cfg.Exchange}
}

// scope names the instrumentation of the broker's spans.
const scope = "github.com/portico-mesh/portico/services/platform/broker"

// Publish sends msgs in order and waits for the broker's confirms. It
// returns how many messages, from the first, were confirmed: all of them
// exactly when err is nil. The caller can then forget those and resend only
// the rest, which keeps duplicates to the messages whose fate is unknown.
//
// Each message is sent in a span "publish <exchange>", the child of the
// trace context in its headers, ended when its confirm arrives; the
// message carries that span's context (W3C traceparent and tracestate
// AMQP headers) to its consumers.
func (p *Publisher) Publish(ctx context.Context, msgs []events.Message) (confirmed int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	spans := make([]trace.Span, 0, len(msgs))
	defer func() { endPublishSpans(spans, confirmed, err) }()
	if err := p.connectLocked(ctx); err != nil {
		return 0, err
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		headers, span := p.startSpan(ctx, m)
		spans = append(spans, span)
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, m.Type, false, false, amqp.Publishing{
			ContentType:  "application/cloudevents+json",
			DeliveryMode: amqp.Persistent,
			MessageId:    m.ID,
			Type:         m.Type,
			Timestamp:    m.Time,
			AppId:        p.cfg.Source,
			Headers:      headers,
			Body:         m.Body,
		})
		if err != nil {
			// Confirms of what was already sent may still arrive.
			n, _ := p.awaitConfirms(ctx, confirms, msgs)
			p.closeLocked()
			return n, fmt.Errorf("broker: publish %s: %w", m.ID, err)
		}
		confirms = append(confirms, dc)
	}
	n, err := p.awaitConfirms(ctx, confirms, msgs)
	if err != nil {
		p.closeLocked()
	}
	return n, err
}

// startSpan starts m's publish span under the context m carries and
// returns the AMQP headers: m's, with the span's context in place of the
// stored one. With tracing off the span is the stored context itself, so
// consumers still join the request's trace.
func (p *Publisher) startSpan(ctx context.Context, m events.Message) (amqp.Table, trace.Span) {
	carrier := propagation.MapCarrier(m.Headers)
	if carrier == nil {
		carrier = propagation.MapCarrier{}
	}
	parent := p.propagator.Extract(ctx, carrier)
	sctx, span := p.tracer.Start(parent, p.spanName, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(p.cfg.Exchange),
			semconv.MessagingRabbitMQDestinationRoutingKey(m.Type),
			semconv.MessagingMessageID(m.ID),
			semconv.MessagingMessageBodySize(len(m.Body)),
		)
	}
	headers := make(amqp.Table, len(carrier)+2)
	for k, v := range carrier {
		headers[k] = v
	}
	p.propagator.Inject(sctx, amqpHeaders(headers))
	return headers, span
}

// endPublishSpans ends the spans of a Publish: the first confirmed ones
// succeeded, the others failed with err.
func endPublishSpans(spans []trace.Span, confirmed int, err error) {
	for i, span := range spans {
		if i >= confirmed && err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "not confirmed")
		}
		span.End()
	}
}

// awaitConfirms waits for confirms in publishing order and returns how many
// leading messages were acknowledged.
func (p *Publisher) awaitConfirms(ctx context.Context, confirms []*amqp.DeferredConfirmation, msgs []events.Message) (int, error) {
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return i, fmt.Errorf("broker: confirm %s: %w", msgs[i].ID, err)
		}
		if !acked {
			return i, fmt.Errorf("broker: %s was nacked", msgs[i].ID)
		}
	}
	return len(confirms), nil
}

// Ping reports whether the broker is reachable, connecting if needed.
func (p *Publisher) Ping(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connectLocked(ctx)
}

// Close closes the connection, if any.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
	return nil
}

func (p *Publisher) connectLocked(ctx context.Context) error {
	if p.conn != nil && !p.conn.IsClosed() && p.ch != nil && !p.ch.IsClosed() {
		return nil
	}
	p.closeLocked()
	timeout := p.cfg.DialTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	conn, err := amqp.DialConfig(p.cfg.URL, amqp.Config{
		Dial:       amqp.DefaultDial(timeout),
		Properties: amqp.Table{"connection_name": p.cfg.Source + " outbox relay"},
	})
	if err != nil {
		return fmt.Errorf("broker: dial: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("broker: channel: %w", err)
	}
	if err := DeclareExchange(ch, p.cfg.Exchange); err != nil {
		_ = conn.Close()
		return err
	}
	if err := ch.Confirm(false); err != nil {
		_ = conn.Close()
		return fmt.Errorf("broker: confirm mode: %w", err)
	}
	p.conn, p.ch = conn, ch
	return nil
}

func (p *Publisher) closeLocked() {
	if p.conn != nil {
		_ = p.conn.Close() // dropped either way; a closed one errors harmlessly
	}
	p.conn, p.ch = nil, nil
}

// DeclareExchange declares the durable topic exchange events go to.
// Publishers and consumers both declare it, so neither depends on start order.
func DeclareExchange(ch *amqp.Channel, name string) error {
	if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("broker: declare exchange %s: %w", name, err)
	}
	return nil
}
