package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Handler handles one event. Returning nil acknowledges it; an error
// hands it back to the broker after a backoff, to be tried again, unless
// the error is made by Discard. Events are delivered at least once: a
// handler deduplicates on Envelope.ID when a repeat would matter.
type Handler func(ctx context.Context, ev events.Envelope) error

// ConsumerConfig configures a Consumer. URL, Queue, Bindings and Handle
// are required.
type ConsumerConfig struct {
	// URL is the AMQP URL.
	URL string
	// Exchange is the topic exchange the events are published to (default
	// DefaultExchange).
	Exchange string
	// Queue is the consumer's durable queue. Every instance of a process
	// shares it, so each event is handled by one of them.
	Queue string
	// Bindings are the routing keys (event types, wildcards allowed, such
	// as "product.*") bound to Queue.
	Bindings []string
	// Handle is called for each well-formed event, one at a time.
	Handle Handler
	// Prefetch is how many unacknowledged events the broker hands over at
	// once (default 32).
	Prefetch int
	// HandleTimeout bounds one call of Handle (default 30s).
	HandleTimeout time.Duration
	// Retry spaces out both reconnections and the redelivery of events
	// whose handling failed (default 500ms doubling up to 30s).
	Retry backoff.Policy
	// Name names the AMQP connection, so an operator can tell the
	// consumers apart in the broker (default Queue).
	Name string
	Log  *slog.Logger
	// Registerer receives the metrics (default: a private registry).
	// Several consumers may share one: their series differ by queue.
	Registerer prometheus.Registerer
	// Tracing runs each handling in a span "process <queue>", the child
	// of the publish span whose context the message's headers carry, so
	// handlers continue the event's trace without code of their own.
	// With tracing off the handler's context still carries the event's
	// trace context, so its log lines have the trace id.
	Tracing telemetry.Tracing
}

// Consumer consumes one queue and hands its events to a Handler. Run owns
// the connection: it dials, declares the exchange, the durable queue and
// its bindings, consumes, and reconnects with backoff when the connection
// or the channel drops. Unacknowledged events go back to the queue when a
// connection closes, so none is lost across restarts.
type Consumer struct {
	cfg        ConsumerConfig
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	spanName   string
	connected  atomic.Bool
	running    atomic.Bool

	deliveries *prometheus.CounterVec // by outcome, for this queue
	up         prometheus.Gauge
}

// Delivery outcomes, the values of the outcome label.
const (
	// OutcomeAcked: handled, acknowledged.
	OutcomeAcked = "acked"
	// OutcomeRequeued: the handler failed; handed back to be tried again.
	OutcomeRequeued = "requeued"
	// OutcomeMalformed: not an event envelope; rejected without requeue.
	OutcomeMalformed = "malformed"
	// OutcomeDiscarded: the handler said retrying cannot help (Discard);
	// rejected without requeue.
	OutcomeDiscarded = "discarded"
)

// discarded marks a handler error that redelivery cannot fix.
type discarded struct{ error }

func (d discarded) Unwrap() error { return d.error }

// Discard wraps err so that the Consumer rejects the event without
// requeueing it instead of retrying: it goes to a dead-letter exchange if
// an operator's policy sets one, and is dropped otherwise.
func Discard(err error) error { return discarded{err} }

// NewConsumer checks cfg and returns a consumer; nothing is dialled until
// Run.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if cfg.URL == "" || cfg.Queue == "" || len(cfg.Bindings) == 0 || cfg.Handle == nil {
		return nil, errors.New("broker: ConsumerConfig.URL, Queue, Bindings and Handle are required")
	}
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 32
	}
	if cfg.HandleTimeout <= 0 {
		cfg.HandleTimeout = 30 * time.Second
	}
	if cfg.Retry.Min <= 0 {
		cfg.Retry.Min = 500 * time.Millisecond
	}
	if cfg.Retry.Max < cfg.Retry.Min {
		cfg.Retry.Max = max(30*time.Second, cfg.Retry.Min)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Queue
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	deliveries, err := register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "broker_consumer_deliveries_total",
		Help: "Events a broker consumer settled, by queue and outcome (acked, requeued, malformed, discarded).",
	}, []string{"queue", "outcome"}))
	if err != nil {
		return nil, err
	}
	up, err := register(cfg.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "broker_consumer_connected",
		Help: "1 while a broker consumer is attached to its queue.",
	}, []string{"queue"}))
	if err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg, tracer: cfg.Tracing.Tracer(scope), propagator: cfg.Tracing.Propagation(), spanName: "process " + cfg.Queue, deliveries: deliveries.MustCurryWith(prometheus.Labels{"queue": cfg.Queue}), up: up.WithLabelValues(cfg.Queue)}
	// The series exist from the start, so a rate over them is never empty.
	for _, o := range []string{OutcomeAcked, OutcomeRequeued, OutcomeMalformed, OutcomeDiscarded} {
		c.deliveries.WithLabelValues(o)
	}
	return c, nil
}

// register registers a collector, or returns the one already registered
// under its name by another consumer sharing the registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("broker: metrics: %w", err)
	}
	return c, nil
}

// Connected reports whether the consumer is attached to its queue now.
func (c *Consumer) Connected() bool { return c.connected.Load() }

// Ping is Connected as a readiness probe.
func (c *Consumer) Ping(context.Context) error {
	if !c.Connected() {
		return fmt.Errorf("not consuming %s", c.cfg.Queue)
	}
	return nil
}

// Run consumes until ctx ends and then returns nil, once the connection
// is closed: every goroutine it started has stopped. The broker being
// away is not an error; Run waits for it. Run may not be called twice at
// once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("broker: the consumer of %s is already running", c.cfg.Queue)
	}
	defer c.running.Store(false)
	failures := 0
	for {
		started := time.Now()
		err := c.session(ctx)
		c.setConnected(false)
		if ctx.Err() != nil {
			return nil // an error now is only the shutdown
		}
		// A session that stayed up longer than the longest wait was a
		// success: the next outage starts the backoff over.
		if time.Since(started) > c.cfg.Retry.Max {
			failures = 0
		}
		failures++
		wait := c.cfg.Retry.Delay(failures)
		c.cfg.Log.Warn("broker consumer disconnected; reconnecting", "queue", c.cfg.Queue, "error", errText(err), "retry_in", wait.String())
		if !backoff.Wait(ctx, wait) {
			return nil
		}
	}
}

func (c *Consumer) setConnected(v bool) {
	c.connected.Store(v)
	if v {
		c.up.Set(1)
	} else {
		c.up.Set(0)
	}
}

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// session consumes over one connection until it fails or ctx ends.
func (c *Consumer) session(ctx context.Context) error {
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Dial:       amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": c.cfg.Name},
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	if err := DeclareExchange(ch, c.cfg.Exchange); err != nil {
		return err
	}
	// A classic durable queue: a quorum queue drops a message after a
	// delivery limit, and an event requeued through a long outage of what
	// the handler needs must never be dropped.
	if _, err := ch.QueueDeclare(c.cfg.Queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s: %w", c.cfg.Queue, err)
	}
	for _, key := range c.cfg.Bindings {
		if err := ch.QueueBind(c.cfg.Queue, key, c.cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", key, c.cfg.Queue, err)
		}
	}
	deliveries, err := ch.ConsumeWithContext(ctx, c.cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Queue, err)
	}
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	c.setConnected(true)
	c.cfg.Log.Info("broker consumer connected", "queue", c.cfg.Queue, "exchange", c.cfg.Exchange)
	failures := 0 // consecutive failed handlings, for the redelivery wait
	for {
		select {
		case <-ctx.Done():
			return nil
		case amqpErr := <-connClosed:
			return closeError("connection", amqpErr)
		case amqpErr := <-chClosed:
			return closeError("channel", amqpErr)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			c.settle(ctx, d, &failures)
		}
	}
}

func closeError(what string, err *amqp.Error) error {
	if err == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, err)
}

// settle decodes one delivery, hands it to the handler in the delivery's
// span and acknowledges, rejects or requeues it.
func (c *Consumer) settle(ctx context.Context, d amqp.Delivery, failures *int) {
	ctx, span := c.startSpan(ctx, d)
	outcome := c.handle(ctx, d, failures)
	if span.IsRecording() {
		span.SetAttributes(attrOutcome.String(outcome))
		if outcome != OutcomeAcked {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// attrOutcome is the span attribute of how a delivery was settled (one of
// the Outcome values).
const attrOutcome = attribute.Key("portico.delivery.outcome")

// startSpan starts the span of one delivery, the child of the context its
// headers carry (the publisher's span), or a trace of its own when they
// carry none.
func (c *Consumer) startSpan(ctx context.Context, d amqp.Delivery) (context.Context, trace.Span) {
	if d.Headers != nil {
		ctx = c.propagator.Extract(ctx, amqpHeaders(d.Headers))
	}
	ctx, span := c.tracer.Start(ctx, c.spanName, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(d.Exchange),
			semconv.MessagingDestinationSubscriptionName(c.cfg.Queue),
			semconv.MessagingRabbitMQDestinationRoutingKey(d.RoutingKey),
			semconv.MessagingMessageID(d.MessageId),
			semconv.MessagingRabbitMQMessageDeliveryTag(int(d.DeliveryTag)),
			semconv.MessagingMessageBodySize(len(d.Body)),
			attrRedelivered.Bool(d.Redelivered),
		)
	}
	return ctx, span
}

// attrRedelivered marks a delivery the broker made before (after a
// requeue or a lost connection).
const attrRedelivered = attribute.Key("portico.delivery.redelivered")

// handle settles d and returns the outcome. Its log lines carry the
// delivery's trace id.
func (c *Consumer) handle(ctx context.Context, d amqp.Delivery, failures *int) string {
	var ev events.Envelope
	if err := json.Unmarshal(d.Body, &ev); err != nil || ev.ID == "" || ev.Type == "" {
		// Redelivery cannot fix it. Rejected without requeue, it goes to
		// a dead-letter exchange if an operator's policy sets one.
		c.deliveries.WithLabelValues(OutcomeMalformed).Inc()
		c.cfg.Log.ErrorContext(ctx, "malformed event rejected", "queue", c.cfg.Queue, "message_id", d.MessageId, "routing_key", d.RoutingKey)
		_ = d.Reject(false) // if the channel is gone, the broker requeues it and it comes back here
		return OutcomeMalformed
	}
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandleTimeout)
	err := c.cfg.Handle(hctx, ev)
	cancel()
	switch {
	case err == nil:
		*failures = 0
		c.deliveries.WithLabelValues(OutcomeAcked).Inc()
		if err := d.Ack(false); err != nil {
			// Handled: the broker redelivers it, and the handler's
			// deduplication sees a repeat.
			c.cfg.Log.WarnContext(ctx, "ack failed", "queue", c.cfg.Queue, "event_id", ev.ID, "error", err.Error())
		}
		return OutcomeAcked
	case errors.As(err, new(discarded)):
		c.deliveries.WithLabelValues(OutcomeDiscarded).Inc()
		trace.SpanFromContext(ctx).RecordError(err)
		c.cfg.Log.ErrorContext(ctx, "event discarded", "queue", c.cfg.Queue, "event_id", ev.ID, "type", ev.Type, "error", err.Error())
		_ = d.Reject(false)
		return OutcomeDiscarded
	default:
		*failures++
		wait := c.cfg.Retry.Delay(*failures)
		c.deliveries.WithLabelValues(OutcomeRequeued).Inc()
		trace.SpanFromContext(ctx).RecordError(err)
		c.cfg.Log.WarnContext(ctx, "event handling failed; it is requeued", "queue", c.cfg.Queue, "event_id", ev.ID, "type", ev.Type, "error", err.Error(), "retry_in", wait.String())
		// Waiting here, rather than requeueing at once, keeps a failing
		// dependency from being hammered in a tight redelivery loop.
		backoff.Wait(ctx, wait)
		// If the connection is gone the broker has requeued it anyway.
		_ = d.Nack(false, true)
		return OutcomeRequeued
	}
}
