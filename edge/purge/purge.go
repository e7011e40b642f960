// Package purge keeps the edge's cache consistent with the services: it
// handles their domain events, delivered by a broker.Consumer, and purges
// the cached views each event changes, by tag.
package purge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Purger applies a purge once per event id; httpcache.Store is one.
type Purger interface {
	PurgeOnce(ctx context.Context, eventID string, dedupeTTL time.Duration, tags ...string) (deleted int, applied bool, err error)
}

// Config configures the purge and its consumer.
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
	// Bindings are the routing keys bound (default: the events of every
	// kind whose reads are cached, product.*).
	Bindings []string
	// Prefetch is how many unacknowledged events the broker hands over
	// at once (default 32).
	Prefetch int
	// DedupeTTL is how long an applied event id is remembered (default
	// 24h); the broker redelivers within that time or not at all.
	DedupeTTL time.Duration
	// RetryDelay is the first wait before an event whose purge failed is
	// handed back to the broker, and before a reconnection; the waits
	// double up to MaxBackoff.
	RetryDelay time.Duration // default 500ms
	MaxBackoff time.Duration // default 30s
	// PurgeTimeout bounds one purge (default 5s).
	PurgeTimeout time.Duration
	Purger       Purger
	Log          *slog.Logger
	// Registerer receives the metrics (default: a private registry).
	Registerer prometheus.Registerer
	// Tracing makes each purge a span ("process <queue>") in the trace of
	// the write whose event it handles (broker.ConsumerConfig.Tracing).
	Tracing telemetry.Tracing
}

// DefaultQueue is the edge's purge queue.
const DefaultQueue = "edge.cache-purge"

// NewConsumer is the purge wired to the broker: a consumer of the edge's
// queue whose handler is Handler.Handle. Run it for as long as the edge
// runs.
func NewConsumer(cfg Config) (*broker.Consumer, error) {
	if cfg.URL == "" {
		return nil, errors.New("purge: Config.URL is required")
	}
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if len(cfg.Bindings) == 0 {
		for _, kind := range slices.Sorted(maps.Keys(cacheTags)) {
			cfg.Bindings = append(cfg.Bindings, kind+".*")
		}
	}
	return broker.NewConsumer(broker.ConsumerConfig{
		URL: cfg.URL, Exchange: cfg.Exchange, Queue: cfg.Queue, Bindings: cfg.Bindings,
		Prefetch: cfg.Prefetch, HandleTimeout: cfg.PurgeTimeout,
		Retry: backoff.Policy{Min: cfg.RetryDelay, Max: cfg.MaxBackoff},
		Name:  "edge cache purge", Handle: h.Handle, Log: cfg.Log, Registerer: cfg.Registerer,
		Tracing: cfg.Tracing,
	})
}

// Handler purges the cache for one event; its metrics are the edge's.
type Handler struct {
	purger    Purger
	dedupeTTL time.Duration
	log       *slog.Logger

	events *prometheus.CounterVec
	purged prometheus.Counter
	lag    prometheus.Histogram
}

// NewHandler returns the purge handler. Of cfg it reads Purger (required),
// DedupeTTL, Log and Registerer.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Purger == nil {
		return nil, errors.New("purge: Config.Purger is required")
	}
	if cfg.DedupeTTL <= 0 {
		cfg.DedupeTTL = 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	h := &Handler{
		purger: cfg.Purger, dedupeTTL: cfg.DedupeTTL, log: cfg.Log,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_purge_events_total",
			Help: "Events handled by the cache purger, by result (applied, duplicate, ignored, failed); malformed ones are broker_consumer_deliveries_total{outcome=\"malformed\"}.",
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
	if err := errors.Join(cfg.Registerer.Register(h.events), cfg.Registerer.Register(h.purged), cfg.Registerer.Register(h.lag)); err != nil {
		return nil, err
	}
	return h, nil
}

// Handle purges the tags ev changes, once per event id. An error (Redis
// is away) has the consumer hand the event back to be tried again.
func (h *Handler) Handle(ctx context.Context, ev events.Envelope) error {
	tags := TagsFor(ev)
	if len(tags) == 0 {
		h.events.WithLabelValues("ignored").Inc()
		return nil
	}
	deleted, applied, err := h.purger.PurgeOnce(ctx, ev.ID, h.dedupeTTL, tags...)
	if err != nil {
		h.events.WithLabelValues("failed").Inc()
		return err
	}
	if !applied {
		h.events.WithLabelValues("duplicate").Inc()
		return nil
	}
	h.events.WithLabelValues("applied").Inc()
	h.purged.Add(float64(deleted))
	if !ev.Time.IsZero() {
		telemetry.Observe(ctx, h.lag, time.Since(ev.Time).Seconds())
	}
	h.log.DebugContext(ctx, "purged", "event_id", ev.ID, "type", ev.Type, "tags", strings.Join(tags, " "), "keys", deleted)
	return nil
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
