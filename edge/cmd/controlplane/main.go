// Command controlplane is Portico's xDS control plane: it watches the
// Consul catalog and the edge configuration in KV, and programs the Envoy
// ingress (and the rate-limit service) over ADS.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/gofiber/fiber/v2"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-mesh/portico/edge/controlplane/catalog"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
	"github.com/portico-mesh/portico/edge/controlplane/xdsserver"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const serviceName = "controlplane"

type config struct {
	// ConsulHTTPAddr is read by the Consul client as well (CONSUL_HTTP_ADDR).
	ConsulHTTPAddr string `env:"CONSUL_HTTP_ADDR" envDefault:"127.0.0.1:8500"`
	XDSAddr        string `env:"XDS_ADDR" envDefault:"127.0.0.1:18000"`
	AdminAddr      string `env:"ADMIN_ADDR" envDefault:"127.0.0.1:18001"`
	// IngressListenAddr is where the ingress Envoy accepts clients.
	IngressListenAddr string `env:"INGRESS_LISTEN_ADDR" envDefault:"127.0.0.1:5000"`
	IngressService    string `env:"INGRESS_SERVICE" envDefault:"ingress"`
	ConfigKey         string `env:"EDGE_CONFIG_KEY" envDefault:"portico/edge/config"`
	StatusKey         string `env:"EDGE_CONFIG_STATUS_KEY" envDefault:"portico/edge/config-status"`
	// RateLimitAddr is the envoyproxy/ratelimit gRPC address; empty turns
	// the global limits off.
	RateLimitAddr     string        `env:"RATELIMIT_ADDR"`
	RateLimitDomain   string        `env:"RATELIMIT_DOMAIN" envDefault:"portico"`
	RateLimitFailOpen bool          `env:"RATELIMIT_FAIL_OPEN" envDefault:"true"`
	LogLevel          string        `env:"LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`
}

func main() {
	var cfg config
	if err := env.Parse(&cfg); err != nil {
		telemetry.NewLogger(os.Stdout, slog.LevelInfo, serviceName).Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	log := telemetry.NewLogger(os.Stdout, telemetry.ParseLevel(cfg.LogLevel), serviceName)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("control plane stopped", "error", err.Error())
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	listener, err := listenerOf(cfg.IngressListenAddr)
	if err != nil {
		return err
	}
	var rls *ir.RateLimitService
	if cfg.RateLimitAddr != "" {
		host, port, err := hostPort(cfg.RateLimitAddr)
		if err != nil {
			return fmt.Errorf("RATELIMIT_ADDR: %w", err)
		}
		rls = &ir.RateLimitService{Address: host, Port: port, Domain: cfg.RateLimitDomain, FailOpen: cfg.RateLimitFailOpen}
	}
	consulCfg := api.DefaultConfig()
	consulCfg.Address = cfg.ConsulHTTPAddr
	client, err := api.NewClient(consulCfg)
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	server := xdsserver.New(ctx, log, reg)
	reconciler, err := reconcile.New(reconcile.Config{
		Publisher:  server,
		Status:     kvStatus{kv: client.KV(), key: cfg.StatusKey},
		Listener:   listener,
		Ingress:    cfg.IngressService,
		RateLimit:  rls,
		Log:        log,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	watcher, err := catalog.New(catalog.Config{
		Client: client, IngressService: cfg.IngressService, ConfigKey: cfg.ConfigKey,
		Log: log, Registerer: reg,
	})
	if err != nil {
		return err
	}

	var lc net.ListenConfig
	xdsLn, err := lc.Listen(ctx, "tcp", cfg.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.XDSAddr, err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", cfg.AdminAddr, err), xdsLn.Close())
	}
	admin := adminServer(log, reg, reconciler)
	log.InfoContext(ctx, "serving", "xds", xdsLn.Addr().String(), "admin", adminLn.Addr().String(), "version", version)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- server.Serve(ctx, xdsLn) })
	wg.Go(func() { errs <- admin.Serve(ctx, adminLn, cfg.ShutdownTimeout) })
	wg.Go(func() {
		errs <- watcher.Run(ctx, func(snap catalog.Snapshot) {
			if err := reconciler.Apply(ctx, snap); err != nil {
				log.ErrorContext(ctx, "snapshot not applied; the previous configuration keeps serving", "error", err.Error())
			}
		})
	})
	// The first component to stop stops the others.
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

// adminServer serves /healthz, /readyz, /metrics and the model in use.
func adminServer(log *slog.Logger, reg *prometheus.Registry, r *reconcile.Reconciler) *web.Server {
	srv := web.New(web.Config{
		Service: serviceName, Log: log, Registry: reg,
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

func listenerOf(addr string) (ir.Listener, error) {
	host, port, err := hostPort(addr)
	if err != nil {
		return ir.Listener{}, fmt.Errorf("INGRESS_LISTEN_ADDR: %w", err)
	}
	return ir.Listener{Address: host, Port: port}, nil
}

func hostPort(addr string) (string, uint32, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("invalid port in %q", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, uint32(port), nil
}
