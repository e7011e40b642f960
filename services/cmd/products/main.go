// Command products serves Portico's product catalog; see package
// services/products for what it runs.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/products"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultHTTPAddr is this service's port in the local port plan; the
// shared BaseConfig default belongs to no service in particular.
const defaultHTTPAddr = "127.0.0.1:8082"

type config struct {
	service.BaseConfig
	products.Config
}

func main() {
	command.Main(command.Spec[config]{
		Name: products.Name, Load: loadConfig, Run: run,
		LogLevel: func(c config) string { return c.LogLevel },
	})
}

// loadConfig reads the configuration from environ (KEY=value entries).
func loadConfig(environ []string) (config, error) {
	cfg, err := command.ParseEnv[config](environ, map[string]string{"HTTP_ADDR": defaultHTTPAddr})
	if err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil { // the service's own settings (products.Config)
		return config{}, err
	}
	return cfg, nil
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	rt, err := service.Open(ctx, cfg.BaseConfig, products.Name, version, migrations.Products(), log)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	srv, err := products.Build(ctx, products.Deps{Pool: rt.Pool, Web: rt.WebConfig(nil), Config: cfg.Config})
	if err != nil {
		return errors.Join(err, rt.Close(context.WithoutCancel(ctx)))
	}
	return rt.Run(ctx, srv)
}
