// Package controlplane wires Portico's xDS control plane: the catalog
// watcher feeds the reconciler, which builds, translates and publishes to
// the ADS server; an admin HTTP server shows health, metrics and the model
// in use. Watching, translating and serving stay separate packages; this
// one only connects them and owns their goroutines.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-mesh/portico/edge/controlplane/catalog"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
	"github.com/portico-mesh/portico/edge/controlplane/xdsserver"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/web"
)

// Config is the control plane's configuration, parsed once by its command.
type Config struct {
	// ConsulHTTPAddr is the local Consul agent (host:port).
	ConsulHTTPAddr string
	// XDSAddr serves ADS; AdminAddr serves /healthz, /readyz, /metrics
	// and /model.
	XDSAddr   string
	AdminAddr string
	// Listener is where the ingress Envoy accepts clients.
	Listener       ir.Listener
	IngressService string
	ConfigKey      string
	StatusKey      string
	// RateLimit is the global rate-limit service; nil turns global limits off.
	RateLimit *ir.RateLimitService
	// TracingCollector is the OTLP/gRPC collector (host:port) the ingress
	// sends spans to unless the edge configuration names one; empty and
	// unnamed there, the ingress does not trace.
	TracingCollector string
	ShutdownTimeout  time.Duration
	// Coalesce overrides the watcher's coalescing delay when positive.
	Coalesce time.Duration
	// Registry receives the metrics; nil makes one with the Go and
	// process collectors. A command passes its process's (package
	// process).
	Registry *prometheus.Registry
}

// ControlPlane is a configured, not yet running control plane.
type ControlPlane struct {
	cfg        Config
	log        *slog.Logger
	reg        *prometheus.Registry
	server     *xdsserver.Server
	reconciler *reconcile.Reconciler
	watcher    *catalog.Watcher
	xdsLn      net.Listener
	adminLn    net.Listener
}

// New prepares every stage and binds both listeners, so the addresses are
// known (and a port conflict reported) before Run. ctx must live as long
// as the control plane: the xDS server's streams end with it, so a
// start-up deadline here would silently stop configuration updates.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*ControlPlane, error) {
	consulCfg := api.DefaultConfig()
	consulCfg.Address = cfg.ConsulHTTPAddr
	client, err := api.NewClient(consulCfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	server := xdsserver.New(ctx, log, reg)
	reconciler, err := reconcile.New(reconcile.Config{
		Publisher:        server,
		Status:           kvStatus{kv: client.KV(), key: cfg.StatusKey},
		Listener:         cfg.Listener,
		Ingress:          cfg.IngressService,
		RateLimit:        cfg.RateLimit,
		TracingCollector: cfg.TracingCollector,
		Log:              log,
		Registerer:       reg,
	})
	if err != nil {
		return nil, err
	}
	watcher, err := catalog.New(catalog.Config{
		Client: client, IngressService: cfg.IngressService, ConfigKey: cfg.ConfigKey,
		Log: log, Registerer: reg, Coalesce: cfg.Coalesce,
	})
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	xdsLn, err := lc.Listen(ctx, "tcp", cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.XDSAddr, err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen %s: %w", cfg.AdminAddr, err), xdsLn.Close())
	}
	return &ControlPlane{
		cfg: cfg, log: log, reg: reg, server: server, reconciler: reconciler, watcher: watcher,
		xdsLn: xdsLn, adminLn: adminLn,
	}, nil
}

// XDSAddr and AdminAddr are the bound addresses.
func (cp *ControlPlane) XDSAddr() string   { return cp.xdsLn.Addr().String() }
func (cp *ControlPlane) AdminAddr() string { return cp.adminLn.Addr().String() }

// Server is the ADS server, for waiting on acknowledgements.
func (cp *ControlPlane) Server() *xdsserver.Server { return cp.server }

// Run serves until ctx ends or a stage fails, then stops every stage. A
// command runs the same stages on its process lifecycle instead: ServeXDS
// and Watch as its loops, Admin as its server.
func (cp *ControlPlane) Run(ctx context.Context) error {
	admin, adminLn := cp.Admin()
	cp.log.InfoContext(ctx, "serving", "xds", cp.XDSAddr(), "admin", cp.AdminAddr())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- cp.ServeXDS(ctx) })
	wg.Go(func() { errs <- admin.Serve(ctx, adminLn, cp.cfg.ShutdownTimeout) })
	wg.Go(func() { errs <- cp.Watch(ctx) })
	// The first stage to stop stops the others.
	first := <-errs
	cancel()
	wg.Wait()
	close(errs)
	all := []error{first}
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// ServeXDS serves ADS on the bound xDS listener until ctx ends.
func (cp *ControlPlane) ServeXDS(ctx context.Context) error {
	return cp.server.Serve(ctx, cp.xdsLn)
}

// Watch watches the catalog and the configuration document until ctx
// ends, and applies every snapshot. A snapshot that cannot be applied
// leaves the previous configuration serving.
func (cp *ControlPlane) Watch(ctx context.Context) error {
	return cp.watcher.Run(ctx, func(snap catalog.Snapshot) {
		if err := cp.reconciler.Apply(ctx, snap); err != nil {
			cp.log.ErrorContext(ctx, "snapshot not applied; the previous configuration keeps serving", "error", err.Error())
		}
	})
}

// Admin is the admin HTTP server (/healthz, /readyz, /metrics, /model)
// and the listener it is to serve on.
func (cp *ControlPlane) Admin() (*web.Server, net.Listener) {
	return adminServer(cp.log, cp.reg, cp.reconciler), cp.adminLn
}

// adminServer serves /healthz, /readyz, /metrics and the model in use.
func adminServer(log *slog.Logger, reg *prometheus.Registry, r *reconcile.Reconciler) *web.Server {
	srv := web.New(web.Config{
		Service: "controlplane", Log: log, Registry: reg,
		Checks: []web.Check{{Name: "configuration", Critical: true, Probe: func(context.Context) error {
			_, _, err := r.ModelJSON()
			return err
		}}},
	})
	srv.Mount(web.Route{Method: fiber.MethodGet, Path: "/model", Handler: func(c *fiber.Ctx) error {
		body, version, err := r.ModelJSON()
		if errors.Is(err, reconcile.ErrNoModel) {
			return problem.New(problem.TypeUnavailable, fiber.StatusServiceUnavailable, "no configuration applied yet")
		}
		if err != nil {
			return err
		}
		c.Set("X-Portico-Xds-Version", version)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	}})
	return srv
}
