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
	"strconv"
	"time"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/process"
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
	RateLimitAddr     string `env:"RATELIMIT_ADDR"`
	RateLimitDomain   string `env:"RATELIMIT_DOMAIN" envDefault:"portico"`
	RateLimitFailOpen bool   `env:"RATELIMIT_FAIL_OPEN" envDefault:"true"`
	// TracingCollectorAddr is the OTLP/gRPC collector (host:port) the
	// ingress sends its spans to, unless the edge configuration's
	// tracing.collector names one; with neither the ingress does not trace.
	TracingCollectorAddr string `env:"TRACING_COLLECTOR_ADDR"`
	LogLevel             string `env:"LOG_LEVEL" envDefault:"info"`
	// DebugAddr serves Go's profiles on a loopback address; empty: off.
	DebugAddr       string        `env:"DEBUG_ADDR"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`

	// Parsed from the addresses above by loadConfig.
	listener  ir.Listener
	rateLimit *ir.RateLimitService
}

func main() { command.Main(spec()) }

func spec() command.Spec[config] {
	return command.Spec[config]{
		Name: serviceName, Load: loadConfig, Run: run,
		LogLevel: func(c config) string { return c.LogLevel },
	}
}

// loadConfig reads the configuration from environ (KEY=value entries) and
// checks the addresses, so a bad one is a configuration error (exit 78),
// not a failed run.
func loadConfig(environ []string) (config, error) {
	cfg, err := command.ParseEnv[config](environ, nil)
	if err != nil {
		return config{}, err
	}
	host, port, err := hostPort(cfg.IngressListenAddr)
	if err != nil {
		return config{}, fmt.Errorf("INGRESS_LISTEN_ADDR: %w", err)
	}
	cfg.listener = ir.Listener{Address: host, Port: port}
	if cfg.RateLimitAddr != "" {
		host, port, err := hostPort(cfg.RateLimitAddr)
		if err != nil {
			return config{}, fmt.Errorf("RATELIMIT_ADDR: %w", err)
		}
		cfg.rateLimit = &ir.RateLimitService{Address: host, Port: port, Domain: cfg.RateLimitDomain, FailOpen: cfg.RateLimitFailOpen}
	}
	if cfg.TracingCollectorAddr != "" {
		// A host is required: the ingress connects to it.
		if host, _, err := net.SplitHostPort(cfg.TracingCollectorAddr); err != nil || host == "" {
			return config{}, fmt.Errorf("TRACING_COLLECTOR_ADDR: want host:port, got %q", cfg.TracingCollectorAddr)
		}
		if _, _, err := hostPort(cfg.TracingCollectorAddr); err != nil {
			return config{}, fmt.Errorf("TRACING_COLLECTOR_ADDR: %w", err)
		}
	}
	if cfg.ShutdownTimeout <= 0 {
		return config{}, errors.New("SHUTDOWN_TIMEOUT must be positive")
	}
	return cfg, nil
}

// run serves the control plane on the process lifecycle: the ADS server
// and the catalog watch are its loops, the admin server its server.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	proc, err := process.Open(ctx, process.Config{
		Name: serviceName, Version: version, Log: log, ShutdownTimeout: cfg.ShutdownTimeout,
		DebugAddr: cfg.DebugAddr,
	})
	if err != nil {
		return err
	}
	cp, err := controlplane.New(ctx, controlplane.Config{
		ConsulHTTPAddr:   cfg.ConsulHTTPAddr,
		XDSAddr:          cfg.XDSAddr,
		AdminAddr:        cfg.AdminAddr,
		Listener:         cfg.listener,
		IngressService:   cfg.IngressService,
		ConfigKey:        cfg.ConfigKey,
		StatusKey:        cfg.StatusKey,
		RateLimit:        cfg.rateLimit,
		TracingCollector: cfg.TracingCollectorAddr,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		Registry:         proc.Registry,
	}, log)
	if err != nil {
		return errors.Join(err, proc.Close(context.WithoutCancel(ctx)))
	}
	log.InfoContext(ctx, "serving", "version", version, "xds", cp.XDSAddr(), "admin", cp.AdminAddr())
	proc.Go("xds server", cp.ServeXDS)
	proc.Go("catalog watch", cp.Watch)
	admin, adminLn := cp.Admin()
	return proc.Serve(ctx, admin, adminLn)
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
