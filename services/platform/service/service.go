// Package service holds what every Portico business service process does
// the same way: its base configuration, start-up (tracing, database,
// migrations, broker, outbox relay) and an orderly shutdown.
package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/registry"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
)

// BaseConfig is the configuration every service reads from its environment.
type BaseConfig struct {
	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	DatabaseURL     string        `env:"DATABASE_URL,required"`
	AMQPURL         string        `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	AMQPExchange    string        `env:"AMQP_EXCHANGE" envDefault:"portico.events"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	Consul          ConsulConfig
}

// ConsulConfig is how an instance registers itself in the service mesh.
// Without ConsulHTTPAddr nothing is registered.
type ConsulConfig struct {
	ConsulHTTPAddr string `env:"CONSUL_HTTP_ADDR"`
	// ServiceID is unique per instance; empty means <name>-<hostname>-<port>.
	ServiceID   string   `env:"SERVICE_ID"`
	ServiceTags []string `env:"SERVICE_TAGS" envSeparator:","`
	// SidecarPort is the Envoy sidecar's public mTLS port; 0 lets the
	// agent assign one.
	SidecarPort     int           `env:"SIDECAR_PORT" envDefault:"0"`
	CheckInterval   time.Duration `env:"CONSUL_CHECK_INTERVAL" envDefault:"2s"`
	DeregisterAfter time.Duration `env:"CONSUL_DEREGISTER_AFTER" envDefault:"1m"`
	// DrainDelay is how long the service keeps serving after it
	// deregistered at shutdown, while its callers' sidecars learn that
	// it is gone.
	DrainDelay time.Duration `env:"CONSUL_DRAIN_DELAY" envDefault:"1s"`
}

// Runtime is what a running service owns. Open builds it; Run serves until
// its context ends and then releases everything in order.
type Runtime struct {
	Name     string
	Version  string
	Log      *slog.Logger
	Tracing  telemetry.Tracing
	Registry *prometheus.Registry
	Pool     *pgxpool.Pool

	cfg       BaseConfig
	publisher *broker.Publisher
	relay     *outbox.Relay
}

// Open connects to the database (waiting for it), applies migrations under
// an advisory lock, and prepares the broker publisher and outbox relay. The
// broker is not required to be up.
func Open(ctx context.Context, cfg BaseConfig, name, version string, migrations fs.FS, log *slog.Logger) (*Runtime, error) {
	tracing, err := telemetry.NewTracing(ctx, name, version)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pool, err := pgstore.Connect(ctx, cfg.DatabaseURL, tracing.Provider, log)
	if err != nil {
		return nil, errors.Join(err, tracing.Shutdown(context.WithoutCancel(ctx)))
	}
	// The outbox's line first: the relay below needs its table, and a
	// service migration may write events.
	if err := pgstore.Migrate(ctx, pool, log, outbox.Migrations(), pgstore.Line{Migrations: migrations}); err != nil {
		pool.Close()
		return nil, errors.Join(err, tracing.Shutdown(context.WithoutCancel(ctx)))
	}
	publisher := broker.NewPublisher(broker.PublisherConfig{URL: cfg.AMQPURL, Exchange: cfg.AMQPExchange, Source: name})
	relay := outbox.NewRelay(outbox.RelayConfig{Pool: pool, Publisher: publisher, Log: log, Registerer: reg})
	return &Runtime{
		Name: name, Version: version, Log: log, Tracing: tracing, Registry: reg, Pool: pool,
		cfg: cfg, publisher: publisher, relay: relay,
	}, nil
}

// WebConfig returns the HTTP configuration with this runtime's logger,
// metrics, tracing and readiness checks.
func (rt *Runtime) WebConfig(classify func(error) *problem.Problem) web.Config {
	return web.Config{
		Service:  rt.Name,
		Log:      rt.Log,
		Registry: rt.Registry,
		Tracing:  rt.Tracing,
		Classify: classify,
		Checks: []web.Check{
			{Name: "database", Critical: true, Probe: rt.Pool.Ping},
			// Writes keep working while the broker is away (the outbox holds
			// the events), so its absence degrades but does not unready us.
			{Name: "broker", Critical: false, Probe: rt.publisher.Ping},
		},
	}
}

// Run serves HTTP on the configured address and relays the outbox until ctx
// ends, then shuts down: stop accepting and finish in-flight requests,
// stop the relay and flush what is left, close the broker and the pool.
func (rt *Runtime) Run(ctx context.Context, srv *web.Server) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", rt.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", rt.cfg.HTTPAddr, err)
	}
	rt.Log.InfoContext(ctx, "serving", "addr", ln.Addr().String(), "version", rt.Version)
	return rt.Serve(ctx, srv, ln)
}

// Serve is Run on an existing listener (tests pass one on a free port).
//
// With Consul configured, the instance registers once it listens and, when
// ctx ends, deregisters before it stops serving, so that callers stop
// sending it requests before it refuses them.
func (rt *Runtime) Serve(ctx context.Context, srv *web.Server, ln net.Listener) error {
	var reg *registry.Registrar
	if rt.cfg.Consul.ConsulHTTPAddr != "" {
		var err error
		if reg, err = registry.New(rt.registryConfig(ln.Addr())); err != nil {
			return errors.Join(err, ln.Close(), rt.Close(context.WithoutCancel(ctx)))
		}
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := rt.relay.Run(relayCtx); err != nil {
			rt.Log.Error("outbox relay stopped", "error", err.Error())
		}
	})

	serveErr := registry.Serve(ctx, reg, registry.Lifecycle{
		DeregisterTimeout: rt.flushTimeout(),
		Drain:             min(rt.cfg.Consul.DrainDelay, rt.cfg.ShutdownTimeout),
		Log:               rt.Log,
	}, func(ctx context.Context) error { return srv.Serve(ctx, ln, rt.cfg.ShutdownTimeout) })

	// Every request has finished, so every event it wrote is committed:
	// stop the relay and give it one last chance to publish them.
	stopRelay()
	wg.Wait()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rt.flushTimeout())
	defer cancel()
	if n, err := rt.relay.Drain(flushCtx); err != nil {
		rt.Log.Warn("outbox not fully flushed; the rest is published at next start", "published", n, "error", err.Error())
	} else if n > 0 {
		rt.Log.Info("outbox flushed", "published", n)
	}
	return errors.Join(serveErr, rt.Close(flushCtx))
}

// registryConfig describes this instance to Consul; the address and port
// are the listener's, so a port picked by the kernel is registered right.
func (rt *Runtime) registryConfig(addr net.Addr) registry.Config {
	c := rt.cfg.Consul
	cfg := registry.Config{
		ConsulAddr:      c.ConsulHTTPAddr,
		Name:            rt.Name,
		ID:              c.ServiceID,
		Address:         "127.0.0.1",
		Version:         rt.Version,
		Tags:            c.ServiceTags,
		OpenAPIPath:     "/openapi.json",
		SidecarPort:     c.SidecarPort,
		CheckInterval:   c.CheckInterval,
		DeregisterAfter: c.DeregisterAfter,
		Log:             rt.Log,
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		cfg.Port = tcp.Port
		if !tcp.IP.IsUnspecified() {
			cfg.Address = tcp.IP.String()
		}
	}
	return cfg
}

func (rt *Runtime) flushTimeout() time.Duration {
	if d := rt.cfg.ShutdownTimeout / 2; d > 0 {
		return d
	}
	return 5 * time.Second
}

// Close releases the broker connection, the pool and the tracer.
func (rt *Runtime) Close(ctx context.Context) error {
	err := rt.publisher.Close()
	rt.Pool.Close()
	return errors.Join(err, rt.Tracing.Shutdown(ctx))
}
