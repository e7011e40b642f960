// Command controlplane is Portico's xDS control plane: it watches the
// Consul catalog and the edge configuration in KV, and programs the Envoy
// ingress (and the rate-limit service) over ADS.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/portico-mesh/portico/edge/controlplane"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/command"
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
	command.Main(command.Spec[config]{
		Name: serviceName, Load: loadConfig, Run: run,
		LogLevel: func(c config) string { return c.LogLevel },
	})
}

// loadConfig reads the configuration from environ (KEY=value entries).
func loadConfig(environ []string) (config, error) {
	var cfg config
	err := env.ParseWithOptions(&cfg, env.Options{Environment: env.ToMap(environ)})
	return cfg, err
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
	cp, err := controlplane.New(ctx, controlplane.Config{
		ConsulHTTPAddr:  cfg.ConsulHTTPAddr,
		XDSAddr:         cfg.XDSAddr,
		AdminAddr:       cfg.AdminAddr,
		Listener:        listener,
		IngressService:  cfg.IngressService,
		ConfigKey:       cfg.ConfigKey,
		StatusKey:       cfg.StatusKey,
		RateLimit:       rls,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, log)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "starting", "version", version)
	return cp.Run(ctx)
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
