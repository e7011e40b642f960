// Package purge keeps the edge's cache consistent with the services: it
// consumes their domain events from RabbitMQ and purges the cached views
// each event changes, by tag.
package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/portico-mesh/portico/services/platform/contract"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
)

// Purger applies a purge once per event id; httpcache.Store is one.
type Purger interface {
	PurgeOnce(ctx context.Context, eventID string, dedupeTTL time.Duration, tags ...string) (deleted int, applied bool, err error)
}

// Config configures a Consumer.
type Config struct {
	// URL is the AMQP URL.
	URL string
	// Exchange is the topic exchange events are published to (default
	// broker.DefaultExchange).
	Exchange string
	// Queue is the edge's own durable queue (default "edge.cache-purge").
	// Every edge instance shares it: one purge per event is enough, since
	// they share Redis.
	Queue string
	// Bindings are the routing keys bound (default product.* and user.*).
	Bindings []string
	// Prefetch is how many unacknowledged events the broker hands over
	// at once (default 32).
	Prefetch int
	// DedupeTTL is how long an applied event id is remembered (default
	// 24h); the broker redelivers within that time or not at all.
	DedupeTTL time.Duration
	// RetryDelay is the first wait before an event whose purge failed is
	// handed back to the broker; it doubles up to MaxBackoff.
	RetryDelay time.Duration // default 500ms
	// MaxBackoff caps the waits between reconnections and retries
	// (default 30s).
	MaxBackoff time.Duration
	// PurgeTimeout bounds one purge (default 5s).
	PurgeTimeout time.Duration
	Purger       Purger
	Log          *slog.Logger
	// Registerer receives the metrics (default: a private registry).
	Registerer prometheus.Registerer
}

// Consumer consumes events and purges. Run owns its connection.
type Consumer struct {
	cfg       Config
	connected atomic.Bool
	// failures counts consecutive failed purges, for the retry delay.
	failures int

	events *prometheus.CounterVec
	purged prometheus.Counter
	lag    prometheus.Histogram
}

// NewConsumer returns a consumer; nothing is dialled until Run.
func NewConsumer(cfg Config) (*Consumer, error) {
	if cfg.Purger == nil || cfg.URL == "" {
		return nil, errors.New("purge: Config.URL and Config.Purger are required")
	}
	if cfg.Exchange == "" {
		cfg.Exchange = broker.DefaultExchange
	}
	if cfg.Queue == "" {
		cfg.Queue = "edge.cache-purge"
	}
	if len(cfg.Bindings) == 0 {
		cfg.Bindings = []string{contract.ProductTags.Kind + ".*"}
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 32
	}
	if cfg.DedupeTTL <= 0 {
		cfg.DedupeTTL = 24 * time.Hour
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.PurgeTimeout <= 0 {
		cfg.PurgeTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	c := &Consumer{
		cfg: cfg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_purge_events_total",
			Help: "Events consumed by the cache purger, by result (applied, duplicate, ignored, malformed, failed).",
		}, []string{"result"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_cache_purges_total",
			Help: "Cache keys deleted by event-driven purges.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edge_purge_lag_seconds",
			Help:    "Time from an event's creation (its write's commit) to its purge.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	cfg.Registerer.MustRegister(c.events, c.purged, c.lag)
	return c, nil
}

// Connected reports whether the consumer is attached to the broker now;
// the edge's readiness shows it (not critical: a purge delayed is not an
// outage of the API).
func (c *Consumer) Connected() bool { return c.connected.Load() }

// Ping is Connected as a readiness probe.
func (c *Consumer) Ping(context.Context) error {
	if !c.Connected() {
		return errors.New("not connected to the broker")
	}
	return nil
}

// Run consumes until ctx ends, reconnecting with capped exponential
// back-off and jitter. Unacknowledged events go back to the queue when
// the connection closes, so none is lost across restarts.
func (c *Consumer) Run(ctx context.Context) error {
	attempt := 0
	for {
		started := time.Now()
		err := c.session(ctx)
		c.connected.Store(false)
		select {
		case <-ctx.Done():
			return nil // an error now is only the shutdown
		default:
		}
		if time.Since(started) > time.Minute {
			attempt = 0 // it was up for a while: start the back-off over
		}
		attempt++
		wait := backoff(attempt, c.cfg.RetryDelay, c.cfg.MaxBackoff)
		c.cfg.Log.Warn("purge consumer disconnected; reconnecting", "error", errString(err), "in", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// backoff is base * 2^(attempt-1), capped, with up to 20% jitter so that
// edge instances do not reconnect in step.
func backoff(attempt int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d - time.Duration(rand.Int64N(int64(d)/5+1)) //nolint:gosec // jitter needs no cryptographic randomness
}

// session consumes over one connection until it fails or ctx ends.
func (c *Consumer) session(ctx context.Context) error {
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Dial:       amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": "edge cache purge"},
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
	if err := broker.DeclareExchange(ch, c.cfg.Exchange); err != nil {
		return err
	}
	// A classic durable queue: quorum queues drop a message after a
	// delivery limit, and an event requeued through a long Redis outage
	// must never be dropped.
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
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	c.connected.Store(true)
	c.cfg.Log.Info("purge consumer connected", "queue", c.cfg.Queue, "exchange", c.cfg.Exchange)
	for {
		select {
		case <-ctx.Done():
			return nil
		case amqpErr := <-closed:
			if amqpErr != nil {
				return amqpErr
			}
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			c.handle(ctx, d)
		}
	}
}

// handle purges for one delivery and settles it. It acknowledges only
// after the purge succeeded; on failure it waits (growing) and requeues.
func (c *Consumer) handle(ctx context.Context, d amqp.Delivery) {
	var ev events.Envelope
	if err := json.Unmarshal(d.Body, &ev); err != nil || ev.ID == "" || ev.Type == "" {
		// Redelivery cannot fix it. Rejected without requeue, it goes to
		// a dead-letter exchange if an operator's policy sets one.
		c.events.WithLabelValues("malformed").Inc()
		c.cfg.Log.Error("malformed event rejected", "message_id", d.MessageId, "routing_key", d.RoutingKey)
		_ = d.Reject(false)
		return
	}
	tags := TagsFor(ev)
	if len(tags) == 0 {
		c.events.WithLabelValues("ignored").Inc()
		_ = d.Ack(false)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, c.cfg.PurgeTimeout)
	deleted, applied, err := c.cfg.Purger.PurgeOnce(pctx, ev.ID, c.cfg.DedupeTTL, tags...)
	cancel()
	if err != nil {
		c.failures++
		c.events.WithLabelValues("failed").Inc()
		wait := backoff(c.failures, c.cfg.RetryDelay, c.cfg.MaxBackoff)
		c.cfg.Log.Warn("purge failed; the event is requeued", "event_id", ev.ID, "type", ev.Type, "error", err.Error(), "retry_in", wait.String())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		// Requeued, the event is tried again; if the connection is gone
		// the broker requeues it anyway.
		_ = d.Nack(false, true)
		return
	}
	c.failures = 0
	if !applied {
		c.events.WithLabelValues("duplicate").Inc()
		_ = d.Ack(false)
		return
	}
	c.events.WithLabelValues("applied").Inc()
	c.purged.Add(float64(deleted))
	if !ev.Time.IsZero() {
		c.lag.Observe(time.Since(ev.Time).Seconds())
	}
	c.cfg.Log.Debug("purged", "event_id", ev.ID, "type", ev.Type, "tags", strings.Join(tags, " "), "keys", deleted)
	if err := d.Ack(false); err != nil {
		// The purge is done and remembered: a redelivery is a duplicate.
		c.cfg.Log.Warn("ack failed", "event_id", ev.ID, "error", err.Error())
	}
}

// cacheTags lists the resources whose reads are cached, by event kind.
// Users' reads are private and never stored, so their events purge
// nothing and are not even bound.
var cacheTags = map[string]contract.CacheTags{
	contract.ProductTags.Kind: contract.ProductTags,
}

// TagsFor returns the cache tags an event changes: the item's tag and its
// list's, as the services send them in Surrogate-Key (contract.CacheTags).
func TagsFor(ev events.Envelope) []string {
	kind, _, _ := strings.Cut(ev.Type, ".")
	t, ok := cacheTags[kind]
	if !ok {
		return nil
	}
	tags := []string{t.List}
	if id, ok := subjectID(ev); ok {
		tags = append([]string{t.ItemTag(id)}, tags...)
	}
	return tags
}

// subjectID reads the id from a subject such as "products/42", or from
// the data's id member.
func subjectID(ev events.Envelope) (int64, bool) {
	if _, id, ok := strings.Cut(ev.Subject, "/"); ok {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			return n, true
		}
	}
	var data struct {
		ID json.Number `json:"id"`
	}
	if json.Unmarshal(ev.Data, &data) == nil && data.ID != "" {
		if n, err := data.ID.Int64(); err == nil {
			return n, true
		}
	}
	return 0, false
}
