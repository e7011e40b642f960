// Command edge is Portico's caching and documentation edge: the ingress
// sends it the cacheable routes and the documentation routes. It answers
// from its Redis cache or forwards to the service through its sidecar,
// purges the cache from the services' events, and serves the merged
// OpenAPI document with Swagger UI and the web dashboard.
//
// config.go reads and checks the configuration; this file wires the
// components onto the process lifecycle (package process).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/edge/purge"
	"github.com/portico-mesh/portico/edge/upstream"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/process"
	"github.com/portico-mesh/portico/services/platform/web"
	dashboard "github.com/portico-mesh/portico/web"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const serviceName = "edge"

func main() {
	command.Main(command.Spec[config]{
		Name: serviceName, Load: loadConfig, Run: run,
		LogLevel: func(c config) string { return c.LogLevel },
	})
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	e, err := newEdge(ctx, cfg, log)
	if err != nil {
		return err
	}
	return e.proc.Run(ctx, e.srv, cfg.HTTPAddr)
}

// edgeProcess is everything the edge owns, wired once.
type edgeProcess struct {
	proc     *process.Process
	registry *prometheus.Registry
	redis    *redis.Client
	store    *httpcache.Store
	cache    *httpcache.Cache
	proxy    *upstream.Proxy
	consumer *broker.Consumer
	docs     *apidocs.Watcher
	srv      *web.Server
}

// newEdge wires the edge and starts its background loops: the purge
// consumer and the documentation watcher.
func newEdge(ctx context.Context, cfg config, log *slog.Logger) (*edgeProcess, error) {
	proc, err := process.Open(ctx, process.Config{
		Name: serviceName, Version: version, Log: log, ShutdownTimeout: cfg.ShutdownTimeout,
		// No OpenAPI path: the edge's merged document is not one more
		// service document to merge.
		Consul: cfg.Consul, Upstreams: sidecarUpstreams(cfg.Upstreams), DebugAddr: cfg.DebugAddr,
	})
	if err != nil {
		return nil, err
	}
	e := &edgeProcess{proc: proc, registry: proc.Registry}
	// Released after the loops stopped, in reverse: the cache's
	// background refreshes, then the connections they use.
	proc.OnClose("origin connections", func(context.Context) error {
		if e.proxy != nil {
			e.proxy.CloseIdleConnections()
		}
		return nil
	})
	proc.OnClose("redis", func(context.Context) error {
		if e.redis != nil {
			return e.redis.Close()
		}
		return nil
	})
	proc.OnClose("cache", func(context.Context) error {
		if e.cache != nil {
			e.cache.Close()
		}
		return nil
	})
	if err := e.wire(cfg, log); err != nil {
		return nil, errors.Join(err, proc.Close(context.WithoutCancel(ctx)))
	}
	if err := apidocs.CheckAssets(cfg.SwaggerUIDir); err != nil {
		log.Warn("Swagger UI is unavailable until its assets are installed", "dir", cfg.SwaggerUIDir, "error", err.Error())
	}
	proc.Go("purge consumer", e.consumer.Run)
	proc.Go("documentation watcher", e.docs.Run)
	return e, nil
}

func (e *edgeProcess) wire(cfg config, log *slog.Logger) error {
	addrs, err := upstream.ParseAddresses(cfg.Upstreams)
	if err != nil {
		return err
	}
	e.proxy = upstream.New(upstream.Config{
		Addresses:        addrs,
		MaxResponseBytes: cfg.MaxResponseBytes,
		Tracing:          e.proc.Tracing,
	})
	if e.redis, err = httpcache.NewRedisClient(cfg.RedisURL, cfg.RedisTimeout); err != nil {
		return err
	}
	if err := httpcache.TraceRedis(e.redis, e.proc.Tracing); err != nil {
		return err
	}
	if e.store, err = httpcache.NewStore(httpcache.StoreConfig{
		Client: e.redis, Prefix: cfg.CachePrefix, OpTimeout: cfg.RedisTimeout, RetryAfter: cfg.RedisRetryAfter,
		PurgeMarkerTTL: max(10*time.Minute, 4*cfg.OriginTimeout),
	}); err != nil {
		return err
	}
	if e.cache, err = httpcache.New(httpcache.Config{
		Store: e.store, Origin: e.proxy, MaxEntryBytes: cfg.CacheMaxEntry, OriginTimeout: cfg.OriginTimeout,
		Log: log, Registerer: e.registry,
	}); err != nil {
		return err
	}
	if e.consumer, err = purge.NewConsumer(purge.Config{
		URL: cfg.AMQPURL, Exchange: cfg.AMQPExchange, Queue: cfg.PurgeQueue, DedupeTTL: cfg.PurgeDedupeTTL,
		Purger: e.store, Log: log, Registerer: e.registry, Tracing: e.proc.Tracing,
	}); err != nil {
		return err
	}
	catalog, err := docCatalog(cfg)
	if err != nil {
		return err
	}
	if e.docs, err = apidocs.NewWatcher(apidocs.WatcherConfig{
		Catalog: catalog,
		Fetch:   apidocs.HTTPFetcher(&http.Client{Transport: &http.Transport{Proxy: nil}}, e.proxy.Address),
		Log:     log,
	}); err != nil {
		return err
	}

	webCfg := e.proc.WebConfig(upstream.Classify,
		// Nothing is critical: without Redis the edge forwards everything
		// (BYPASS), without the broker purges wait in the queue.
		web.Check{Name: "redis", Probe: e.store.Ping},
		web.Check{Name: "broker", Probe: e.consumer.Ping},
	)
	// Bodies of unsafe requests pass through to the services, which
	// enforce their own (1 MiB) limit.
	webCfg.BodyLimit = 2 << 20
	e.srv = web.New(webCfg)
	// The cache comes first: a request the ingress sent for a service
	// (X-Portico-Upstream) goes there whatever its path, even
	// /openapi.json; the others fall through to the documentation.
	cacheHandler := e.cache.Handler()
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		e.srv.Mount(web.Route{Method: m, Path: "/*", Handler: cacheHandler})
	}
	e.srv.Mount(apidocs.Routes(e.docs, cfg.SwaggerUIDir)...)
	board, err := dashboard.New()
	if err != nil {
		return err
	}
	e.srv.Mount(board.Routes()...)
	return nil
}

// docCatalog lists the API documents to merge: from the Consul catalog
// when Consul is configured, else from the configuration.
func docCatalog(cfg config) (apidocs.Catalog, error) {
	if cfg.Consul.ConsulHTTPAddr == "" {
		return docSources(cfg)
	}
	consulCfg := api.DefaultConfig()
	consulCfg.Address = cfg.Consul.ConsulHTTPAddr
	client, err := api.NewClient(consulCfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return apidocs.ConsulCatalog{Client: client}, nil
}
