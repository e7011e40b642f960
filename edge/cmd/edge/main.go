// Command edge is Portico's caching and documentation edge: the ingress
// sends it the cacheable routes and the documentation routes. It answers
// from its Redis cache or forwards to the service through its sidecar,
// purges the cache from the services' events, and serves the merged
// OpenAPI document with Swagger UI and the web dashboard.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/edge/purge"
	"github.com/portico-mesh/portico/edge/upstream"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/registry"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/web"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const serviceName = "edge"

// config is the edge's whole configuration, read once from the
// environment (edge/README.md lists it).
type config struct {
	HTTPAddr string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8090"`
	// Upstreams maps service names to the local listeners of the edge's
	// sidecar: "users=127.0.0.1:19001,products=127.0.0.1:19002".
	Upstreams        string        `env:"EDGE_UPSTREAMS,required"`
	OriginTimeout    time.Duration `env:"EDGE_ORIGIN_TIMEOUT" envDefault:"15s"`
	MaxResponseBytes int64         `env:"EDGE_MAX_RESPONSE_BYTES" envDefault:"8388608"`

	RedisURL        string        `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	RedisTimeout    time.Duration `env:"EDGE_REDIS_TIMEOUT" envDefault:"250ms"`
	RedisRetryAfter time.Duration `env:"EDGE_REDIS_RETRY_AFTER" envDefault:"1s"`
	CachePrefix     string        `env:"EDGE_CACHE_PREFIX" envDefault:"edge:cache"`
	CacheMaxEntry   int           `env:"EDGE_CACHE_MAX_ENTRY_BYTES" envDefault:"1048576"`

	AMQPURL        string        `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	AMQPExchange   string        `env:"AMQP_EXCHANGE" envDefault:"portico.events"`
	PurgeQueue     string        `env:"EDGE_PURGE_QUEUE" envDefault:"edge.cache-purge"`
	PurgeDedupeTTL time.Duration `env:"EDGE_PURGE_DEDUPE_TTL" envDefault:"24h"`

	// Consul, when CONSUL_HTTP_ADDR is set, registers the edge like the
	// services (with its sidecar) and discovers API documents in the
	// catalog. Without it, DocsServices lists the documents.
	Consul service.ConsulConfig
	// DocsServices is "service=/path,..."; default: every upstream at
	// /openapi.json. Used only without Consul.
	DocsServices string `env:"EDGE_DOCS_SERVICES"`
	SwaggerUIDir string `env:"EDGE_SWAGGER_UI_DIR"`

	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

func main() {
	command.Main(command.Spec[config]{
		Name: serviceName, Load: loadConfig, Run: run,
		LogLevel: func(c config) string { return c.LogLevel },
	})
}

// loadConfig reads the configuration from environ (KEY=value entries).
func loadConfig(environ []string) (config, error) {
	var cfg config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: env.ToMap(environ)}); err != nil {
		return config{}, err
	}
	if cfg.SwaggerUIDir == "" {
		cfg.SwaggerUIDir = apidocs.DefaultAssetsDir
	}
	if _, err := upstream.ParseAddresses(cfg.Upstreams); err != nil {
		return config{}, fmt.Errorf("EDGE_UPSTREAMS: %w", err)
	}
	if _, err := docSources(cfg); err != nil {
		return config{}, fmt.Errorf("EDGE_DOCS_SERVICES: %w", err)
	}
	if _, err := redis.ParseURL(cfg.RedisURL); err != nil {
		return config{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	for name, d := range map[string]time.Duration{
		"EDGE_ORIGIN_TIMEOUT": cfg.OriginTimeout, "EDGE_REDIS_TIMEOUT": cfg.RedisTimeout,
		"EDGE_REDIS_RETRY_AFTER": cfg.RedisRetryAfter, "EDGE_PURGE_DEDUPE_TTL": cfg.PurgeDedupeTTL,
		"SHUTDOWN_TIMEOUT": cfg.ShutdownTimeout,
	} {
		if d <= 0 {
			return config{}, fmt.Errorf("%s must be positive", name)
		}
	}
	if cfg.CacheMaxEntry <= 0 || cfg.MaxResponseBytes <= 0 {
		return config{}, errors.New("EDGE_CACHE_MAX_ENTRY_BYTES and EDGE_MAX_RESPONSE_BYTES must be positive")
	}
	return cfg, nil
}

// docSources is the static list of documents used without Consul.
func docSources(cfg config) (apidocs.StaticCatalog, error) {
	addrs, err := upstream.ParseAddresses(cfg.Upstreams)
	if err != nil {
		return nil, err
	}
	if cfg.DocsServices == "" {
		var out apidocs.StaticCatalog
		for _, name := range addrs.Names() {
			out = append(out, apidocs.Source{Service: name, Path: "/openapi.json"})
		}
		return out, nil
	}
	var out apidocs.StaticCatalog
	for item := range strings.SplitSeq(cfg.DocsServices, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		name, path = strings.TrimSpace(name), strings.TrimSpace(path)
		if !ok || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("entry %q: want service=/path", item)
		}
		if _, known := addrs[name]; !known {
			return nil, fmt.Errorf("service %s has no upstream in EDGE_UPSTREAMS", name)
		}
		out = append(out, apidocs.Source{Service: name, Path: path})
	}
	return out, nil
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	e, err := newEdge(ctx, cfg, log)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err), e.close(context.WithoutCancel(ctx)))
	}
	log.InfoContext(ctx, "serving", "addr", ln.Addr().String(), "version", version)
	return e.serve(ctx, ln)
}

// edgeProcess is everything the edge owns, wired once.
type edgeProcess struct {
	cfg      config
	log      *slog.Logger
	tracing  telemetry.Tracing
	registry *prometheus.Registry
	redis    *redis.Client
	store    *httpcache.Store
	cache    *httpcache.Cache
	proxy    *upstream.Proxy
	consumer *purge.Consumer
	docs     *apidocs.Watcher
	srv      *web.Server
}

func newEdge(ctx context.Context, cfg config, log *slog.Logger) (*edgeProcess, error) {
	tracing, err := telemetry.NewTracing(ctx, serviceName, version)
	if err != nil {
		return nil, err
	}
	e := &edgeProcess{cfg: cfg, log: log, tracing: tracing, registry: prometheus.NewRegistry()}
	e.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := e.wire(); err != nil {
		return nil, errors.Join(err, e.close(context.WithoutCancel(ctx)))
	}
	if err := apidocs.CheckAssets(cfg.SwaggerUIDir); err != nil {
		log.Warn("Swagger UI is unavailable until its assets are installed", "dir", cfg.SwaggerUIDir, "error", err.Error())
	}
	return e, nil
}

func (e *edgeProcess) wire() error {
	cfg := e.cfg
	addrs, err := upstream.ParseAddresses(cfg.Upstreams)
	if err != nil {
		return err
	}
	e.proxy = upstream.New(upstream.Config{
		Addresses:        addrs,
		MaxResponseBytes: cfg.MaxResponseBytes,
		Propagator:       e.tracing.Propagator,
	})
	if e.redis, err = httpcache.NewRedisClient(cfg.RedisURL, cfg.RedisTimeout); err != nil {
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
		Log: e.log, Registerer: e.registry,
	}); err != nil {
		return err
	}
	if e.consumer, err = purge.NewConsumer(purge.Config{
		URL: cfg.AMQPURL, Exchange: cfg.AMQPExchange, Queue: cfg.PurgeQueue, DedupeTTL: cfg.PurgeDedupeTTL,
		Purger: e.store, Log: e.log, Registerer: e.registry,
	}); err != nil {
		return err
	}
	catalog, err := e.catalog()
	if err != nil {
		return err
	}
	if e.docs, err = apidocs.NewWatcher(apidocs.WatcherConfig{
		Catalog: catalog,
		Fetch:   apidocs.HTTPFetcher(&http.Client{Transport: &http.Transport{Proxy: nil}}, e.proxy.Address),
		Log:     e.log,
	}); err != nil {
		return err
	}

	e.srv = web.New(web.Config{
		Service:  serviceName,
		Log:      e.log,
		Registry: e.registry,
		Tracing:  e.tracing,
		Classify: upstream.Classify,
		// Nothing is critical: without Redis the edge forwards everything
		// (BYPASS), without the broker purges wait in the queue.
		Checks: []web.Check{
			{Name: "redis", Probe: e.store.Ping},
			{Name: "broker", Probe: e.consumer.Ping},
		},
		// Bodies of unsafe requests pass through to the services, which
		// enforce their own (1 MiB) limit.
		BodyLimit: 2 << 20,
	})
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

func (e *edgeProcess) catalog() (apidocs.Catalog, error) {
	if e.cfg.Consul.ConsulHTTPAddr == "" {
		return docSources(e.cfg)
	}
	consulCfg := api.DefaultConfig()
	consulCfg.Address = e.cfg.Consul.ConsulHTTPAddr
	client, err := api.NewClient(consulCfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return apidocs.ConsulCatalog{Client: client}, nil
}

// serve serves on ln until ctx ends, with the purge consumer and the
// documentation watcher running beside the server, and, with Consul
// configured, the registration. Then it shuts down: deregister and let
// callers' sidecars notice, stop accepting and finish in-flight requests,
// stop the background work, release the connections.
func (e *edgeProcess) serve(ctx context.Context, ln net.Listener) error {
	var reg *registry.Registrar
	if e.cfg.Consul.ConsulHTTPAddr != "" {
		var err error
		if reg, err = registry.New(e.registryConfig(ln.Addr())); err != nil {
			return errors.Join(err, ln.Close(), e.close(context.WithoutCancel(ctx)))
		}
	}
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.consumer.Run(bgCtx); err != nil {
			e.log.Error("purge consumer stopped", "error", err.Error())
		}
	})
	wg.Go(func() {
		if err := e.docs.Run(bgCtx); err != nil {
			e.log.Error("documentation watcher stopped", "error", err.Error())
		}
	})

	serveErr := registry.Serve(ctx, reg, registry.Lifecycle{
		DeregisterTimeout: 5 * time.Second,
		Drain:             min(e.cfg.Consul.DrainDelay, e.cfg.ShutdownTimeout),
		Log:               e.log,
	}, func(ctx context.Context) error { return e.srv.Serve(ctx, ln, e.cfg.ShutdownTimeout) })
	stopBackground()
	wg.Wait()
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return errors.Join(serveErr, e.close(closeCtx))
}

// registryConfig registers the edge as "edge" without an "openapi" meta:
// its merged document is not one more service document to merge.
func (e *edgeProcess) registryConfig(addr net.Addr) registry.Config {
	c := e.cfg.Consul
	cfg := registry.Config{
		ConsulAddr:      c.ConsulHTTPAddr,
		Name:            serviceName,
		ID:              c.ServiceID,
		Address:         "127.0.0.1",
		Version:         version,
		Tags:            c.ServiceTags,
		SidecarPort:     c.SidecarPort,
		CheckInterval:   c.CheckInterval,
		DeregisterAfter: c.DeregisterAfter,
		Log:             e.log,
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		cfg.Port = tcp.Port
		if !tcp.IP.IsUnspecified() {
			cfg.Address = tcp.IP.String()
		}
	}
	cfg.Upstreams = sidecarUpstreams(e.cfg.Upstreams)
	return cfg
}

// sidecarUpstreams asks the sidecar for a local listener for each
// upstream at a loopback address in EDGE_UPSTREAMS: in the mesh, those
// addresses are the sidecar's and the registration creates them.
func sidecarUpstreams(spec string) []registry.Upstream {
	addrs, err := upstream.ParseAddresses(spec)
	if err != nil {
		return nil // checked when the configuration was loaded
	}
	var out []registry.Upstream
	for _, name := range addrs.Names() {
		host, portText, err := net.SplitHostPort(addrs[name])
		if err != nil {
			continue
		}
		port, err := strconv.Atoi(portText)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			continue
		}
		out = append(out, registry.Upstream{Service: name, LocalPort: port})
	}
	return out
}

// close releases what wire created; it tolerates a partial wiring.
func (e *edgeProcess) close(ctx context.Context) error {
	var errs []error
	if e.cache != nil {
		e.cache.Close()
	}
	if e.proxy != nil {
		e.proxy.CloseIdleConnections()
	}
	if e.redis != nil {
		errs = append(errs, e.redis.Close())
	}
	errs = append(errs, e.tracing.Shutdown(ctx))
	return errors.Join(errs...)
}
