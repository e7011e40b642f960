// Package service holds what every Portico business service process does
// the same way: its base configuration and, on top of the process
// lifecycle (package process), a database with migrations, the outbox
// relay and the idempotency keys' sweeper, released in order at shutdown.
package service

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/idempotency"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/process"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
)

// BaseConfig is the configuration every service reads from its environment.
type BaseConfig struct {
	HTTPAddr     string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	DatabaseURL  string `env:"DATABASE_URL,required"`
	AMQPURL      string `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	AMQPExchange string `env:"AMQP_EXCHANGE" envDefault:"portico.events"`
	LogLevel     string `env:"LOG_LEVEL" envDefault:"info"`
	// DebugAddr serves Go's profiles on a loopback address; empty: off.
	DebugAddr       string        `env:"DEBUG_ADDR"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	Consul          ConsulConfig
}

// ConsulConfig is how an instance registers itself in the service mesh.
type ConsulConfig = process.ConsulConfig

// Runtime is what a running service owns: a process (package process)
// with a database pool and the outbox relay that publishes what the
// service writes. Open builds it; Run serves until its context ends and
// then releases everything in order.
type Runtime struct {
	Name     string
	Version  string
	Log      *slog.Logger
	Tracing  telemetry.Tracing
	Registry *prometheus.Registry
	Pool     *pgxpool.Pool
	// Process is the lifecycle underneath: Go adds a background loop of
	// the service's own (an event consumer, say).
	Process *process.Process

	cfg       BaseConfig
	publisher *broker.Publisher
}

// Open connects to the database (waiting for it), applies migrations under
// an advisory lock, and adds the outbox relay, which publishes through a
// broker publisher while the service serves. The broker is not required
// to be up.
func Open(ctx context.Context, cfg BaseConfig, name, version string, migrations fs.FS, log *slog.Logger) (*Runtime, error) {
	p, err := process.Open(ctx, process.Config{
		Name: name, Version: version, Log: log, ShutdownTimeout: cfg.ShutdownTimeout,
		Consul: cfg.Consul, OpenAPIPath: "/openapi.json", DebugAddr: cfg.DebugAddr,
	})
	if err != nil {
		return nil, err
	}
	pool, err := pgstore.Connect(ctx, cfg.DatabaseURL, p.Tracing.Provider, log)
	if err != nil {
		return nil, errors.Join(err, p.Close(context.WithoutCancel(ctx)))
	}
	p.OnClose("database pool", func(context.Context) error { pool.Close(); return nil })
	// The platform's lines first: the relay below needs the outbox's
	// table, and a service migration may write events.
	if err := pgstore.Migrate(ctx, pool, log, outbox.Migrations(), idempotency.Migrations(), pgstore.Line{Migrations: migrations}); err != nil {
		return nil, errors.Join(err, p.Close(context.WithoutCancel(ctx)))
	}
	publisher := broker.NewPublisher(broker.PublisherConfig{URL: cfg.AMQPURL, Exchange: cfg.AMQPExchange, Source: name, Tracing: p.Tracing})
	p.OnClose("broker publisher", func(context.Context) error { return publisher.Close() })
	relay := outbox.NewRelay(outbox.RelayConfig{Pool: pool, Publisher: publisher, Log: log, Registerer: p.Registry})
	p.Go("outbox relay", func(ctx context.Context) error { return relayUntilStopped(ctx, relay, flushTimeout(cfg), log) })
	// Every instance sweeps: a sweep is one DELETE, harmless when another
	// instance swept first.
	keys := idempotency.NewStore(idempotency.Config{Pool: pool, Log: log})
	p.Go("idempotency key sweeper", keys.Run)
	return &Runtime{
		Name: name, Version: version, Log: log, Tracing: p.Tracing, Registry: p.Registry, Pool: pool, Process: p,
		cfg: cfg, publisher: publisher,
	}, nil
}

// relayUntilStopped relays until ctx ends, then gives the relay one last
// chance to publish. The process stops its loops after the server has
// finished every request, so every event a request wrote is committed by
// then.
func relayUntilStopped(ctx context.Context, relay *outbox.Relay, flush time.Duration, log *slog.Logger) error {
	err := relay.Run(ctx)
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flush)
	defer cancel()
	if n, ferr := relay.Drain(flushCtx); ferr != nil {
		log.Warn("outbox not fully flushed; the rest is published at next start", "published", n, "error", ferr.Error())
	} else if n > 0 {
		log.Info("outbox flushed", "published", n)
	}
	return err
}

// WebConfig returns the HTTP configuration with this runtime's logger,
// metrics, tracing and readiness checks.
func (rt *Runtime) WebConfig(classify func(error) *problem.Problem) web.Config {
	return rt.Process.WebConfig(classify,
		web.Check{Name: "database", Critical: true, Probe: rt.Pool.Ping},
		// Writes keep working while the broker is away (the outbox holds
		// the events), so its absence degrades but does not unready us.
		web.Check{Name: "broker", Critical: false, Probe: rt.publisher.Ping},
	)
}

// Run serves HTTP on the configured address and relays the outbox until ctx
// ends, then shuts down: deregister, stop accepting and finish in-flight
// requests, stop the relay and flush what is left, close the broker and
// the pool.
func (rt *Runtime) Run(ctx context.Context, srv *web.Server) error {
	return rt.Process.Run(ctx, srv, rt.cfg.HTTPAddr)
}

// Serve is Run on an existing listener (tests pass one on a free port).
func (rt *Runtime) Serve(ctx context.Context, srv *web.Server, ln net.Listener) error {
	return rt.Process.Serve(ctx, srv, ln)
}

func flushTimeout(cfg BaseConfig) time.Duration {
	if d := cfg.ShutdownTimeout / 2; d > 0 {
		return d
	}
	return 5 * time.Second
}

// Close stops the relay, releases the broker connection and the pool, and
// flushes the tracer.
func (rt *Runtime) Close(ctx context.Context) error {
	return rt.Process.Close(ctx)
}
