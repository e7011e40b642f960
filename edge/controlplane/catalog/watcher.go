package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/consulwatch"
)

// Config configures a Watcher. Zero values take the defaults below.
type Config struct {
	// Client talks to the local Consul agent. Required.
	Client *api.Client
	// IngressService is the service name the ingress's leaf certificate
	// is issued for, its identity in intentions. Default "ingress".
	IngressService string
	// ConfigKey is the KV key of the edge configuration document.
	// Default "portico/edge/config".
	ConfigKey string
	// Log receives the watcher's logs. Default: discarded.
	Log *slog.Logger
	// Registerer receives the watcher's metrics. Nil registers nothing.
	Registerer prometheus.Registerer
	// Coalesce is how long the watcher waits after a change before it
	// builds a snapshot, so changes close together (a service and its
	// sidecar registering, a deployment replacing instances) become one
	// publish. It adds to the propagation delay. Default 25ms.
	Coalesce time.Duration
	// MinBackoff and MaxBackoff bound the waits between retries of a
	// failing query. Defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// WaitTime is how long a blocking query waits for a change before
	// Consul answers anyway. Default 5m, Consul's own default; at most
	// 10m, Consul's limit.
	WaitTime time.Duration
}

// Defaults of Config.
const (
	DefaultIngressService = "ingress"
	DefaultConfigKey      = "portico/edge/config"
	DefaultCoalesce       = 25 * time.Millisecond
	DefaultMinBackoff     = consulwatch.DefaultMinBackoff
	DefaultMaxBackoff     = consulwatch.DefaultMaxBackoff
	DefaultWaitTime       = consulwatch.DefaultWaitTime
)

func (c Config) withDefaults() Config {
	if c.IngressService == "" {
		c.IngressService = DefaultIngressService
	}
	if c.ConfigKey == "" {
		c.ConfigKey = DefaultConfigKey
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Coalesce <= 0 {
		c.Coalesce = DefaultCoalesce
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.WaitTime <= 0 {
		c.WaitTime = DefaultWaitTime
	}
	c.WaitTime = min(c.WaitTime, consulwatch.MaxWaitTime)
	return c
}

// Watcher follows Consul and publishes snapshots. Make one with New.
type Watcher struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	running atomic.Bool
}

// New returns a Watcher and registers its metrics. It fails without a
// client or when the metrics cannot be registered (for example twice on
// one registry).
func New(cfg Config) (*Watcher, error) {
	if cfg.Client == nil {
		return nil, errors.New("catalog: Config.Client is nil")
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return &Watcher{cfg: cfg, log: cfg.Log.With("component", "catalog"), metrics: m}, nil
}

// Run watches Consul until ctx ends and calls publish with every snapshot
// whose content differs from the previous one. The first call comes once
// every watch has answered once (see state.snapshot). publish is called
// from one goroutine, never concurrently; while it runs, changes
// accumulate and are coalesced into the next snapshot.
//
// Failing queries are retried with backoff for as long as ctx lives, so
// Run returns nil once ctx ends and every goroutine it started has
// stopped. It returns an error only when it cannot start. A Watcher runs
// once at a time.
func (w *Watcher) Run(ctx context.Context, publish func(Snapshot)) error {
	if publish == nil {
		return errors.New("catalog: publish is nil")
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("catalog: the watcher is already running")
	}
	defer w.running.Store(false)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := newState()
	// Every goroutine below, per-service watches included, is in wg, and
	// all of them end with ctx: Run returns only when they have.
	var wg sync.WaitGroup
	wg.Go(func() { w.fetchDatacenter(ctx, st) })
	wg.Go(func() { w.run(ctx, kindLeaf, w.leafWatch(st).Run) })
	wg.Go(func() { w.run(ctx, kindRoots, w.rootsWatch(st).Run) })
	wg.Go(func() { w.run(ctx, kindConfig, w.configWatch(st).Run) })
	wg.Go(func() { w.run(ctx, kindServices, w.servicesWatch(ctx, &wg, st).Run) })
	wg.Go(func() { w.publishLoop(ctx, st, publish) })
	w.log.Info("catalog watcher started", "ingress_service", w.cfg.IngressService, "config_key", w.cfg.ConfigKey)
	wg.Wait()
	w.log.Info("catalog watcher stopped")
	return nil
}

// newWatch makes a Consul watch with the watcher's settings, counted in
// its metrics under kind.
func newWatch[T any](w *Watcher, kind string, log *slog.Logger, fetch consulwatch.Fetch[T], deliver func(T)) *consulwatch.Watch[T] {
	return &consulwatch.Watch[T]{
		Name:       kind,
		Log:        log,
		Fetch:      fetch,
		Deliver:    deliver,
		WaitTime:   w.cfg.WaitTime,
		Backoff:    w.backoff(),
		ResetPause: w.cfg.MinBackoff,
		Hooks: consulwatch.Hooks{
			Failed:    w.metrics.queryErrors.WithLabelValues(kind).Inc,
			Delivered: w.metrics.updates.WithLabelValues(kind).Inc,
			Reset:     w.metrics.indexResets.WithLabelValues(kind).Inc,
		},
	}
}

// backoff spaces out the retries of every failing query of the watcher.
func (w *Watcher) backoff() backoff.Policy {
	return backoff.Policy{Min: w.cfg.MinBackoff, Max: w.cfg.MaxBackoff}
}

// run runs a watch, which fails only when it is built wrong.
func (w *Watcher) run(ctx context.Context, kind string, run func(context.Context) error) {
	if err := run(ctx); err != nil {
		w.log.Error("consul watch did not start", "watch", kind, "err", err)
	}
}
