// Package process is the lifecycle every Portico process in the mesh
// shares, whatever it serves: tracing and a metrics registry from the
// start; background loops it owns (an outbox relay, an event consumer, a
// watcher), each stopped and waited for; an HTTP server that registers in
// Consul once it listens and, at shutdown, deregisters and drains before
// it stops accepting; and the release of what the process opened, in
// reverse order, within a deadline.
//
// A process with a database and an outbox builds on it (package service);
// the edge and the control plane use it directly.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/registry"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
)

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
	// DrainDelay is how long the process keeps serving after it
	// deregistered at shutdown, while its callers' sidecars learn that
	// it is gone.
	DrainDelay time.Duration `env:"CONSUL_DRAIN_DELAY" envDefault:"1s"`
}

// Config describes one process.
type Config struct {
	// Name and Version name the process in traces, logs and Consul.
	Name, Version string
	Log           *slog.Logger
	// ShutdownTimeout is how long in-flight requests get to finish once
	// shutdown begins, and how long the loops get to stop (default 20s).
	// Deregistering and releasing resources get half of it each (at
	// least 5s).
	ShutdownTimeout time.Duration
	// Consul registers the process when ConsulHTTPAddr is set.
	Consul ConsulConfig
	// OpenAPIPath is published in the registration for the documentation
	// to find; empty publishes none.
	OpenAPIPath string
	// Upstreams are the services the process calls through its sidecar.
	Upstreams []registry.Upstream
	// DebugAddr, when set, serves Go's profiles (net/http/pprof) on this
	// loopback address while the process runs; empty serves none.
	DebugAddr string
}

// Process is a running process's lifecycle. Open starts it; Go adds
// background loops; Run or Serve serves HTTP until the context ends and
// then shuts everything down; Close does the shutdown alone, for a
// process that never served.
type Process struct {
	Name, Version string
	Log           *slog.Logger
	Tracing       telemetry.Tracing
	// Registry holds the process's metrics (Go and process collectors
	// included); the web server serves it at /metrics.
	Registry *prometheus.Registry

	cfg Config

	// loops is the context of the background loops; stopLoops ends it.
	loops     context.Context
	stopLoops context.CancelFunc
	// failed ends, with the loop's error as cause, when a loop fails.
	failed context.Context
	fail   context.CancelCauseFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending []loop // added by Go before the process started
	started bool
	closers []closer
	closed  bool
}

type loop struct {
	name string
	run  func(context.Context) error
}

type closer struct {
	name  string
	close func(context.Context) error
}

// Open starts a process: tracing from the standard OTEL_* variables and a
// metrics registry. ctx bounds only the start; the process lives until
// Close.
func Open(ctx context.Context, cfg Config) (*Process, error) {
	if cfg.Name == "" {
		return nil, errors.New("process: Config.Name is required")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var debug net.Listener
	if cfg.DebugAddr != "" {
		if err := checkDebugAddr(cfg.DebugAddr); err != nil {
			return nil, err
		}
		// Listening now makes a taken port an error at start, not later.
		var lc net.ListenConfig
		var err error
		if debug, err = lc.Listen(ctx, "tcp", cfg.DebugAddr); err != nil {
			return nil, fmt.Errorf("DEBUG_ADDR: %w", err)
		}
	}
	tracing, err := telemetry.NewTracing(ctx, cfg.Name, cfg.Version)
	if err != nil {
		if debug != nil {
			debug.Close()
		}
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := &Process{Name: cfg.Name, Version: cfg.Version, Log: cfg.Log, Tracing: tracing, Registry: reg, cfg: cfg}
	p.loops, p.stopLoops = context.WithCancel(context.WithoutCancel(ctx))
	p.failed, p.fail = context.WithCancelCause(context.WithoutCancel(ctx))
	if debug != nil {
		p.Log.InfoContext(ctx, "profiling endpoint", "addr", debug.Addr().String())
		p.Go("profiling endpoint", serveDebug(debug))
		// A process closed without ever serving never ran the loop.
		p.OnClose("profiling endpoint", func(context.Context) error {
			if err := debug.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
	}
	return p, nil
}

// Go runs loop in a goroutine the process owns, from the start of Serve
// (or Wait; at once if that has begun) until shutdown: its context ends
// when shutdown reaches the loops (after the server stopped accepting and
// finished its requests), and shutdown waits for it to return. A loop
// that fails (returns an error before its context ended) shuts the
// process down, and Serve returns that error; one that returns nil early
// just ends. Loops start with serving, not at Open, so that what a
// command does between Open and Serve (migrations, a bootstrap write)
// happens before any of them runs.
func (p *Process) Go(name string, run func(ctx context.Context) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if !p.started {
		p.pending = append(p.pending, loop{name: name, run: run})
		return
	}
	p.launch(loop{name: name, run: run})
}

// start launches the loops added so far.
func (p *Process) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	for _, l := range p.pending {
		p.launch(l)
	}
	p.pending = nil
}

// launch runs l; p.mu is held.
func (p *Process) launch(l loop) {
	p.wg.Go(func() {
		err := l.run(p.loops)
		switch {
		case err != nil && p.loops.Err() == nil:
			p.Log.Error(l.name+" failed; shutting down", "error", err.Error())
			p.fail(fmt.Errorf("%s: %w", l.name, err))
		case err != nil:
			p.Log.Warn(l.name+" stopped with an error", "error", err.Error())
		}
	})
}

// OnClose adds a release step; Close runs them in reverse order of
// addition, after every loop stopped.
func (p *Process) OnClose(name string, release func(ctx context.Context) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closers = append(p.closers, closer{name: name, close: release})
}

// WebConfig returns the HTTP configuration with this process's logger,
// metrics and tracing; the caller adds its readiness checks and limits.
func (p *Process) WebConfig(classify func(error) *problem.Problem, checks ...web.Check) web.Config {
	return web.Config{
		Service:  p.Name,
		Log:      p.Log,
		Registry: p.Registry,
		Tracing:  p.Tracing,
		Classify: classify,
		Checks:   checks,
	}
}

// Run listens on addr and Serves.
func (p *Process) Run(ctx context.Context, srv *web.Server, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", addr, err), p.Close(context.WithoutCancel(ctx)))
	}
	p.Log.InfoContext(ctx, "serving", "addr", ln.Addr().String(), "version", p.Version)
	return p.Serve(ctx, srv, ln)
}

// Serve serves srv on ln until ctx ends or a loop fails, then shuts the
// process down: deregister and give callers' sidecars the drain delay to
// notice, stop accepting and finish in-flight requests, stop the loops and
// wait for them, and Close. With Consul configured, the instance registers
// once it listens.
func (p *Process) Serve(ctx context.Context, srv *web.Server, ln net.Listener) error {
	var reg *registry.Registrar
	if p.cfg.Consul.ConsulHTTPAddr != "" {
		var err error
		if reg, err = registry.New(p.registryConfig(ln.Addr())); err != nil {
			return errors.Join(err, ln.Close(), p.Close(context.WithoutCancel(ctx)))
		}
	}
	p.start()
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnFailure := context.AfterFunc(p.failed, cancel)
	defer stopOnFailure()
	serveErr := registry.Serve(serveCtx, reg, registry.Lifecycle{
		DeregisterTimeout: p.stepTimeout(),
		Drain:             min(p.cfg.Consul.DrainDelay, p.cfg.ShutdownTimeout),
		Log:               p.Log,
	}, func(ctx context.Context) error { return srv.Serve(ctx, ln, p.cfg.ShutdownTimeout) })
	return errors.Join(serveErr, p.Close(context.WithoutCancel(ctx)))
}

// Wait runs the process without a server of its own until ctx ends or a
// loop fails, then Closes it.
func (p *Process) Wait(ctx context.Context) error {
	p.start()
	select {
	case <-ctx.Done():
	case <-p.failed.Done():
	}
	return p.Close(context.WithoutCancel(ctx))
}

// Close shuts down what Serve has not: it stops the loops and waits for
// them, then runs the release steps in reverse order and flushes the
// traces, each stage within its share of the shutdown timeout. It returns
// the error of a loop that failed, if one did. Only the first call acts.
func (p *Process) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	closers := p.closers
	p.mu.Unlock()

	var errs []error
	p.stopLoops()
	stopped := make(chan struct{})
	go func() { p.wg.Wait(); close(stopped) }()
	// A loop may flush on its way out (the outbox relay does): it gets
	// the whole shutdown timeout.
	loopsCtx, cancel := context.WithTimeout(ctx, p.cfg.ShutdownTimeout)
	select {
	case <-stopped:
	case <-loopsCtx.Done():
		errs = append(errs, errors.New("process: background loops did not stop in time"))
	}
	cancel()
	if cause := context.Cause(p.failed); p.failed.Err() != nil && !errors.Is(cause, context.Canceled) {
		errs = append(errs, cause)
	}
	p.fail(nil)

	releaseCtx, cancel := context.WithTimeout(ctx, p.stepTimeout())
	defer cancel()
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i].close(releaseCtx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", closers[i].name, err))
		}
	}
	errs = append(errs, p.Tracing.Shutdown(releaseCtx))
	return errors.Join(errs...)
}

// stepTimeout bounds one shutdown stage: deregistration, stopping the
// loops, releasing resources.
func (p *Process) stepTimeout() time.Duration {
	return max(p.cfg.ShutdownTimeout/2, 5*time.Second)
}

// registryConfig describes this instance to Consul; the address and port
// are the listener's, so a port picked by the kernel is registered right.
func (p *Process) registryConfig(addr net.Addr) registry.Config {
	c := p.cfg.Consul
	cfg := registry.Config{
		ConsulAddr:      c.ConsulHTTPAddr,
		Name:            p.Name,
		ID:              c.ServiceID,
		Address:         "127.0.0.1",
		Version:         p.Version,
		Tags:            c.ServiceTags,
		OpenAPIPath:     p.cfg.OpenAPIPath,
		SidecarPort:     c.SidecarPort,
		Upstreams:       p.cfg.Upstreams,
		CheckInterval:   c.CheckInterval,
		DeregisterAfter: c.DeregisterAfter,
		Log:             p.Log,
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		cfg.Port = tcp.Port
		if !tcp.IP.IsUnspecified() {
			cfg.Address = tcp.IP.String()
		}
	}
	return cfg
}
